"""The real Pulumi engine beside the compose path and beside one `POST /api/definitions`, in one run.

    make bench-pulumi           # or: .venv/bin/python bench/pulumi_stack.py [--runs R] [--queues N] [--part P]

Stack (`--part stack`), each run the compose side then the Pulumi side, same local images:
- compose: `make local`'s path (tests/e2e/harness.py `running_stack`, no Riot key: the sample Riot API), from
  `compose up` of nothing (new volumes) to every container healthy;
- Pulumi: `python -m infra deploy` of a copy of the repository as a project of its own (tests/pulumi/project.py:
  file backend, passphrase), from nothing to `deploy` returning (the program waits for every container
  healthy); then a no-change `deploy`, a one-policy change (a queue's TTL) through `deploy`, and where the time
  goes: a `pulumi preview` and a `pulumi up` of the same no-change stack, a `pulumi preview` of an empty Python
  program (the engine and the language host alone), and the engine's event log of the policy change
  (`pulumi up --json`: when the program's first resource and the one update reached the engine).

Topology (`--part topology`): the product's Topology component (bench/pulumi_topology_program.py) with the
plan of tests/support/stackgen.py's seed-7 definition (N queues over 20 vhosts, the policies, exchanges,
bindings, users and permissions: as bench/topology_load.py), `pulumi up` through the real rabbitmq provider
against a throwaway node booted with the users only (tests/support/rabbit_node.py), at the CLI's default
parallelism (8) and at each `--parallel` given; then a no-change `pulumi up`; beside one `POST /api/definitions`
of the same objects (in renamed vhosts, to the same node: everything new). Prints Markdown for
bench/RESULTS.md; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    sys.path.insert(0, str(path))

from stats import proc_stat  # noqa: E402
from topology_load import in_new_vhosts, timed_calls  # noqa: E402

from infra.paths import LOCAL_CLI_ROOT  # noqa: E402
from tests.e2e.harness import running_stack  # noqa: E402
from tests.pulumi.project import PASSPHRASE, new_project, wait_healthy  # noqa: E402
from tests.support import stackgen  # noqa: E402
from tests.support.rabbit_node import Ports, RabbitNode  # noqa: E402
from tests.support.stacks import render_for_node  # noqa: E402


def say(line: str) -> None:
    print(f"[bench-pulumi] {line}", file=sys.stderr, flush=True)


def seconds(fn: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    started = time.monotonic()
    fn(*args, **kwargs)
    return time.monotonic() - started


def event_times(stream: str) -> tuple[dict[str, float], list[str]]:
    """From `pulumi up --json`'s engine events (whole-second timestamps): seconds from the first event to the
    first resource the program registered, to the last resource's outputs, to the end; and what changed."""
    events, decoder, at = [], json.JSONDecoder(), 0
    while (at := stream.find("{", at)) >= 0:  # one JSON object after another, however indented
        event, at = decoder.raw_decode(stream, at)
        events.append(event)
    stamps = [e["timestamp"] for e in events if "timestamp" in e]
    first_resource = next((e["timestamp"] for e in events if "resourcePreEvent" in e), stamps[-1])
    outputs = [e["timestamp"] for e in events if "resOutputsEvent" in e]
    changed = [
        e["resOutputsEvent"]["metadata"]["urn"].rsplit("::", 1)[1]
        for e in events
        if "resOutputsEvent" in e and e["resOutputsEvent"]["metadata"]["op"] not in ("same", "read")
    ]
    spans = {
        "to first resource": first_resource - stamps[0],
        "to last resource": (outputs[-1] if outputs else stamps[-1]) - stamps[0],
        "whole": stamps[-1] - stamps[0],
    }
    return spans, changed


def descendants(root: int) -> dict[int, tuple[str, float]]:
    """pid → (part, CPU seconds so far) of `root` and every process under it, from /proc."""
    found: dict[int, tuple[str, float, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            parent, cpu = proc_stat(stat)
            found[int(entry.name)] = (argv, cpu, parent)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            argv, cpu, _ = found[pid]
            tree[pid] = (part(argv), cpu)
            todo += [child for child, (_, _, parent) in found.items() if parent == pid]
    return tree


def part(argv: str) -> str:
    if "pulumi-resource-" in argv:
        return "provider plugin"
    if "language-python-exec" in argv:
        return "Python program (SDK)"
    if "pulumi-language-python" in argv:
        return "language host"
    if "beam.smp" in argv or "rabbitmq" in argv:
        return "RabbitMQ node"
    return "engine (pulumi CLI)" if "pulumi" in argv.split(" ", 1)[0] else "other"


def cpu_while(argv: list[str], watch: list[int], **kwargs: Any) -> tuple[float, dict[str, float]]:
    """Wall seconds of `argv`, and the CPU seconds its processes and those under `watch` spent, by part
    (sampled every half second; the last sample before a process ends is what counts)."""
    started = time.monotonic()
    errors = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors, text=True, **kwargs)
    before = {pid: cpu for root in watch for pid, (_, cpu) in descendants(root).items()}
    seen: dict[int, tuple[str, float]] = {}
    while process.poll() is None:
        for root in [process.pid, *watch]:
            seen.update(descendants(root))
        time.sleep(0.5)
    wall = time.monotonic() - started
    if process.returncode:
        errors.seek(0)
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}: {errors.read()[-3000:]}")
    spent: dict[str, float] = {}
    for pid, (name, cpu) in seen.items():
        spent[name] = spent.get(name, 0.0) + cpu - before.get(pid, 0.0)
    return wall, spent


