"""bench/suite_cpu.py's reading of process accounting (`dump-acct` lines): no accounting, no timing."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from suite_cpu import Process, kind, parse_dump, split  # noqa: E402

DUMP = """\
celery          |v3|   250.00|    40.00|  9000.00|     0|     0| 61000.00|     0.00|    3001|    2990|     |       0|__      |Tue Dec  8 03:41:02 2026
beam.smp        |v3|    90.00|    30.00|   400.00|   107|   113| 90000.00|     0.00|    3002|    3001|     |       0|__      |Tue Dec  8 03:41:03 2026
2_dirty_cpu_sch |v3|  1500.00|   300.00| 20000.00|   107|   113|190000.00|     0.00|    3003|       1|     |       0|__      |Tue Dec  8 03:41:04 2026
pulumi-resource |v3|    70.00|    10.00|   800.00|     0|     0| 40000.00|     0.00|    3004|    3005|     |       0|__      |Tue Dec  8 03:41:05 2026
awk             |v3|     1.00|     0.00|     2.00|     0|     0|  3000.00|     0.00|    3006|    3005|     |       0|__      |Tue Dec  8 03:41:06 2026
"""


def test_each_line_is_a_process_with_its_user_and_system_time_in_seconds():
    processes = parse_dump(DUMP, ticks=100)
    assert [p.comm for p in processes] == ["celery", "beam.smp", "2_dirty_cpu_sch", "pulumi-resource", "awk"]
    assert processes[0].cpu_s == 2.9 and processes[2].cpu_s == 18.0
    assert parse_dump("", ticks=100) == []


def test_an_erlang_vm_is_a_cli_tool_or_a_node_by_the_cpu_it_used_whatever_thread_named_it():
    assert kind(Process("beam.smp", 1.2)) == "Erlang: RabbitMQ CLI tools"
    assert kind(Process("2_dirty_cpu_sch", 18.0)) == "Erlang: RabbitMQ nodes"
    assert kind(Process("sys_sig_dispatc", 0.5)) == "Erlang: RabbitMQ CLI tools"
    assert kind(Process("pulumi-resource", 0.8)) == "Pulumi provider plugins"
    assert kind(Process("pulumi", 3.0)) == "Pulumi engine (CLI)"
    assert kind(Process("awk", 0.01)) == "other"


def test_the_split_sums_seconds_and_counts_processes_by_kind():
    seconds, count = split(parse_dump(DUMP, ticks=100))
    assert round(seconds["Erlang: RabbitMQ nodes"], 2) == 18.0 and count["Erlang: RabbitMQ CLI tools"] == 1
    assert round(sum(seconds.values()), 2) == round(2.9 + 1.2 + 18.0 + 0.8 + 0.01, 2)
