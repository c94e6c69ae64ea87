"""Separate Docker hosts on this one machine, for `broker.hosts`: a network namespace per host, made by the
test, joined by a bridge in a namespace of its own (this machine's firewall never sees the traffic), with a
leg for this machine at `.1`; in each namespace a dockerd of its own (own socket, data root, exec root,
pidfile, managed containerd) loaded with the local broker image. Everything is torn down on exit, each wait
bounded. Root only (the tests run as root), like `ip netns`.

`apply_container` runs a container from the inputs the Pulumi program registered (under mocks) for a
`docker.Container`, as pulumi-docker would: create with those settings, upload the files as a tar with
their owners and modes, start.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.support.waiting import wait_for


def run(*argv: str, timeout: float = 120, stdin: bytes | None = None, check: bool = True) -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
    if check and result.returncode:
        raise RuntimeError(f"{' '.join(argv[:6])}: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode(errors="replace").strip()


@dataclass
class DockerHost:
    netns: str
    address: str
    work: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.work}/docker.sock"

    def docker(self, *args: str, timeout: float = 120, stdin: bytes | None = None, check: bool = True) -> str:
        return run("docker", "-H", self.url, *args, timeout=timeout, stdin=stdin, check=check)

    def logs(self, container: str, lines: int = 40) -> str:
        """The container's output, both streams, for a failure's message."""
        return subprocess.run(
            ["docker", "-H", self.url, "logs", "--tail", str(lines), container],
            timeout=30,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ).stdout.decode(errors="replace")

    def start(self) -> None:
        # nsenter, not `ip netns exec`: that one mounts a fresh /sys, hiding the cgroups dockerd needs
        with open(self.work / "dockerd.log", "wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/run/netns/{self.netns}",
                    "dockerd",
                    "--host",
                    self.url,
                    "--data-root",
                    str(self.work / "data"),
                    "--exec-root",
                    str(self.work / "exec"),
                    "--pidfile",
                    str(self.work / "docker.pid"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(
            lambda: (
                self.process.poll() is not None
                or not subprocess.run(["docker", "-H", self.url, "info"], capture_output=True, timeout=10).returncode
            ),
            60,
            f"dockerd in {self.netns} answers",
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"dockerd in {self.netns} exited: {(self.work / 'dockerd.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for container in self.docker("ps", "-aq", check=False).split():
            self.docker("rm", "-f", "-v", container, check=False, timeout=60)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            containerd = self.work / "exec" / "containerd" / "containerd.pid"  # the one this dockerd started
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(containerd.read_text()), signal.SIGKILL)


def _subnet() -> str:
    """A 10.213.x.0/24 no route of this machine covers."""
    routes = run("ip", "-4", "route")
    for third in [os.getpid() % 200 + 20, *range(20, 220)]:
        if f"10.213.{third}." not in routes:
            return f"10.213.{third}"
    raise RuntimeError("no free 10.213.x.0/24")


def _mounts_under(path: Path) -> list[str]:
    return [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(str(path))
    ]


@contextlib.contextmanager
def docker_hosts(count: int, image: str) -> Iterator[list[DockerHost]]:
    tag = f"rch{os.getpid() % 100000}"  # interface names stay within 15 characters
    work = Path(f"/tmp/{tag}-docker-hosts")
    net = _subnet()
    switch = f"{tag}-sw"
    hosts = [DockerHost(f"{tag}-{i}", f"{net}.{10 + i}", work / f"host{i}") for i in range(1, count + 1)]
    namespaces: list[str] = []
    try:
        run("ip", "netns", "add", switch)
        namespaces.append(switch)
        sw = ("ip", "-n", switch)
        run(*sw, "link", "add", "br0", "type", "bridge")
        run(*sw, "link", "set", "br0", "up")
        run("ip", "link", "add", f"{tag}h", "type", "veth", "peer", "name", f"{tag}hs")  # this machine's leg
        run("ip", "link", "set", f"{tag}hs", "netns", switch)
        run(*sw, "link", "set", f"{tag}hs", "master", "br0", "up")
        run("ip", "addr", "add", f"{net}.1/24", "dev", f"{tag}h")
        run("ip", "link", "set", f"{tag}h", "up")
        for i, host in enumerate(hosts, start=1):
            run("ip", "netns", "add", host.netns)
            namespaces.append(host.netns)
            run("ip", "link", "add", f"{tag}n{i}", "type", "veth", "peer", "name", f"{tag}s{i}")
            run("ip", "link", "set", f"{tag}n{i}", "netns", host.netns)
            run("ip", "link", "set", f"{tag}s{i}", "netns", switch)
            run(*sw, "link", "set", f"{tag}s{i}", "master", "br0", "up")
            inside = ("ip", "-n", host.netns)
            run(*inside, "link", "set", "lo", "up")
            run(*inside, "addr", "add", f"{host.address}/24", "dev", f"{tag}n{i}")
            run(*inside, "link", "set", f"{tag}n{i}", "up")
            host.work.mkdir(parents=True)
            host.start()
        saved = work / "image.tar"
        run("docker", "save", "-o", str(saved), image, timeout=300)
        for host in hosts:
            host.docker("load", "-i", str(saved), timeout=300)
        saved.unlink()
        yield hosts
    finally:
        for host in hosts:
            with contextlib.suppress(Exception):
                host.stop()
        for mount in sorted(_mounts_under(work), reverse=True):  # left by a dockerd that did not stop cleanly
            run("umount", "-l", mount, check=False)
        shutil.rmtree(work, ignore_errors=True)
        for ns in reversed(namespaces):  # a namespace's veth ends go with it, and their peers with them
            run("ip", "netns", "del", ns, check=False)
        run("ip", "link", "del", f"{tag}h", check=False)


def _tar(uploads: list[dict]) -> bytes:
    """The uploads as pulumi-docker sends them: one tar, each file with its owner and mode."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for upload in uploads:
            data = upload["content"].encode()
            info = tarfile.TarInfo(upload["file"].lstrip("/"))
            info.size, info.mode = len(data), int(upload.get("permissions") or "0644", 8)
            info.uid = info.gid = int(upload.get("owner") or 0)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def apply_container(host: DockerHost, inputs: dict, image: str) -> None:
    """`inputs`: a registered docker.Container's, secrets unwrapped. Only what the broker's containers use."""
    argv = ["create", "--name", inputs["name"], "--hostname", inputs["hostname"], "--restart", inputs["restart"]]
    for network in inputs.get("networksAdvanced") or []:
        argv += ["--network", network["name"], *(f"--network-alias={a}" for a in network.get("aliases") or [])]
    for volume in inputs.get("volumes") or []:
        argv += ["-v", f"{volume['volumeName']}:{volume['containerPath']}"]
    for port in inputs.get("ports") or []:
        argv += ["-p", f"{port['ip']}:{int(port['external'])}:{int(port['internal'])}"]
    for entry in inputs.get("hosts") or []:
        argv += ["--add-host", f"{entry['host']}:{entry['ip']}"]
    for env in inputs.get("envs") or []:
        argv += ["-e", env]
    check = inputs["healthcheck"]
    kind, *test = check["tests"]
    argv += [
        "--health-cmd",
        test[0] if kind == "CMD-SHELL" else " ".join(test),
        "--health-interval",
        check["interval"],
        "--health-timeout",
        check["timeout"],
        "--health-retries",
        str(int(check["retries"])),
        "--health-start-period",
        check["startPeriod"],
    ]
    entrypoints = inputs.get("entrypoints") or []
    if entrypoints:
        argv += ["--entrypoint", entrypoints[0]]
    host.docker(*argv, image, *entrypoints[1:])
    host.docker("cp", "-", f"{inputs['name']}:/", stdin=_tar(inputs.get("uploads") or []))
    host.docker("start", inputs["name"])
