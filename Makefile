# README.md's table names these targets. STACK picks stacks/<STACK>.yaml over stacks/base.yaml.
STACK ?= dev
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages installed when missing: $(APT_INSTALL) package...
APT_INSTALL = $(SUDO) apt-get update -qq && \
  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends

.PHONY: pulumi rabbitmq4 bench gnu-time bench-cluster bench-inter-node-tls bench-migration bench-local bench-pulumi bench-rate-limits bench-upgrade bench-suite-cpu test test-builds test-offline test-live test-docker test-series-4 test-fast lint docs-serve validate render plan deploy preview golden docs clean rabbitmq-server prometheus docker images local local-down

# The virtualenv, rebuilt when a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt app/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

# Debian's rabbitmq-server, for the tests' throwaway nodes (the package's own service is not used).
rabbitmq-server:
	@test -x /usr/lib/rabbitmq/bin/rabbitmq-server || { \
	  echo "Installing Debian's rabbitmq-server for the broker tests"; \
	  $(APT_INSTALL) rabbitmq-server; }

# Debian trixie's rabbitmq-server 4.0 in a debootstrapped root, for the tests' 4.0 nodes
# (tests/support/rabbit_series.py chroots into it); rebuilt only when missing. Debian's mirror, as apt's.
RABBITMQ4_ROOT = .rabbitmq/4.0
DEBIAN_MIRROR ?= $(shell awk '($$1 == "URIs:" || $$1 == "deb") && $$2 ~ /^https?:/ && $$2 !~ /security/ { print $$2; exit }' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null)
rabbitmq4: $(RABBITMQ4_ROOT)/usr/lib/rabbitmq/bin/rabbitmq-server
$(RABBITMQ4_ROOT)/usr/lib/rabbitmq/bin/rabbitmq-server:
	@command -v debootstrap >/dev/null || { $(APT_INSTALL) debootstrap; }
	rm -rf $(RABBITMQ4_ROOT).tmp && mkdir -p $(dir $(RABBITMQ4_ROOT))
	$(SUDO) debootstrap --variant=minbase --include=rabbitmq-server trixie $(CURDIR)/$(RABBITMQ4_ROOT).tmp $(DEBIAN_MIRROR)
	rm -rf $(RABBITMQ4_ROOT) && mv $(RABBITMQ4_ROOT).tmp $(RABBITMQ4_ROOT)

# GNU time: bench/toolkit.py reads each command's peak memory from it.
gnu-time:
	@test -x /usr/bin/time || { \
	  echo "Installing Debian's time for the benchmarks"; \
	  $(APT_INSTALL) time; }

# Debian's prometheus (2.42): promtool checks the rendered monitoring files, and the server scrapes a test
# node (the package's own service is not used).
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  echo "Installing Debian's prometheus for the monitoring tests"; \
	  $(APT_INSTALL) prometheus; }

# Debian's Docker engine, docker-compose and debootstrap, for the local images and the end-to-end tests
# (and iproute2: `broker.hosts`'s test makes its Docker hosts in network namespaces); the engine is started
# when none answers.
docker:
	@command -v dockerd >/dev/null && command -v docker-compose >/dev/null && command -v debootstrap >/dev/null \
	  && command -v ip >/dev/null || { \
	  echo "Installing Debian's docker.io, docker-compose, debootstrap and iproute2"; \
	  $(APT_INSTALL) \
	    docker.io docker-compose debootstrap iptables iproute2; }
	@$(SUDO) scripts/start-docker

## make images: the local stack's images, built here (skipped when current)
images: $(VENV)/.installed docker
	$(SUDO) $(PY) scripts/build-local-images

## make pulumi [PULUMI_PROVIDER_SOURCES=DIR]: build the Pulumi CLI (Go modules), the Python language host and the
## docker, rabbitmq, tls and random resource plugins (their release source tarballs in DIR, checked against
## tools/pulumi/sources.sha256) into a cache outside the clone, copy the CLI and host into .pulumi/bin/ and
## install the plugins; skipped when current (docs/pulumi-engine.md). make test runs it; deploy and preview
## run it when no `pulumi` is on PATH.
export PULUMI_PROVIDER_SOURCES
pulumi: $(VENV)/.installed
	$(PY) scripts/build-pulumi
NEED_PULUMI := $(if $(shell command -v pulumi 2>/dev/null),,pulumi)

