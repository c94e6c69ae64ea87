"""Which RabbitMQ the tests' nodes run: one setting, `RABBITMQ_SERIES` (3.10 unless set).

3.10 is Debian bookworm's rabbitmq-server, installed on this host (`make rabbitmq-server`). 4.0 is Debian
trixie's, in a debootstrapped root (`make rabbitmq4`, in .rabbitmq/4.0): its Erlang and glibc are newer
than the host's, so the node and its CLI tools run chrooted there, in a private mount namespace that sees
the host's temp directory (where the rendered files and the node's data are) at the same path. Stacks
rendered for a 4.0 node get `broker.version: "4.0"`, so they are validated against what 4.0 supports.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # the real scripts; /usr/sbin's wrappers reset HOME and logs


@dataclass(frozen=True)
class Series:
    name: str  # "3.10", "4.0": what broker.version says
    root: Path | None = None  # a Debian root to chroot into; None: this host's own rabbitmq-server

    @property
    def installed(self) -> bool:
        return (self.root or Path("/")).joinpath(str(RABBIT_BIN).lstrip("/"), "rabbitmq-server").exists()

    @property
    def install_hint(self) -> str:
        return "make rabbitmq-server" if self.root is None else "make rabbitmq4"

    @property
    def env(self) -> dict[str, str]:
        """What the series' scripts need beside the node's own RABBITMQ_* settings: trixie's CLI tools do not
        find the plugins directory by themselves (`rabbitmq-plugins list` fails with
        plugins_dir_does_not_exist)."""
        if self.root is None:
            return {}
        plugins = sorted(self.root.glob("usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins"))
        return {"RABBITMQ_PLUGINS_DIR": "/" + str(plugins[-1].relative_to(self.root))} if plugins else {}

    def overlay(self) -> str:
        """A definition overlay for stacks rendered for this series' nodes ("" for the host's own 3.10,
        which the shipped stacks' 3.13 stands for: the tests have always run them there)."""
        if self.root is None:
            return ""
        return f'broker:\n  version: "{self.name}"\n  image: rabbitmq:{self.name}-management\n'

    def argv(self, tool: str, run_as: tuple[int, int] | None) -> list[str]:
        """The command line of a RabbitMQ script (`rabbitmq-server`, `rabbitmqctl` ...), as uid:gid `run_as`
        in the series' root. Host: the script itself (the caller switches user)."""
        script = str(RABBIT_BIN / tool)
        if self.root is None:
            return [script]
        tmp = tempfile.gettempdir()
        user = [f"--userspec={run_as[0]}:{run_as[1]}", "--groups="] if run_as else []
        inside = shlex.quote(str(self.root) + tmp)
        mounts = (
            f"mkdir -p {inside} && mount --bind {shlex.quote(tmp)} {inside} && "
            f"mount -t proc proc {shlex.quote(str(self.root / 'proc'))} && "
        )
        chroot = shlex.join(["chroot", *user, str(self.root), script])
        # unshare execs (no fork): the process group and SIGKILL reach the node itself
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mounts}exec {chroot} "$@"', tool]


SERIES = {"3.10": Series("3.10"), "4.0": Series("4.0", REPO / ".rabbitmq" / "4.0")}


def current() -> Series:
    name = os.environ.get("RABBITMQ_SERIES", "3.10")
    if name not in SERIES:
        raise ValueError(f"RABBITMQ_SERIES={name!r}: expected one of {', '.join(SERIES)}")
    return SERIES[name]
