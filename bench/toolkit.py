"""The toolkit itself (issue 7): `python -m infra validate|render|plan` on generated definitions of 10, 100,
1,000 and 5,000 queues over 1 to 50 vhosts (tests/support/stackgen.py, seed 7).

Each command runs as a child process, as a user runs it: wall time, and peak memory (GNU time's maximum
resident set size). Beside it, in this process, the work of `render` without the interpreter and imports:
load + validate + plan + render_files, timed with perf_counter. Medians of --runs runs; a PNG of the growth.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import yaml  # noqa: E402
from harness import REPO, machine  # noqa: E402  (puts the repository on sys.path)
from stats import growth_exponent, median, table  # noqa: E402

from infra.definition.load import load_definition, require  # noqa: E402
from infra.plan.plan import NodeLayout, build_plan  # noqa: E402
from infra.render import files as render  # noqa: E402
from tests.support import stackgen  # noqa: E402
from tests.support.stacks import TEST_SECRETS  # noqa: E402

SIZES = [(10, 1), (100, 5), (1000, 20), (5000, 50)]  # (queues, vhosts)
COMMANDS = ("validate", "render", "plan")


def child(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process, which must succeed. The peak is GNU time's %M:
    a child forked from this process would carry this process's own high-water mark into its rusage."""
    start = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *argv], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return wall, int(result.stderr.strip().splitlines()[-1]) / 1024


def in_process_render(path: Path) -> float:
    start = time.perf_counter()
    definition = require(load_definition(file=path))
    plan = build_plan(definition, NodeLayout())
    passwords = dict(TEST_SECRETS)
    for _, ref in plan.secrets():
        passwords.setdefault(ref.secret, "generated")
    render.render_files(plan, passwords)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plot", type=Path, default=REPO / "bench" / "toolkit.png")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-toolkit-"))
    secrets = work / "secrets.yaml"
    secrets.write_text(yaml.safe_dump(TEST_SECRETS))
    secrets.chmod(0o600)
    python = [sys.executable, "-m", "infra"]
    baseline = []  # the interpreter and the toolkit's imports: `python -m infra --help`
    results = {(q, c): ([], []) for q, _ in SIZES for c in COMMANDS}
    inproc = {q: [] for q, _ in SIZES}
    files = {}
    for queues, vhosts in SIZES:
        files[queues] = stackgen.write(work / f"q{queues}.yaml", stackgen.generate(7, queues, vhosts))
    started = time.monotonic()
    for run in range(args.runs):
        baseline.append(child(python + ["--help"]))
        for queues, _ in SIZES:
            f = str(files[queues])
            argvs = {
                "validate": python + ["validate", "--file", f],
                "render": python
                + ["render", "--file", f, "--out", str(work / f"out{queues}"), "--secrets", str(secrets)],
                "plan": python + ["plan", "--file", f],
            }
            for command in COMMANDS:
                wall, rss = child(argvs[command])
                results[(queues, command)][0].append(wall)
                results[(queues, command)][1].append(rss)
            inproc[queues].append(in_process_render(files[queues]))
        print(f"run {run + 1}/{args.runs} done at {time.monotonic() - started:.0f} s", file=sys.stderr)

    base_wall, base_rss = median([b[0] for b in baseline]), median([b[1] for b in baseline])
    print(
        f"## The toolkit: time and peak memory\n\n{machine()}; {args.runs} runs, medians; definitions from "
        f"tests/support/stackgen.py (seed 7). `python -m infra --help` (interpreter + imports): "
        f"{base_wall:.2f} s, {base_rss:.0f} MiB.\n"
    )
    rows = []
    for queues, vhosts in SIZES:
        cells = [f"{queues:,} / {vhosts}"]
        for command in COMMANDS:
            walls, rsss = results[(queues, command)]
            cells.append(f"{median(walls):.2f} s, {median(rsss):.0f} MiB")
        cells.append(f"{median(inproc[queues]) * 1000:.0f} ms")
        rows.append(cells)
    print(table(["queues / vhosts", "validate", "render", "plan (Pulumi mocks)", "render's work in-process"], rows))
    big = [q for q, _ in SIZES if q >= 1000]
    print(
        "\nGrowth exponent from 1,000 to 5,000 queues (log-log slope; 1 = linear; CLI times less the --help "
        "baseline, the interpreter and imports):"
    )
    for command in COMMANDS:
        ys = [max(median(results[(q, command)][0]) - base_wall, 1e-3) for q in big]
        print(f"- {command}: {growth_exponent(big, ys):.2f}")
    print(f"- render's work in-process: {growth_exponent(big, [median(inproc[q]) for q in big]):.2f}")
    plot(args.plot, results, inproc, base_wall)
    print(f"\nPlot: {args.plot.relative_to(REPO) if args.plot.is_relative_to(REPO) else args.plot}")


def plot(path: Path, results, inproc, base_wall: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [q for q, _ in SIZES]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for command, marker in zip(COMMANDS, "osd"):
        left.plot(xs, [median(results[(q, command)][0]) for q in xs], marker=marker, label=f"{command} (CLI)")
        right.plot(xs, [median(results[(q, command)][1]) for q in xs], marker=marker, label=command)
    left.plot(xs, [median(inproc[q]) for q in xs], marker="^", label="render's work in-process")
    left.axhline(base_wall, color="grey", ls=":", label="interpreter + imports")
    ref = [median(inproc[xs[-1]]) * q / xs[-1] for q in xs]
    left.plot(xs, ref, color="grey", ls="--", lw=0.8, label="linear (through 5,000)")
    for ax, title, unit in ((left, "wall time", "seconds"), (right, "peak memory (RSS)", "MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("queues in the definition (1 to 50 vhosts)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("python -m infra validate | render | plan, median of 5 runs")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
