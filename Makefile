# The README names these targets. STACK picks stacks/<STACK>.yaml over stacks/base.yaml.
STACK ?= dev
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test validate render plan deploy preview golden docs clean rabbitmq-server

# The virtualenv, rebuilt when a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt app/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

# Debian's rabbitmq-server, for the tests' throwaway nodes (the package's own service is not used).
rabbitmq-server:
	@test -x /usr/lib/rabbitmq/bin/rabbitmq-server || { \
	  echo "Installing Debian's rabbitmq-server for the broker tests"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends rabbitmq-server; }

## make test: install what the tests need, then run the whole suite
test: $(VENV)/.installed rabbitmq-server
	$(PY) -m pytest

## make validate|plan|render STACK=env
validate: $(VENV)/.installed
	$(PY) -m infra validate --stack $(STACK)

plan: $(VENV)/.installed
	$(PY) -m infra plan --stack $(STACK)

render: $(VENV)/.installed
	$(PY) -m infra render --stack $(STACK) --out build/$(STACK)

## make deploy STACK=env: validate, then `pulumi up` on the local file backend (.pulumi-state/);
## needs PULUMI_CONFIG_PASSPHRASE. make preview STACK=env: `pulumi preview --diff` instead.
deploy: $(VENV)/.installed
	$(PY) -m infra deploy --stack $(STACK)

preview: $(VENV)/.installed
	$(PY) -m infra deploy --stack $(STACK) --preview

## make golden: rewrite tests/golden after an intended change to rendering (review the diff)
golden: $(VENV)/.installed
	UPDATE_GOLDEN=1 $(PY) -m pytest -q tests/test_render.py -k golden

## make docs: the definition's field reference, as pasted in the README
docs: $(VENV)/.installed
	$(PY) -m infra docs

clean:
	rm -rf build .pytest_cache
