"""`python -m infra diff`: changes classified by what they do to a running system, on real git history."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from infra.definition.load import load_definition, require
from infra.ops import changes
from infra.ops.changes import Impact
from infra.plan.plan import build_plan
from tests.unit.test_cli import infra

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]


@pytest.fixture
def repo(tmp_path):
    """A git repository holding a copy of the shipped stacks, committed once; edit `stacks/dev.yaml`."""
    shutil.copytree("stacks", tmp_path / "stacks")
    subprocess.run(GIT + ["init", "-q", str(tmp_path)], check=True)
    subprocess.run(GIT + ["-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(GIT + ["-C", str(tmp_path), "commit", "-qm", "base"], check=True)
    return tmp_path


def merged(base: dict, patch: dict) -> dict:
    out = dict(base)
    for key, value in patch.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def overlay(repo, text: str) -> None:
    """Lay YAML over stacks/dev.yaml, as an edit of the working tree would."""
    dev = repo / "stacks" / "dev.yaml"
    dev.write_text(yaml.safe_dump(merged(yaml.safe_load(dev.read_text()), yaml.safe_load(text))))


def rows(output: str) -> list[tuple[str, str, str]]:
    """(impact, object, change) of the text table."""
    found = []
    for line in output.splitlines():
        for impact in ("data loss", "migration", "restart", "in place"):
            if line.startswith(impact + " "):
                subject, what = line[len(impact) :].strip().split("  ", 1)
                found.append((impact, subject, what.strip()))
    return found


def diff(repo, *extra: str):
    return infra("diff", "--stack", "dev", "--base", "HEAD", "--stacks-dir", str(repo / "stacks"), *extra)


def test_a_ttl_change_is_in_place_and_a_shorter_ttl_warns(repo):
    overlay(repo, 'vhosts: {"/": {queues: {player_sync: {ttl: 30m}}}}')
    result = diff(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert rows(result.stdout) == [("in place", "policy /:queue.player_sync", "message-ttl 2h → 30m")]
    assert "messages in player_sync now expire after 30m (was 2h) and are dead-lettered" in result.stdout
    assert "1 change(s): 1 in place" in result.stdout


def test_a_watermark_change_restarts_the_broker(repo):
    overlay(repo, "broker: {memory_high_watermark: 0.5}")
    result = diff(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    ((impact, subject, what),) = rows(result.stdout)
    assert (impact, subject) == ("restart", "broker")
    assert what.startswith("rabbitmq.conf: vm_memory_high_watermark.relative 0.4 → 0.5: the container is replaced")
    assert "+vm_memory_high_watermark.relative = 0.5" in result.stdout  # the rendered file's diff
    assert "1 change(s): 1 restart" in result.stdout


def test_a_queue_type_change_is_a_migration_and_passes_the_gate(repo):
    overlay(repo, 'vhosts: {"/": {queues: {timeline_processing: {type: classic, delivery_limit: ~}}}}')
    result = diff(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    found = rows(result.stdout)
    assert found[0][:2] == ("migration", "queue /:timeline_processing")
    assert found[0][2].startswith(
        "quorum → classic: re-created, its messages moved through "
        "timeline_processing.migrating by `python -m infra migrate` before `pulumi up`; "
        "its consumers pause about"
    )
    assert all(impact == "in place" for impact, _, _ in found[1:])  # its policy, and the services' celery.json
    assert "1 migration" in result.stdout and "Exit 3" not in result.stdout


def test_a_rename_is_a_migration_and_not_a_removal(repo):
    dev = repo / "stacks" / "dev.yaml"
    text = dev.read_text()
    overlay(
        repo,
        'vhosts: {"/": {queues: {maintenance: ~, housekeeping: {type: quorum, renamed_from: maintenance}}}}'
        "\ncelery: {routes: {matches.tasks.purge_old_data: housekeeping}, "
        "workers: {background: {queues: [default, recovery, housekeeping]}}}",
    )
    result = diff(repo, "--format", "markdown")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| 🚚 migration | `queue /:housekeeping` | renamed from maintenance: its messages move here" in result.stdout
    assert "data loss" not in result.stdout and "/:maintenance" not in result.stdout
    dev.write_text(text)
    overlay(
        repo,
        'vhosts: {"/": {queues: {maintenance: ~, housekeeping: {type: quorum}}}}'
        "\ncelery: {routes: {matches.tasks.purge_old_data: housekeeping}, "
        "workers: {background: {queues: [default, recovery, housekeeping]}}}",
    )
    assert diff(repo).returncode == 3  # without renamed_from: the old queue is removed, with its messages


def test_a_removed_queue_is_data_loss_in_markdown_too(repo):
    overlay(
        repo,
        'vhosts: {"/": {queues: {maintenance: ~}}}\ncelery: {routes: {matches.tasks.purge_old_data: ~}, '
        "workers: {background: {queues: [default, recovery]}}}",
    )
    result = diff(repo, "--format", "markdown")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "| impact | object | change |" in result.stdout
    assert "| 🛑 data loss | `queue /:maintenance` | removed: the queue and its messages are deleted |" in result.stdout
    assert "<details><summary>celery.json</summary>" in result.stdout


def test_unchanged_and_unknown_ref(repo):
    assert "No change." in diff(repo).stdout
    bad = infra("diff", "--stack", "dev", "--base", "no-such-ref", "--stacks-dir", str(repo / "stacks"))
    assert bad.returncode == 1 and "cannot read 'no-such-ref'" in bad.stderr


def test_a_stack_new_since_the_ref_is_created_in_place(repo):
    (repo / "stacks" / "qa.yaml").write_text(
        (repo / "stacks" / "staging.yaml").read_text().replace("environment: staging", "environment: qa")
    )
    result = infra("diff", "--stack", "qa", "--base", "HEAD", "--stacks-dir", str(repo / "stacks"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "new: every resource is created" in result.stdout


def plans(base_overlay: dict, head_overlay: dict):
    import tempfile
    from pathlib import Path

    import yaml

    out = []
    for extra in (base_overlay, head_overlay):
        path = Path(tempfile.mkdtemp()) / "overlay.yaml"
        path.write_text(yaml.safe_dump(extra))
        out.append(build_plan(require(load_definition(stack="dev", overlays=(path,)))))
    return out


def test_policy_warnings_name_the_new_fate_of_messages():
    base, head = plans(
        {},
        {
            "vhosts": {
                "/": {
                    "queues": {
                        "default": {"max_length": 100, "overflow": "drop-head"},
                        "recovery": {"dead_letter": None, "delivery_limit": 2},
                    }
                }
            }
        },
    )
    found = {c.subject: c for c in changes.classify(base, head)}
    assert all(c.impact is Impact.IN_PLACE for c in found.values())
    assert found["policy /:queue.default"].warnings == (
        "default holds at most 100 messages (was 10000); when full, the oldest messages are dead-lettered",
        "when default is full, its oldest messages are now dead-lettered instead of new ones refused",
    )
    assert found["policy /:queue.recovery"].warnings == (
        "a message of recovery is now dropped after 2 deliveries (was 5)",
        "expired, dropped and rejected messages of recovery are now discarded instead of parked",
    )


def test_a_worker_concurrency_change_recreates_only_that_worker():
    base, head = plans({}, {"celery": {"workers": {"matches": {"concurrency": 6}}}})
    (change,) = changes.classify(base, head)
    assert change.impact is Impact.IN_PLACE and change.subject == "service worker-matches"
    assert "--concurrency 2" in change.what and "--concurrency 6" in change.what


def test_a_grown_cluster_says_how_to_place_replicas_and_a_shrunk_one_how_to_remove_them():
    base, head = plans({"broker": {"nodes": 3}}, {"broker": {"nodes": 5}})
    (grown,) = [c for c in changes.classify(base, head) if c.subject == "broker"]
    assert grown.impact is Impact.RESTART
    assert "rabbitmq-queues grow <node> all" in grown.warnings[0]
    assert "rabbit@rabbitmq-4, rabbit@rabbitmq-5" in grown.warnings[0]
    (shrunk,) = [c for c in changes.classify(head, base) if c.subject == "broker"]  # 5 → 3: 3 of 5 members stay
    assert shrunk.impact is Impact.RESTART and "rabbitmq-queues shrink <node>" in shrunk.warnings[0]
    assert "forget_cluster_node" in shrunk.warnings[0] and "rabbit@rabbitmq-3," not in shrunk.warnings[0]
    seven, three = plans({"broker": {"nodes": 7}}, {"broker": {"nodes": 3}})
    (lost,) = [c for c in changes.classify(seven, three) if c.subject == "broker"]  # 4 of 7 members removed
    assert lost.impact is Impact.DATA_LOSS and "majority" in lost.what
    assert "rabbit@rabbitmq-4, rabbit@rabbitmq-5, rabbit@rabbitmq-6, rabbit@rabbitmq-7" in lost.warnings[0]


def test_going_from_one_node_to_a_cluster_is_data_loss_and_growing_a_cluster_restarts_it(repo):
    overlay(repo, "broker: {nodes: 3}")
    result = diff(repo)
    assert result.returncode == 3, result.stdout + result.stderr
    impacts = {(impact, subject) for impact, subject, _ in rows(result.stdout)}
    assert ("data loss", "broker") in impacts
    assert "the messages on the old node are not moved" in result.stdout
    subprocess.run(GIT + ["-C", str(repo), "commit", "-qam", "three nodes"], check=True)
    overlay(repo, "broker: {nodes: 5}")
    result = diff(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    ((impact, subject, what),) = [r for r in rows(result.stdout) if r[1] == "broker"]
    assert impact == "restart" and "cluster_formation.classic_config.nodes.5 unset → rabbit@rabbitmq-5" in what


def test_a_max_priority_change_is_a_migration(repo):
    # dead_letters is classic: its x-max-priority is a queue argument, so the queue is re-created, its
    # messages moved through a temporary queue
    overlay(repo, 'vhosts: {"/": {queues: {dead_letters: {max_priority: 5}}}}')
    result = diff(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert rows(result.stdout)[0][:2] == ("migration", "queue /:dead_letters")
    assert rows(result.stdout)[0][2].startswith(
        "classic → classic (max priority 5): re-created, its messages moved through dead_letters.migrating"
    )
