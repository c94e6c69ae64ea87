"""What the test suite computes while it runs: a command (a `make` tier) under Linux process accounting, then
how busy the cores were and whose CPU seconds those were, by kind of process (docs/testing.md).

    sudo .venv/bin/python bench/suite_cpu.py -- make test-live

Needs root and Debian's `acct` (`accton`, `dump-acct`): `make bench-suite-cpu` installs it. Accounting books a
process when it exits, so the Docker daemons, which outlive the command, are read from /proc before and after.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stats import TICKS, proc_stat, table  # noqa: E402

# An Erlang VM that used less CPU than this was a CLI tool (rabbitmqctl, rabbitmq-diagnostics: about 1 s each);
# a RabbitMQ node's boot alone costs more (about 10 s measured here).
ERLANG_CLI_CPU_S = 4.0
DAEMONS = ("dockerd", "containerd")
ERLANG_THREAD = re.compile(r"^(\d+_|erts_|sys_(sig|msg)_dispatc)")  # accounting names a process by its last thread
KINDS = (
    ("Celery workers and beat", {"celery"}),
    ("Pulumi engine (CLI)", {"pulumi"}),
    (
        "Python: pytest, the toolkit's commands, Pulumi programs",
        {"python", "python3", "event_engine", "grpc_global_tim"},
    ),
    ("Docker", {"runc", "exe", "containerd-shim", "docker", "docker-proxy", *DAEMONS}),
    ("shells (RabbitMQ's scripts, health checks)", {"sh", "bash", "su", "runuser", "rabbitmqctl", "rabbitmq-server"}),
    ("gunicorn and PostgreSQL", {"gunicorn", "postgres", "initdb"}),
)


@dataclass(frozen=True)
class Process:
    comm: str
    cpu_s: float  # user + system


def parse_dump(text: str, ticks: int = TICKS) -> list[Process]:
    """`dump-acct`'s lines: name | version | user | system | elapsed | ... (times in clock ticks)."""
    found = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) > 4:
            found.append(Process(fields[0], (float(fields[2]) + float(fields[3])) / ticks))
    return found


def kind(p: Process) -> str:
    if p.comm == "beam.smp" or ERLANG_THREAD.match(p.comm):
        return "Erlang: RabbitMQ CLI tools" if p.cpu_s < ERLANG_CLI_CPU_S else "Erlang: RabbitMQ nodes"
    if p.comm.startswith("pulumi-resource"):  # the name is cut at 15 characters
        return "Pulumi provider plugins"
    for name, comms in KINDS:
        if p.comm in comms:
            return name
    return "other"


def split(processes: list[Process]) -> tuple[Counter, Counter]:
    """(CPU seconds by kind, processes by kind)."""
    seconds, count = Counter(), Counter()
    for p in processes:
        k = kind(p)
        seconds[k] += p.cpu_s
        count[k] += 1
    return seconds, count


def busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of every core since boot, from /proc/stat (idle and iowait are not busy)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def daemons_cpu() -> dict[str, float]:
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            comm = (proc / "comm").read_text().strip()
            if comm in DAEMONS:
                found[comm] = found.get(comm, 0.0) + proc_stat((proc / "stat").read_text())[1]
        except (OSError, IndexError, ValueError):
            continue
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="+", help="the command to measure, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "pacct"
        log.touch()
        subprocess.run(["accton", str(log)], check=True, capture_output=True)
        try:
            busy0, daemons0, start = busy_ticks(), daemons_cpu(), time.monotonic()
            rc = subprocess.run(args.command).returncode
            busy1, daemons1, wall = busy_ticks(), daemons_cpu(), time.monotonic() - start
        finally:
            subprocess.run(["accton", "off"], capture_output=True)
        processes = parse_dump(subprocess.run(["dump-acct", str(log)], capture_output=True, text=True).stdout)
    if not processes:  # accounting booked nothing: no figure is a failure, not an empty table
        print("suite_cpu: process accounting recorded no process (is the kernel's BSD accounting on?)", file=sys.stderr)
        return 1
    processes += [Process(d, daemons1.get(d, 0.0) - daemons0.get(d, 0.0)) for d in DAEMONS]
    seconds, count = split(processes)
    total = sum(seconds.values())
    busy = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1)
    print(
        f"`{' '.join(args.command)}`: exit {rc}, {wall:.0f} s wall on {os.cpu_count()} cores, busy {100 * busy:.0f}%\n"
    )
    rows = [[k, f"{v:.0f} s", f"{100 * v / (total or 1):.0f}%", count[k]] for k, v in seconds.most_common()]
    print(
        table(["what computes", "CPU", "share", "processes"], [*rows, ["total", f"{total:.0f} s", "", len(processes)]])
    )
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
