"""scripts/build-pulumi's guards, without a Go build: a tarball is unpacked only when its sha256 is the pinned one,
and a missing or changed one is refused by name; the plugins built are exactly those the pinned SDKs ask for."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import io
import sys
import tarfile
from pathlib import Path

import pytest

from infra.paths import REPO
from infra.pulumi.engine import required_plugins

pytestmark = pytest.mark.unit


def load_script():
    loader = importlib.machinery.SourceFileLoader("build_pulumi", str(REPO / "scripts" / "build-pulumi"))
    spec = importlib.util.spec_from_loader("build_pulumi", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_pulumi"] = module  # its dataclasses look their module up there
    loader.exec_module(module)
    return module


@pytest.fixture
def build(tmp_path, monkeypatch):
    module = load_script()
    monkeypatch.setattr(module, "CACHE", tmp_path / "cache")
    return module


def tarball(path: Path, top: str) -> str:
    data = b"package main\n"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(f"{top}/main.go")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_tarball_the_build_needs_is_pinned(build):
    sums = build.pinned_sums()
    needed = {build.plugin_piece(p, sums).tarball for p in required_plugins()}
    needed.add(build.language_host_piece(sums).tarball)
    assert needed == set(sums), "tools/pulumi/sources.sha256 and the pinned SDKs disagree"
    assert all(len(digest) == 64 for digest in sums.values())


def test_the_plugins_built_are_the_versions_the_sdks_ask_for(build):
    sums = build.pinned_sums()
    for plugin in required_plugins():
        piece = build.plugin_piece(plugin, sums)
        assert piece.tarball == f"pulumi-{plugin.name}-{plugin.version}.tar.gz"
        assert f"pkg/version.Version={plugin.version}" in piece.ldflags[0]
        assert piece.tags == (["no_compose"] if plugin.name == "docker" else [])


def test_a_tarball_with_the_pinned_sum_is_unpacked(build, tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    digest = tarball(sources / "pulumi-x-1.0.0.tar.gz", "pulumi-x-1.0.0")
    piece = build.Piece("pulumi-resource-x", "x", [], ["-X v=1.0.0"], tarball="pulumi-x-1.0.0.tar.gz")
    top = build.unpack(piece, sources, {"pulumi-x-1.0.0.tar.gz": digest})
    assert (top / "main.go").read_text() == "package main\n"


def test_a_changed_tarball_is_refused_by_name_and_nothing_unpacked(build, tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    tarball(sources / "pulumi-x-1.0.0.tar.gz", "pulumi-x-1.0.0")
    piece = build.Piece("pulumi-resource-x", "x", [], ["-X v=1.0.0"], tarball="pulumi-x-1.0.0.tar.gz")
    with pytest.raises(
        build.BuildError, match=r"pulumi-x-1\.0\.0\.tar\.gz: sha256 [0-9a-f]{64} is not the pinned 0{64}"
    ):
        build.unpack(piece, sources, {"pulumi-x-1.0.0.tar.gz": "0" * 64})
    assert not (build.CACHE / "src").exists()


def test_a_missing_or_unpinned_tarball_is_refused_by_name(build, tmp_path):
    piece = build.Piece("pulumi-resource-x", "x", [], ["-X v=1.0.0"], tarball="pulumi-x-1.0.0.tar.gz")
    with pytest.raises(build.BuildError, match=r"pulumi-x-1\.0\.0\.tar\.gz is not in"):
        build.unpack(piece, tmp_path, {"pulumi-x-1.0.0.tar.gz": "0" * 64})
    with pytest.raises(build.BuildError, match=r"pulumi-x-1\.0\.0\.tar\.gz has no sha256"):
        build.unpack(piece, tmp_path, {})
    with pytest.raises(build.BuildError, match="PULUMI_PROVIDER_SOURCES"):
        build.unpack(piece, None, {"pulumi-x-1.0.0.tar.gz": "0" * 64})


def test_a_current_binary_in_the_cache_is_not_built_again(build, monkeypatch):
    piece = build.Piece("pulumi-resource-x", "x", ["sum"], ["-X v=1.0.0"], tarball="pulumi-x-1.0.0.tar.gz")
    binary = build.CACHE / "bin" / piece.output
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"built before")
    (binary.parent / f".{piece.output}.stamp").write_text(build.stamp_of(piece))

    def no_build(*args, **kwargs):
        raise AssertionError("built again")

    monkeypatch.setattr(build, "go_build", no_build)
    assert build.cached_build(piece, False, None, {}) == binary
