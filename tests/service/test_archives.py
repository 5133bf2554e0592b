"""Model archives (one .onnx plus its external data, as .tar, .tar.gz or .zip) through a real
server with the onnxruntime backend: a valid one builds and its artifact (with its external data)
is served; the cache key covers the data files; every hostile archive gets a 4xx with one line of
JSON and leaves nothing on disk outside the upload's own (removed) folder."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest

from sparsekit.backends.spec import BuildSpec
from sparsekit.service.archives import archive_kind
from tests.service.conftest import TOKEN, Server

ORT = BuildSpec(backend="onnxruntime")
MEMBER_CAP = 8
UNPACKED_MIB = 4


@pytest.fixture(scope="module")
def model_dir(small_onnx, tmp_path_factory) -> Path:
    """A small MLP saved with its weights in ``model.onnx.data`` (ONNX's external-data layout)."""
    folder = tmp_path_factory.mktemp("external") / "model"
    folder.mkdir()
    onnx.save_model(onnx.load(str(small_onnx[0])), str(folder / "model.onnx"), save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    return folder


@pytest.fixture(scope="module")
def archive_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive-server")
    server = Server(root / "state", "--max-archive-members", str(MEMBER_CAP), "--max-unpacked-mib", str(UNPACKED_MIB)).start()
    yield server
    server.stop()


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], gz: bool = False) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def _model_members(model_dir: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [_file(p.name, p.read_bytes()) for p in sorted(model_dir.iterdir())]


def _post(server: Server, path: Path) -> httpx.Response:
    return httpx.post(server.url + "/v1/builds", content=path.read_bytes(), headers={"Authorization": f"Bearer {TOKEN}", "X-Build-Spec": ORT.canonical_json()}, timeout=120)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.name.startswith("server-")}


def test_a_model_archive_builds_and_its_engine_is_served_with_its_data(archive_server, model_dir, tmp_path):
    tar = _tar(tmp_path / "model.tar", _model_members(model_dir))
    c = archive_server.client()
    answer = c.submit(tar, ORT)
    assert answer["how"] == "created"
    build = c.wait(answer["build"]["id"], timeout=300)
    out = tmp_path / "out"
    engine = c.download(build["id"], "engine", out / "model.ort.onnx")
    c.download(build["id"], "engine.data", out / "model.ort.onnx.data")
    meta = json.loads(c.download(build["id"], "metadata.json", out / "metadata.json").read_text())
    assert meta["artifact_files"]["model.ort.onnx.data"]
    from sparsekit.export.parity import ort_session

    x = np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32)
    name = ort_session(model_dir / "model.onnx").get_inputs()[0].name
    got = ort_session(engine).run(None, {name: x})[0]
    want = ort_session(model_dir / "model.onnx").run(None, {name: x})[0]
    assert np.allclose(got, want, atol=1e-5)

    # the same content as a zip is the same build; other weights in the data file are not
    zipped = tmp_path / "model.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(model_dir.iterdir()):
            zf.write(p, p.name)
    assert archive_kind(zipped) == "zip"
    again = c.submit(zipped, ORT)
    assert again["how"] == "cached" and again["build"]["id"] == build["id"]
    data = bytearray((model_dir / "model.onnx.data").read_bytes())
    data[:4] = np.float32(0.5).tobytes()
    changed = _tar(tmp_path / "changed.tar.gz", [_file("model.onnx", (model_dir / "model.onnx").read_bytes()), _file("model.onnx.data", bytes(data))], gz=True)
    other = c.submit(changed, ORT)
    assert other["how"] == "created" and other["build"]["id"] != build["id"]
    assert c.wait(other["build"]["id"], timeout=300)["state"] == "SUCCEEDED"
    stored = sorted(p.name for p in (archive_server.state / "uploads").iterdir())
    assert len(stored) == 2 and all(name.endswith(".model") for name in stored)
    assert sorted(p.name for p in (archive_server.state / "uploads" / stored[0]).iterdir()) == ["model.onnx", "model.onnx.data"]