## make test: install and build what the tests need while lint, the docs site and the unit tier run, then the
## live tiers on TEST_WORKERS parallel workers (every tier; docs/testing.md)
# Everything on RabbitMQ 3.10, then on 4.0 what 4.0 may do differently: the shipped stacks, the broker's
# behaviour, priorities and compression, the app's reliability on real workers, a cluster over TLS
# distribution (and its plaintext control), and the local stack coming up on the 4.0 image with a sync stored.
SERIES_4_TESTS = tests/broker/test_shipped_stacks.py tests/broker/test_behaviour.py \
	tests/broker/test_priorities.py tests/app/test_reliability.py \
	tests/broker/test_inter_node_tls.py::test_the_payload_never_crosses_the_wire_in_clear_with_inter_node_tls \
	tests/e2e/test_local_stack.py::test_the_stack_comes_up_healthy_with_the_broker_as_defined \
	tests/e2e/test_local_stack.py::test_a_sync_is_stored_in_postgres_by_the_worker_containers
# The builds (CPU: the Pulumi CLI's Go build, the images, the 4.0 root; each skipped when current) run while
# lint, the docs and the unit tier, which need none of them, run. Then the live tiers, which wait on brokers,
# containers and timers far more than they compute: the nodes' tiers on TEST_WORKERS pytest-xdist workers,
# each test file on one worker (its module's booted node shared as before); then the e2e tier, one Docker
# stack at a time, side by side with the RabbitMQ 4.0 pass. Each run and worker on its own ports
# (TEST_PORT_SHARE, tests/support/rabbit_node.py), node names and Compose projects. The e2e tier does not run
# beside the nodes' tiers: on 2 cores its Docker stacks did not come up healthy in time there.
# docs/testing.md has the measured split.
TEST_WORKERS ?= 2
LIVE_TIERS = tests/broker tests/app tests/pulumi
DOCKER_TIERS = tests/e2e
test: $(VENV)/.installed
	$(MAKE) --no-print-directory -j2 --output-sync=recurse test-builds test-offline
	$(MAKE) --no-print-directory test-live
	$(MAKE) --no-print-directory -j2 --output-sync=recurse test-docker test-series-4

test-live:
	TEST_PORT_SHARE=0/2 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(LIVE_TIERS)
test-docker:
	TEST_PORT_SHARE=1/2 $(PY) -m pytest $(DOCKER_TIERS)
test-series-4:
	RABBITMQ_SERIES=4.0 TEST_PORT_SHARE=0/2 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(SERIES_4_TESTS)

# make test's two halves of its first step, each one target after another (apt-get runs one at a time).
test-builds: $(VENV)/.installed
	@for target in rabbitmq-server rabbitmq4 prometheus images pulumi; do \
	  $(MAKE) --no-print-directory $$target || exit 1; done
test-offline: $(VENV)/.installed
	@for target in lint docs test-fast; do $(MAKE) --no-print-directory $$target || exit 1; done

## make lint: ruff (lint and format) over the code and tests, mypy over infra/ and app/, and the layers' import
## contract (pyproject.toml). `ruff format $(LINTED)` formats.
LINTED = infra app tests bench scripts/build-pulumi scripts/build-local-images
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## make test-fast: the unit tier only (no broker, Docker or network), about a minute
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q tests/unit

## make local STACK=local [RABBITMQ_SERIES=4.0]: images, render with --compose, up, wait until healthy, print the
## URLs; RABBITMQ_SERIES=4.0 runs the broker on Debian trixie's RabbitMQ 4.0 (stacks/overlays/rabbitmq-4.0.yaml).
## make local-down [VOLUMES=1]: stop it, keeping the data volumes unless VOLUMES=1.
LOCAL_STACK = $(if $(filter command line environment,$(origin STACK)),$(STACK),local)
local: images
	$(PY) -m infra.cli.localstack up --stack $(LOCAL_STACK) \
	  $(if $(filter 4.0,$(RABBITMQ_SERIES)),--overlay stacks/overlays/rabbitmq-4.0.yaml)

## make bench: every benchmark of bench/ (issue 7), each table to stdout; about 16½ minutes on 2 cores (bench/RESULTS.md).
## Paste a real run's tables into bench/RESULTS.md with its date and machine.
# Each script's own wall time goes to stderr ("bench/x.py: N s"): the suite's budget is 15 minutes.
bench: $(VENV)/.installed rabbitmq-server gnu-time
	/usr/bin/time -f "bench/pipeline.py: %e s" $(PY) bench/pipeline.py --runs 5 --noop 1000 --io 150
	/usr/bin/time -f "bench/recovery.py: %e s" $(PY) bench/recovery.py --kills 7 --restarts 5
	/usr/bin/time -f "bench/topology_load.py: %e s" $(PY) bench/topology_load.py --runs 5
	/usr/bin/time -f "bench/toolkit.py: %e s" $(PY) bench/toolkit.py --runs 5