def empty_program_preview(work: Path, env: dict) -> float:
    """`pulumi preview` of a Python program that declares nothing: CLI, engine, language host and SDK start."""
    root = work / "empty"
    root.mkdir()
    (root / "Pulumi.yaml").write_text(
        f"name: rcbenchempty\nruntime:\n  name: python\n  options:\n    virtualenv: {ROOT / '.venv'}\n"
    )
    (root / "__main__.py").write_text("import pulumi\n")

    def pulumi(*args: str) -> None:
        subprocess.run(["pulumi", *args, "--non-interactive"], cwd=root, env=env, check=True, capture_output=True)

    pulumi("stack", "init", "bench")
    took = seconds(pulumi, "preview", "-s", "bench")
    pulumi("stack", "rm", "--yes", "--force", "-s", "bench")
    return took


def stack_part(runs: int) -> list[tuple[str, str]]:
    times: dict[str, list[float]] = {}
    notes: dict[str, str] = {}

    def add(name: str, value: float) -> None:
        times.setdefault(name, []).append(value)
        say(f"{name}: {value:.1f} s")

    for run in range(runs):
        with running_stack(None, {}, project=f"rcbpc{os.getpid()}x{run}") as stack:
            add("compose: `make local` path, nothing → every container healthy", stack.up_seconds)
        work = Path(tempfile.mkdtemp(prefix="bench-pulumi-"))
        project = new_project(work)
        try:
            add(
                "Pulumi: `python -m infra deploy`, nothing → every container healthy",
                seconds(project.deploy, timeout=1800),
            )
            assert wait_healthy(project, timeout=30)  # `deploy` returned: it must be healthy already
            add("Pulumi: `python -m infra deploy`, no change", seconds(project.deploy))
            add("  of which: `pulumi preview`, no change", seconds(project.pulumi, "preview", env=CHECKED))
            add("  of which: `pulumi up --skip-preview`, no change", seconds(up, project))
            add("  of which: `pulumi preview` of an empty Python program", empty_program_preview(work, project.env))
            project.edit_stack({"vhosts": {"/": {"queues": {"player_sync": {"ttl": "45m"}}}}})
            add("Pulumi: `python -m infra deploy`, one policy changed (a TTL)", seconds(project.deploy))
            project.edit_stack({"vhosts": {"/": {"queues": {"player_sync": {"ttl": "40m"}}}}})
            started = time.monotonic()
            stream = up(project, "--json")
            add("  of which: `pulumi up --skip-preview --json`, one policy changed", time.monotonic() - started)
            spans, changed = event_times(stream)
            for key, value in spans.items():
                add(f"  event log of that `up`: {key}", value)
            notes["changed"] = ", ".join(changed)
        finally:
            project.cleanup()
            shutil.rmtree(work, ignore_errors=True)
    compose = statistics.median(times["compose: `make local` path, nothing → every container healthy"])
    pulumi = statistics.median(times["Pulumi: `python -m infra deploy`, nothing → every container healthy"])
    rows = [(name, spread(values)) for name, values in times.items()]
    rows.append(("ratio Pulumi / compose, from nothing (medians)", f"{pulumi / compose:.2f}"))
    rows.append(("resources the policy change's `up` changed", notes.get("changed", "")))
    return rows


CHECKED = {"RABBITMQ_CELERY_MIGRATIONS_CHECKED": "1"}  # as `deploy` sets it once it has run its migration check


def up(project, *extra: str) -> str:
    return project.pulumi("up", "--yes", "--skip-preview", *extra, env=CHECKED).stdout


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f} s"
    return f"{statistics.median(values):.1f} s (min {min(values):.1f}, max {max(values):.1f})"