def _bomb(tmp: Path) -> Path:
    """A tar.gz whose one member unpacks to more than the unpacked limit (zeros: kilobytes packed)."""
    size = (UNPACKED_MIB + 1) << 20
    info = tarfile.TarInfo("model.onnx.data")
    info.size = size
    raw = tmp / "bomb.tar.gz"
    with gzip.open(raw, "wb") as gz:
        gz.write(info.tobuf())
        for _ in range(size // (1 << 20)):
            gz.write(bytes(1 << 20))
        gz.write(bytes(1024))
    return raw


def _zip_size_lie(tmp: Path, model_dir: Path) -> Path:
    """A zip whose data member's headers declare fewer bytes than it holds."""
    path = tmp / "lie.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(model_dir.iterdir()):
            zf.write(p, p.name)
    raw = bytearray(path.read_bytes())
    true = (model_dir / "model.onnx.data").stat().st_size
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = 0
        while (at := raw.find(signature, at)) >= 0:
            if int.from_bytes(raw[at + offset : at + offset + 4], "little") == true:
                raw[at + offset : at + offset + 4] = (true // 2).to_bytes(4, "little")
            at += 4
    path.write_bytes(bytes(raw))
    return path


def _hostile(kind: str, tmp: Path, model_dir: Path, escape: Path) -> Path:
    good = _model_members(model_dir)
    onnx_bytes = (model_dir / "model.onnx").read_bytes()
    build = {
        "traversal": lambda: [*good, _file("../../../" + escape.name, b"escaped")],
        "absolute": lambda: [*good, _file(str(escape), b"escaped")],
        "symlink": lambda: [*good, _special("link", tarfile.SYMTYPE, "/etc/passwd")],
        "hardlink": lambda: [*good, _special("hard", tarfile.LNKTYPE, "model.onnx")],
        "fifo": lambda: [*good, _special("pipe", tarfile.FIFOTYPE)],
        "too_many_members": lambda: [*good, *(_file(f"extra{i}.bin", b"x") for i in range(MEMBER_CAP))],
        "two_onnx": lambda: [*good, _file("second.onnx", onnx_bytes)],
        "missing_data_file": lambda: [_file("model.onnx", onnx_bytes)],
        "unreferenced_file": lambda: [*good, _file("notes.txt", b"not a weight")],
        "short_data_file": lambda: [_file("model.onnx", onnx_bytes), _file("model.onnx.data", (model_dir / "model.onnx.data").read_bytes()[:-8])],
    }
    if kind == "bomb":
        return _bomb(tmp)
    if kind == "size_lie":
        return _zip_size_lie(tmp, model_dir)
    if kind == "truncated":
        data = _tar(tmp / "full.tar", good).read_bytes()
        (tmp / "cut.tar").write_bytes(data[: len(data) // 2])
        return tmp / "cut.tar"
    return _tar(tmp / f"{kind}.tar", build[kind]())


HOSTILE = {
    "traversal": (422, ".."), "absolute": (422, "absolute"), "symlink": (422, "link"), "hardlink": (422, "link"), "fifo": (422, "regular file"),
    "too_many_members": (422, f"more than {MEMBER_CAP} members"), "size_lie": (422, "zip"), "truncated": (422, "tar"), "bomb": (413, f"{UNPACKED_MIB} MiB"),
    "two_onnx": (422, "more than one .onnx"), "missing_data_file": (422, "'model.onnx.data'"), "unreferenced_file": (422, "notes.txt"),
    "short_data_file": (422, "needs bytes"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_archive_is_refused_with_one_line_and_leaves_nothing(kind, archive_server, model_dir, tmp_path):
    escape = tmp_path.parent / f"escaped-{kind}-{os.getpid()}"
    path = _hostile(kind, tmp_path, model_dir, escape)
    assert archive_kind(path) is not None
    state = archive_server.state
    before = _tree(state)
    r = _post(archive_server, path)
    status, words = HOSTILE[kind]
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str) and "\n" not in body["detail"], body
    assert words in body["detail"], body
    assert str(state) not in body["detail"] and ".archive-" not in body["detail"]  # no server path
    assert not any((folder / escape.name).exists() for folder in (escape.parent, state.parent, state, state / "uploads"))
    after = _tree(state)
    assert {p for p in after - before if not p.startswith("engines")} == set(), sorted(after - before)
    assert not [p for p in (state / "uploads").iterdir() if p.name.startswith(".")], "a staging folder was left behind"
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_pax_header_declaring_gigabytes_is_refused_unread(tmp_path):
    from sparsekit.service.archives import ArchiveLimits, ArchiveRefused, unpack_archive

    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, 1 << 30
    path = tmp_path / "pax.tar"
    path.write_bytes(info.tobuf(tarfile.USTAR_FORMAT) + bytes(4096))
    with pytest.raises(ArchiveRefused, match="extended-header") as refused:
        unpack_archive(path, "tar", tmp_path / "out", ArchiveLimits(8, 1 << 30))
    assert refused.value.status == 422


def test_a_compression_bomb_under_the_size_cap_is_refused_by_its_ratio(tmp_path):
    from sparsekit.service.archives import MAX_RATIO, ArchiveLimits, ArchiveRefused, unpack_archive

    path = _tar(tmp_path / "zeros.tar.gz", [_file("model.onnx.data", bytes(32 << 20)), _file("model.onnx", b"x")], gz=True)
    assert path.stat().st_size * MAX_RATIO < 32 << 20
    with pytest.raises(ArchiveRefused, match="times its compressed size") as refused:
        unpack_archive(path, "tar.gz", tmp_path / "out", ArchiveLimits(8, 1 << 30))
    assert refused.value.status == 413
