"""The stack definition: the shipped stacks, the issue's fragment, and every broken file's exact message."""

from pathlib import Path

import pytest

from infra.cli.main import main
from infra.definition.findings import format_finding
from infra.definition.load import load_definition

INVALID = sorted(Path("tests/data/invalid").glob("*.yaml"))
SEED = {  # the seed's queue characteristics: ttl, max_length, rate_limit (the Riot rate limiter paces the
    # tasks that call Riot, for every worker together, instead of Celery's per-process limits)
    "player_sync": ("2h", 1000, None),
    "match_processing": ("30m", 5000, None),
    "timeline_processing": ("30m", 5000, None),
    "recovery": ("4h", 100, "5/m"),
}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_shipped_stacks_are_valid_without_warnings(stack):
    loaded = load_definition(stack=stack)
    assert loaded.ok and loaded.findings == []


def test_base_declares_the_seed_queues_with_the_seed_limits():
    definition = load_definition(stack="dev").definition
    queues = definition.vhosts["/"].queues
    assert {"default", "player_sync", "match_processing", "timeline_processing", "recovery", "maintenance"} <= set(
        queues
    )
    for name, (ttl, max_length, rate) in SEED.items():
        assert (str(queues[name].ttl), queues[name].max_length, queues[name].rate_limit) == (ttl, max_length, rate)
    parking = {name for name, q in queues.items() if q.parking}
    assert parking == {"dead_letters"}
    assert all(q.dead_letter == "dead_letters" for name, q in queues.items() if name not in parking)


def test_environments_differ_where_their_files_say():
    dev, prod = (load_definition(stack=s).definition for s in ("dev", "prod"))
    assert (dev.broker.memory_high_watermark, prod.broker.memory_high_watermark) == (0.4, 0.6)
    assert prod.celery.workers["matches"].concurrency == 8 and dev.celery.workers["matches"].concurrency == 2
    assert dev.celery.workers["matches"].queues == prod.celery.workers["matches"].queues  # merged, not lost


def test_the_issue_fragment_is_accepted_as_written(tmp_path):
    minimal = Path("tests/data/valid/minimal.yaml").read_text()
    fragment = "      player_sync: {type: quorum, ttl: 2h, max_length: 1000, rate_limit: 10/m, dead_letter: default}\n"
    text = minimal.replace("      parked:", fragment + "      parked:").replace(
        "    all: {queues: [default], user: worker-all}",
        "    all: {queues: [default, player_sync], user: worker-all}\n  routes: {t.sync: player_sync}",
    )
    path = tmp_path / "fragment.yaml"
    path.write_text(text)
    loaded = load_definition(file=path)
    assert loaded.ok, [format_finding(f) for f in loaded.findings]
    queue = loaded.definition.vhosts["main"].queues["player_sync"]
    assert (queue.ttl, queue.max_length, queue.rate_limit, queue.dead_letter) == (7_200_000, 1000, "10/m", "default")
    # Accepted, with the seed's pitfall pointed out: `default` is consumed by workers.
    assert [f.message.split(":")[0] for f in loaded.findings] == [
        "dead letters go to 'default', a queue workers consume"
    ]


def expected_lines(path: Path) -> list[str]:
    return [
        f"{path}:{line[len('# expect: ') :]}" for line in path.read_text().splitlines() if line.startswith("# expect: ")
    ]


def test_there_are_at_least_25_broken_definitions():
    assert len(INVALID) >= 25
    assert all(expected_lines(path) for path in INVALID)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_broken_definition_gives_its_exact_message_and_exit_2(path, capsys):
    assert main(["validate", "--file", str(path)]) == 2
    printed = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(str(path) + ": ")]
    assert printed == expected_lines(path)


@pytest.mark.parametrize("path", INVALID[:5] + INVALID[-5:], ids=lambda p: p.stem)
def test_render_of_a_broken_definition_writes_nothing(path, tmp_path, capsys):
    out = tmp_path / "out"
    secrets = tmp_path / "secrets.yaml"
    assert main(["render", "--file", str(path), "--out", str(out), "--secrets", str(secrets)]) == 2
    assert not out.exists() and not secrets.exists()
    assert "nothing written" in capsys.readouterr().err


def test_a_quorum_parking_queue_on_4_warns_of_the_default_delivery_limit(tmp_path):
    overlay = tmp_path / "4.0.yaml"
    overlay.write_text('broker: {version: "4.0", image: "rabbitmq:4.0-management"}\n')
    assert load_definition(file=Path("tests/data/valid/minimal.yaml")).findings == []
    loaded = load_definition(file=Path("tests/data/valid/minimal.yaml"), overlays=(overlay,))
    assert loaded.ok
    assert [(".".join(map(str, f.path)), f.message.split(":")[0]) for f in loaded.findings] == [
        (
            "vhosts.main.queues.parked",
            "on RabbitMQ 4.0 a quorum queue without delivery_limit drops a message "
            "returned 20 times, and `dead_letters list` returns what it reads",
        )
    ]
