"""The README and docs/ against the code: every generated block current, and every command line, flag,
worker queue list, exit status, make target and `diff` class they show agreeing with the code. Each kind of
check is also fed a deliberately drifted snippet, to prove it fails on that drift."""

from __future__ import annotations

import argparse
import re
from urllib.parse import unquote

import pytest
from django.urls import resolve

from infra.cli import localstack
from infra.cli import main as cli
from infra.cli.doc_blocks import BLOCKS, local_dev_workers
from infra.cli.regenerate import pages, regenerated
from infra.ops.changes import Impact
from infra.paths import REPO, STACKS_DIR
from infra.plan.stack import Stack
from infra.pulumi import preview
from tests.support import doc_claims

SHIPPED = sorted(p.stem for p in STACKS_DIR.glob("*.yaml") if p.stem != "base" and not p.stem.startswith("Pulumi."))
PAGES = {str(p.relative_to(REPO)): p.read_text() for p in pages()}
PARSERS = {
    "infra": cli.parser(),
    "infra.cli.localstack": localstack.parser(),
    "infra.cli.regenerate": argparse.ArgumentParser(prog="python -m infra.cli.regenerate"),
}


def manage_py() -> argparse.ArgumentParser:
    """`manage.py`'s commands (Django's and the app's), each with its own parser, as subcommands."""
    from django.core.management import get_commands, load_command_class

    top = argparse.ArgumentParser(prog="manage.py")
    commands = top.add_subparsers()
    for name, app in get_commands().items():
        commands.choices[name] = load_command_class(app, name).create_parser("manage.py", name)
    return top


PARSERS["manage.py"] = manage_py()
STATUSES = {int(s): s.name for s in cli.ExitStatus}
CLASSES = {i.value: {int(cli.diff_exit([i], False)), int(cli.diff_exit([i], True))} for i in Impact}
TARGETS = doc_claims.makefile_targets((REPO / "Makefile").read_text())
VARIABLES = doc_claims.makefile_variables((REPO / "Makefile").read_text())


def plan_json_worker_commands(stack: str) -> dict[str, list[str]]:
    """Each worker container's command as `python -m infra plan --stack <stack> --json` gives it."""
    loaded = Stack.load(stack=stack)
    result = preview.as_json(preview.preview(loaded.definition, stack, STACKS_DIR, plan=loaded.plan))
    return {
        r["name"].removeprefix("app-worker-"): r["inputs"]["command"]
        for r in result["resources"]
        if r["name"].startswith("app-worker-") and r["type"].endswith("Container")
    }


@pytest.fixture(scope="module")
def pools() -> set[tuple[str, ...]]:
    """Every worker pool's queue list in every shipped stack, read from `plan --json`'s commands."""
    lists = set()
    for stack in SHIPPED:
        for command in plan_json_worker_commands(stack).values():
            lists.add(tuple(command[command.index("-Q") + 1].split(",")))
    return lists


# -- generated blocks


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_generated_block_is_current(page):
    assert regenerated(PAGES[page], page) == PAGES[page], "run: .venv/bin/python -m infra.cli.regenerate"


def test_each_block_is_generated_in_one_place_and_used():
    used = {name: [p for p, text in PAGES.items() if f"<!-- {name}:start -->" in text] for name in BLOCKS}
    assert {name: len(where) for name, where in used.items()} == dict.fromkeys(BLOCKS, 1), used


def test_a_drifted_generated_block_fails():
    page = PAGES["docs/app.md"]
    drifted = page.replace("-Q player_sync,player_sync_americas,player_sync_asia,player_sync_sea ", "-Q player_sync ")
    assert drifted != page and regenerated(drifted) != drifted
    with pytest.raises(ValueError, match="unknown generated block 'workers'"):
        regenerated("<!-- workers:start -->\nx\n<!-- workers:end -->\n")


def test_the_local_dev_worker_lines_are_plan_jsons_commands():
    lines = [line.strip() for line in local_dev_workers("dev").splitlines() if "celery" in line]
    commands = plan_json_worker_commands("dev")
    assert len(lines) == len(commands)
    for line in lines:
        name = re.search(r"-n (\S+)@%h", line).group(1)
        assert line == "../.venv/bin/" + " ".join(commands[name])


def test_every_class_diff_prints_is_in_the_table_with_its_exit_status():
    table = BLOCKS["diff-classes"]()
    for impact in Impact:
        (row,) = [r for r in table.splitlines() if r.startswith(f"| {impact.value} |")]
        assert f"| {int(cli.diff_exit([impact], False))} (" in row


# -- the checkers over every page


def findings(check, *args) -> list[str]:
    return [f for page, text in PAGES.items() for f in check(text, page, *args)]


def test_every_infra_command_and_flag_the_docs_name_exists():
    assert findings(doc_claims.check_commands, PARSERS) == []


def test_every_worker_queue_list_the_docs_show_is_a_pools(pools):
    assert findings(doc_claims.check_worker_queues, pools) == []


