"""Where things are in the project: the one place that knows the repository's layout."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STACKS_DIR = REPO / "stacks"  # stack definitions and Pulumi.<stack>.yaml
TEMPLATES = REPO / "templates"  # the Jinja2 templates of rabbitmq.conf and its neighbours
REFERENCE_PAGE = REPO / "docs" / "reference.md"  # the docs site's generated field reference
STACK_SCHEMA = REPO / "schema" / "stack.schema.json"  # generated from the model: editors validate stacks/*.yaml
LOCAL_CLI_ROOT = REPO / ".pulumi"  # a Pulumi CLI built or installed for this project (`make pulumi`)
LOCAL_STATE = REPO / ".pulumi-state"  # the file backend `make deploy` uses
SAMPLE_RIOT_PLAYERS = REPO / "app" / "sample_riot" / "data" / "players.json"  # what the sample Riot API serves
CA_DIR = REPO / ".pulumi-tls"  # the generated CA's certificate, for clients outside the stack