def topology_part(queues: int, parallels: list[int]) -> list[tuple[str, str]]:
    work = Path(tempfile.mkdtemp(prefix="bench-pulumi-topology-"))
    source = stackgen.write(work / "topology.yaml", stackgen.generate(7, queues, 20))
    ports = Ports.pick()
    rendered = render_for_node(ports, file=source)
    definitions = rendered.definitions
    counts = {k: len(v) for k, v in definitions.items() if isinstance(v, list) and v}
    only_users = {k: v for k, v in definitions.items() if k in ("users", "rabbit_version", "rabbitmq_version")}
    (rendered.config_dir / "definitions.json").write_text(json.dumps(only_users))
    secrets = work / "secrets.json"
    secrets.write_text(json.dumps(rendered.passwords))
    secrets.chmod(0o600)
    program = work / "program"
    program.mkdir()
    (program / "Pulumi.yaml").write_text(
        f"name: rcbenchtopology\nruntime:\n  name: python\n  options:\n    virtualenv: {ROOT / '.venv'}\n"
    )
    (program / "__main__.py").write_text(
        f"import sys\nsys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'bench')!r}]\n"
        "from pulumi_topology_program import main\n\nmain()\n"
    )
    (work / "state").mkdir()
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(LOCAL_CLI_ROOT / "bin"), str(ROOT / ".venv" / "bin"), os.environ["PATH"]]),
        "PULUMI_BACKEND_URL": f"file://{work / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "BENCH_DEFINITION": str(source),
        "BENCH_SECRETS": str(secrets),
        "BENCH_ENDPOINT": f"http://127.0.0.1:{ports.management}",
    }

    def pulumi(*args: str, stack: str) -> tuple[float, dict[str, float]]:
        assert node.process is not None
        return cpu_while(
            ["pulumi", *args, "--stack", stack, "--non-interactive"], [node.process.pid], cwd=program, env=env
        )

    admin = rendered.plan.broker.admin_user
    rows: list[tuple[str, str]] = []
    node = RabbitNode(rendered.config_dir, ports)
    try:
        node.start()
        api = node.api(admin, rendered.password(admin))
        resources = sum(n for k, n in counts.items() if k not in ("rabbit_version", "rabbitmq_version"))
        for parallel in [0, *parallels]:  # 0: the CLI's default (8)
            stack = f"p{parallel}"
            flag = ("--parallel", str(parallel)) if parallel else ()
            label = f"--parallel {parallel}" if parallel else "default parallelism"
            pulumi("stack", "init", stack=stack)
            took, cpu = pulumi("up", "--yes", "--skip-preview", *flag, stack=stack)
            got = len(api.get("queues", columns="name"))
            assert got == counts["queues"], f"{got} queues after `pulumi up`, {counts['queues']} defined"
            say(f"pulumi up, {label}: {took:.1f} s; CPU {cpu}")
            rows.append((f"`pulumi up` of {resources} resources, nothing → all, {label}", f"{took:.1f} s"))
            rows.append((f"  CPU of that `up` by part, {label}", cpu_text(cpu)))
            took, cpu = pulumi("up", "--yes", "--skip-preview", *flag, stack=stack)
            say(f"pulumi up, no change, {label}: {took:.1f} s; CPU {cpu}")
            rows.append((f"`pulumi up`, no change, {label}", f"{took:.1f} s"))
            rows.append((f"  CPU of that `up` by part, {label}", cpu_text(cpu)))
            if parallel != ([0, *parallels])[-1]:  # empty the node again for the next parallelism
                took, _ = pulumi("destroy", "--yes", "--skip-preview", *flag, stack=stack)
                say(f"pulumi destroy, {label}: {took:.1f} s")
                rows.append((f"`pulumi destroy`, {label}", f"{took:.1f} s"))
        # Users kept on destroy (the admin is retained): the POST's copy lands in renamed vhosts, all new.
        took = timed_calls(api, [("POST", "definitions", in_new_vhosts(definitions))], 2 * counts["queues"])
        say(f"POST /api/definitions: {took:.1f} s")
        rows.append(("one `POST /api/definitions` of the same objects (renamed vhosts, same node)", f"{took:.1f} s"))
        rows.append(("objects", ", ".join(f"{n} {k}" for k, n in counts.items())))
    finally:
        node.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(rendered.config_dir.parent, ignore_errors=True)
    return rows


def cpu_text(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.0f} s" for name, value in sorted(cpu.items(), key=lambda kv: -kv[1]))


def machine() -> str:
    docker = subprocess.run(["docker", "version", "-f", "{{.Server.Version}}"], capture_output=True, text=True)
    pulumi = subprocess.run([str(LOCAL_CLI_ROOT / "bin" / "pulumi"), "version"], capture_output=True, text=True)
    return (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, {platform.platform()}, "
        f"Docker {docker.stdout.strip()}, Pulumi {pulumi.stdout.strip()}; load average (1 min) at the end "
        f"{os.getloadavg()[0]:.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument(
        "--parallel", type=int, action="append", default=[], help="also measure at this --parallel (CLI default: 8)"
    )
    parser.add_argument("--part", choices=("all", "stack", "topology"), default="all")
    args = parser.parse_args()
    rows = []
    if args.part in ("all", "stack"):
        rows += stack_part(args.runs)
    if args.part in ("all", "topology"):
        rows += topology_part(args.queues, args.parallel)
    print(machine())
    print("\n| measure | time |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
