"""Two ways topology reaches a broker, for 1,000 queues on a real RabbitMQ node (issue 7).

- Boot-time import: the node boots with the rendered definitions.json (`load_definitions` in rabbitmq.conf,
  what `python -m infra render` sets up); timed from start to `rabbitmqctl await_startup`, beside a boot
  with a definitions file holding only the users (the boot's own cost).
- One management-API call per object, what the Pulumi RabbitMQ provider does: on the node booted with only
  the users, every vhost, permission, policy, exchange, queue and binding of the same definitions.json,
  one HTTP request each over a kept-alive connection, in dependency order.
- One `POST /api/definitions` of the whole definitions.json (what `rabbitmqadmin import` does) to a running
  node: on the node booted with everything, the same objects again in one request, each vhost renamed
  (`post-v00`, ...) so that every object is new. That node then already holds one copy, as the per-object
  node does by the end of its calls; no third boot per run (the suite's 15 minutes).
The definition: tests/support/stackgen.py seed 7, 1,000 queues over 20 vhosts (quorum and classic).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine  # noqa: E402
from stats import median, table  # noqa: E402

from tests.support import stackgen  # noqa: E402
from tests.support.rabbit_node import Ports, RabbitNode  # noqa: E402
from tests.support.stacks import render_for_node  # noqa: E402


def q(name: str) -> str:
    return quote(name, safe="")


def api_calls(definitions: dict) -> list[tuple[str, str, dict]]:
    """(method, path, body) for every object but the users, in the order a provider must create them."""
    calls = []
    for v in definitions.get("vhosts", []):
        calls.append(("PUT", f"vhosts/{q(v['name'])}", {k: v[k] for k in ("description", "tags") if k in v}))
    for p in definitions.get("permissions", []):
        calls.append(
            ("PUT", f"permissions/{q(p['vhost'])}/{q(p['user'])}", {k: p[k] for k in ("configure", "write", "read")})
        )
    for p in definitions.get("topic_permissions", []):
        calls.append(
            (
                "PUT",
                f"topic-permissions/{q(p['vhost'])}/{q(p['user'])}",
                {k: p[k] for k in ("exchange", "write", "read")},
            )
        )
    for p in definitions.get("parameters", []):
        calls.append(("PUT", f"parameters/{q(p['component'])}/{q(p['vhost'])}/{q(p['name'])}", {"value": p["value"]}))
    for p in definitions.get("policies", []):
        calls.append(
            (
                "PUT",
                f"policies/{q(p['vhost'])}/{q(p['name'])}",
                {k: p[k] for k in ("pattern", "definition", "priority", "apply-to") if k in p},
            )
        )
    for e in definitions.get("exchanges", []):
        calls.append(
            (
                "PUT",
                f"exchanges/{q(e['vhost'])}/{q(e['name'])}",
                {k: e[k] for k in ("type", "durable", "auto_delete", "internal", "arguments") if k in e},
            )
        )
    for x in definitions.get("queues", []):
        calls.append(
            (
                "PUT",
                f"queues/{q(x['vhost'])}/{q(x['name'])}",
                {k: x[k] for k in ("durable", "auto_delete", "arguments") if k in x},
            )
        )
    for b in definitions.get("bindings", []):
        kind = "q" if b["destination_type"] == "queue" else "e"
        calls.append(
            (
                "POST",
                f"bindings/{q(b['vhost'])}/e/{q(b['source'])}/{kind}/{q(b['destination'])}",
                {"routing_key": b["routing_key"], "arguments": b.get("arguments", {})},
            )
        )
    return calls


def in_new_vhosts(definitions: dict) -> dict:
    """The same definitions with every vhost renamed `post-<name>`: all new objects on a node holding the old."""

    def moved(item: dict) -> dict:
        return {**item, **({"vhost": f"post-{item['vhost']}"} if "vhost" in item else {})}

    renamed = {k: [moved(x) for x in v] if isinstance(v, list) else v for k, v in definitions.items()}
    renamed["vhosts"] = [{**v, "name": f"post-{v['name']}"} for v in definitions.get("vhosts", [])]
    return renamed


def timed_calls(api, calls: list[tuple[str, str, dict]], queues: int) -> float:
    """Seconds for `calls`, in order, each expected to succeed; then every queue must be there."""
    start = time.perf_counter()
    for method, path, body in calls:
        response = api.session.request(method, f"{api.base}/{path}", json=body, timeout=120)
        if response.status_code not in (200, 201, 204):
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
    seconds = time.perf_counter() - start
    got = len(api.get("queues", columns="name"))
    assert got == queues, f"{got} queues after {len(calls)} call(s), {queues} defined"
    return seconds


def boot(config_dir: Path, ports: Ports) -> tuple[RabbitNode, float]:
    node = RabbitNode(config_dir, ports)
    start = time.perf_counter()
    node.start()
    return node, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--vhosts", type=int, default=20)
    args = parser.parse_args(argv)
    work = Path(shutil.os.environ.get("TMPDIR", "/tmp"))
    source = stackgen.write(
        Path(shutil.os.path.join(work, f"bench-topology-{args.queues}.yaml")),
        stackgen.generate(7, args.queues, args.vhosts),
    )
    full_boot, users_boot, api_time, post_time = [], [], [], []
    counts = {}
    for run in range(args.runs):
        ports = Ports.pick()
        rendered = render_for_node(ports, file=source)
        definitions = rendered.definitions
        admin = rendered.plan.broker.admin_user
        counts = {k: len(v) for k, v in definitions.items() if isinstance(v, list)}
        # 1. boot-time import of everything; 3. then the same objects in new vhosts, in one POST
        node, seconds = boot(rendered.config_dir, ports)
        try:
            api = node.api(admin, rendered.password(admin))
            got = len(api.get("queues", columns="name"))
            assert got == counts["queues"], f"{got} queues after import, {counts['queues']} defined"
            post_time.append(
                timed_calls(api, [("POST", "definitions", in_new_vhosts(definitions))], 2 * counts["queues"])
            )
        finally:
            node.close()
        full_boot.append(seconds)
        # 2. a boot with the users only, then the rest one API call per object
        only_users = {k: v for k, v in definitions.items() if k in ("users", "rabbit_version", "rabbitmq_version")}
        (rendered.config_dir / "definitions.json").write_text(json.dumps(only_users))
        node, seconds = boot(rendered.config_dir, Ports(**{**ports.__dict__}))
        try:
            users_boot.append(seconds)
            api_time.append(
                timed_calls(node.api(admin, rendered.password(admin)), api_calls(definitions), counts["queues"])
            )
        finally:
            node.close()
            shutil.rmtree(rendered.config_dir.parent, ignore_errors=True)
        print(
            f"run {run + 1}/{args.runs}: boot+import {full_boot[-1]:.1f} s, boot {users_boot[-1]:.1f} s, "
            f"API {api_time[-1]:.1f} s, POST {post_time[-1]:.1f} s",
            file=sys.stderr,
        )

    n_calls = len(api_calls(definitions))
    print(
        f"## Topology to the broker: boot-time import, one management-API call per object, one POST\n\n{machine()}; "
        f"{args.runs} runs, medians; RabbitMQ 3.10 (Debian); {args.queues:,} queues over {args.vhosts} vhosts: "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + ".\n"
    )
    import_cost = median([f - u for f, u in zip(full_boot, users_boot)])
    rows = [
        ["boot with the whole definitions.json (to await_startup)", f"{median(full_boot):.1f} s", ""],
        ["boot with the users only", f"{median(users_boot):.1f} s", ""],
        ["→ the import's share of the boot (difference, per run)", f"{import_cost:.1f} s", ""],
        [
            f"management API, one call per object ({n_calls} calls)",
            f"{median(api_time):.1f} s",
            f"{median(api_time) / n_calls * 1000:.1f} ms a call",
        ],
        [
            "management API, one `POST /api/definitions` of the whole file",
            f"{median(post_time):.1f} s",
            "to a running node holding one copy already",
        ],
    ]
    print(table(["way", "time", "note"], rows))
    print(
        f"\nAPI per object / import: {median(api_time) / max(import_cost, 1e-3):.1f}x; API per object / one POST: "
        f"{median(api_time) / max(median(post_time), 1e-3):.1f}x; one POST / import: "
        f"{median(post_time) / max(import_cost, 1e-3):.2f}"
    )


if __name__ == "__main__":
    main()