## make bench-migration: a queue's type migrated (10,000 and 100,000 messages) against a hand-made shovel
bench-migration: $(VENV)/.installed rabbitmq-server
	$(PY) bench/migration.py --runs 5 --sizes 10000
	$(PY) bench/migration.py --runs 2 --sizes 100000

bench-cluster: $(VENV)/.installed rabbitmq-server
	$(PY) bench/cluster.py --runs 5

bench-inter-node-tls: $(VENV)/.installed rabbitmq-server
	$(PY) bench/inter_node_tls.py --runs 5

## make bench-local: cold and warm times of the local stack (bench/RESULTS.md)
bench-local: images
	$(PY) bench/local_stack.py

## make bench-upgrade: the local stack upgraded 3.10 → 4.0 with 10,000 and 100,000 tasks queued, against the
## manual blue-green steps, then through `make deploy` on the Pulumi engine beside compose (bench/RESULTS.md);
## about 40 minutes
bench-upgrade: images pulumi
	$(PY) bench/upgrade.py --runs 2 --sizes 10000
	$(PY) bench/upgrade.py --runs 1 --sizes 100000
	$(PY) bench/pulumi_upgrade.py --runs 2 --size 10000

## make bench-suite-cpu [SUITE_TARGET=test-live]: what a make target of the tests computes while it runs: how busy
## the cores were and the CPU seconds by kind of process, from Linux process accounting (docs/testing.md)
SUITE_TARGET ?= test-live
bench-suite-cpu: $(VENV)/.installed
	@command -v accton >/dev/null || { \
	  echo "Installing Debian's acct (process accounting)"; \
	  $(APT_INSTALL) acct; }
	$(SUDO) $(PY) bench/suite_cpu.py -- $(MAKE) --no-print-directory $(SUITE_TARGET)

## make bench-pulumi: the real Pulumi engine beside make local's compose path (nothing to healthy), no-change and
## one-policy deploys, and 1,000 queues through the rabbitmq provider beside one POST (bench/RESULTS.md)
bench-pulumi: images pulumi rabbitmq-server
	$(PY) bench/pulumi_stack.py --parallel 32

## make bench-rate-limits: syncs under a development key's real limits against their floor, and the seed's
## sync pacing against the limiter's (bench/RESULTS.md, "Riot rate limits"); about 5 minutes
bench-rate-limits: $(VENV)/.installed rabbitmq-server
	$(PY) bench/rate_limits.py

local-down:
	$(PY) -m infra.cli.localstack down --stack $(LOCAL_STACK) $(if $(VOLUMES),--volumes)

## make validate|plan|render STACK=env
validate: $(VENV)/.installed
	$(PY) -m infra validate --stack $(STACK)

plan: $(VENV)/.installed
	$(PY) -m infra plan --stack $(STACK)

render: $(VENV)/.installed
	$(PY) -m infra render --stack $(STACK) --out build/$(STACK)

## make deploy STACK=env: validate, upgrade the broker blue-green and migrate queues where needed, then `pulumi up`
## on the local file backend (.pulumi-state/);
## needs PULUMI_CONFIG_PASSPHRASE. make preview STACK=env: `pulumi preview --diff` instead.
deploy: $(VENV)/.installed $(NEED_PULUMI)
	$(PY) -m infra deploy --stack $(STACK)

preview: $(VENV)/.installed $(NEED_PULUMI)
	$(PY) -m infra deploy --stack $(STACK) --preview

## make golden: rewrite tests/golden after an intended change to rendering (review the diff)
golden: $(VENV)/.installed
	UPDATE_GOLDEN=1 $(PY) -m pytest -q tests/unit/test_render.py -k golden

## make docs: build the docs site (docs/ → site/) with --strict: a broken link or anchor fails (make test runs it).
## make docs-serve: the site on http://127.0.0.1:8800, rebuilt as docs/ changes.
docs: $(VENV)/.installed
	$(VENV)/bin/mkdocs build --strict --quiet

docs-serve: $(VENV)/.installed
	$(VENV)/bin/mkdocs serve --strict -a 127.0.0.1:8800

clean:
	rm -rf build site .pytest_cache