def test_every_make_target_the_docs_name_exists():
    assert findings(doc_claims.check_make_targets, TARGETS, VARIABLES) == []


def test_every_exit_status_the_docs_name_is_the_codes():
    assert findings(doc_claims.check_exit_codes, STATUSES, CLASSES) == []


def test_diffs_classes_are_stated_only_in_their_table():
    assert findings(doc_claims.check_class_claims, CLASSES) == []


# -- each checker fails on a drift of its kind


def test_a_drifted_command_fails():
    check = doc_claims.check_commands
    assert check("`python -m infra diff --stack prod --base main`", "ok.md", PARSERS) == []
    assert check("```\npython -m infra plann --stack dev\n```\n", "d.md", PARSERS)  # no such subcommand
    assert check("`python -m infra diff --stack prod --allow-dataloss`", "d.md", PARSERS)  # no such flag
    assert check("`python -m infra verify --stack dev --dry-run`", "d.md", PARSERS)  # another subcommand's flag
    assert check("`migrate --dry-rn`", "d.md", PARSERS)  # a bare subcommand's flag
    assert check("`python -m infra.cli.localstack up --volume`", "d.md", PARSERS)
    assert check("`python -m infra.cli.nothing`", "d.md", PARSERS)
    assert check("`python manage.py dead_letters list --queue dead_letters --json`", "ok.md", PARSERS) == []
    assert check("`python manage.py dead_letters replay --all`", "d.md", PARSERS)  # no such flag
    assert check("`python manage.py dead_letters lst`", "d.md", PARSERS)  # not one of its actions
    assert check("`python -m infra.cli.localstack start`", "d.md", PARSERS)
    assert check("`python manage.py dead_letter list`", "d.md", PARSERS)


def test_a_drifted_worker_command_fails(pools):
    check = doc_claims.check_worker_queues
    sync = "player_sync,player_sync_americas,player_sync_asia,player_sync_sea"
    assert check(f"```sh\ncelery -A config worker -Q {sync}\n```\n", "ok.md", pools) == []
    assert check("```sh\ncelery -A config worker -Q player_sync\n```\n", "d.md", pools)  # the regions missed
    assert check("`celery -A config worker -Q match_processing,timeline_processing`", "d.md", pools)
    example = "```yaml\ncelery:\n  workers:\n    sync: {queues: [player_sync]}   # celery worker -Q player_sync\n```\n"
    assert check(example, "ok.md", pools) == []  # a YAML example's own pool
    assert check(example + "`celery worker -Q player_sync`", "d.md", pools)  # …only inside that example


def test_a_drifted_make_target_fails():
    check = doc_claims.check_make_targets
    assert (
        check(
            "`make local STACK=local`, `make test-fast`\n```sh\nmake golden   # rewrite\n```\n",
            "ok.md",
            TARGETS,
            VARIABLES,
        )
        == []
    )
    assert check("`make test-unit`", "d.md", TARGETS, VARIABLES)
    assert check("```sh\nmake locall\n```\n", "d.md", TARGETS, VARIABLES)
    assert check("`make local-down VOLUME=1`", "d.md", TARGETS, VARIABLES)  # the Makefile reads VOLUMES


def test_a_drifted_exit_code_fails():
    check = doc_claims.check_exit_codes
    assert check("drift; exit 4. A migration does not fail the gate (exit 0).", "ok.md", STATUSES, CLASSES) == []
    assert check("`verify` exits 5 on drift", "d.md", STATUSES, CLASSES)  # no such status
    assert check("a change of `max_priority` is a migration (exit 3).", "d.md", STATUSES, CLASSES)  # wrong class's


def test_a_class_claim_outside_the_table_fails():
    check = doc_claims.check_class_claims
    assert check("changing it re-creates the queue: `diff` reports data loss (exit 3).", "d.md", CLASSES)
    assert check("see [`diff`'s classes](deploying.md#what-a-change-does)", "ok.md", CLASSES) == []


# -- what `make local` prints


def test_make_locals_sample_output_names_urls_the_app_serves():
    note = BLOCKS["local-sample-output"]()
    paths = re.findall(r"http://127\.0\.0\.1:8000(/\S+)", note)
    names = [resolve(p.replace("<job_id>", "6f1c2f4e-0000-4000-8000-000000000000")).url_name for p in paths]
    assert names == ["player-sync", "job-status", "player-detail"]
    assert resolve(unquote(paths[2])).kwargs == {"region": "euw1", "game_name": "Sample Mid", "tag_line": "EUW"}


def test_a_class_or_exit_status_without_a_description_stops_the_generation(monkeypatch):
    from infra.cli import doc_blocks

    monkeypatch.setattr(doc_blocks, "MEANING", {i: "x" for i in list(Impact)[1:]})
    with pytest.raises(KeyError, match=f"MEANING has no description of {list(Impact)[0].name}"):
        doc_blocks.diff_classes()
    monkeypatch.setattr(doc_blocks, "EXIT_MEANING", {})
    with pytest.raises(KeyError, match="EXIT_MEANING has no description of OK"):
        doc_blocks.exit_statuses()
