"""Shortcuts through the Pulumi SDK's per-resource work, for the mock run of `python -m infra plan` only.

`plan` runs the real program on the real SDK with the engine mocked (infra/pulumi/preview.py). Profiled there at
1,000 and 5,000 queues (bench/RESULTS.md), three pieces of the SDK's work cost time without changing
anything the mocks record or `plan` prints:

- `runtime/resource.py` `_get_stack_trace`: a Python stack trace per resource (traceback.extract_stack,
  and a file URI per frame), sent to the engine to point at the source line of a diagnostic. The mock
  monitor drops it; about a fifth of `plan`'s time.
- `runtime/resource_cycle_breaker.py` `_add_dep`: adds one dependency by copying the resource's whole set
  of them (`deps | {to}`). A service that `depends_on` the Topology component depends on each of its
  children, ~16,000 at 5,000 queues: quadratic, and what made `plan` grow faster than the topology. Here
  the set grows in place; what the set holds, and so the cycle check that reads it, is the same.
- `pulumi.log.debug`: a LogRequest per registration step, which the mock engine hands to the root logger
  at DEBUG, which drops it.

And, whatever the SDK's version, Python's cyclic garbage collector is paused for the run: the SDK makes
some 300 futures, outputs and tasks per resource, which set off collections that each walk the whole
growing heap; paused, the 5,000-queue run took half the CPU time for ~15% more peak memory (measured in
bench/RESULTS.md). Collection resumes when the run ends.

Never applied to `pulumi up` (the root `__main__.py` runs `infra.pulumi.program` straight): there the stack trace
is what the engine shows beside an error, and the debug lines are `pulumi up --debug`'s. Written against
the pinned pulumi==3.272.0 (requirements.txt); with any other version `applied()` changes nothing and
`plan` runs the SDK as it is, slower with the same output, and tests/unit/program/test_sdk_shortcuts.py fails
so that the shortcuts are checked against the new SDK's code before they come back.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from importlib.metadata import version

import pulumi.log
import pulumi.runtime.resource as sdk_resource
import pulumi.runtime.resource_cycle_breaker as cycle_breaker
from pulumi.runtime.proto import source_pb2

WRITTEN_FOR = "3.272.0"


def applicable() -> bool:
    """The installed SDK is the one these shortcuts were read against."""
    return version("pulumi") == WRITTEN_FOR


def _no_stack_trace() -> source_pb2.StackTrace:
    return source_pb2.StackTrace()  # what the SDK itself sends when it finds no user frame


def _add_dep_in_place(from_resource, to_resource) -> None:
    deps = getattr(from_resource, cycle_breaker._DEPENDENCIES_PROPERTY, None)
    if deps is None:
        setattr(from_resource, cycle_breaker._DEPENDENCIES_PROPERTY, {to_resource})
    else:
        deps.add(to_resource)


def _drop_debug(*_args, **_kwargs) -> None:
    return None


# (module, attribute, replacement)
_SHORTCUTS = (
    (sdk_resource, "_get_stack_trace", _no_stack_trace),
    (cycle_breaker, "_add_dep", _add_dep_in_place),
    (pulumi.log, "debug", _drop_debug),
)


@contextmanager
def applied(enabled: bool = True):
    """For the `with` block (when `enabled`): the garbage collector paused, and the SDK shortcuts in place
    if the SDK is the pinned one."""
    if not enabled:
        yield
        return
    shortcuts = _SHORTCUTS if applicable() else ()
    saved = [(module, name, getattr(module, name)) for module, name, _ in shortcuts]
    collecting = gc.isenabled()
    gc.disable()
    for module, name, replacement in shortcuts:
        setattr(module, name, replacement)
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)
        if collecting:
            gc.enable()
