"""Dataset fetching against a real HTTP server on 127.0.0.1: download, resume, checksum pinning, hand-placed archives,
safe extraction, each benchmark's layout, the identity record and the atomic folder swap, with small archives built
here in the official layouts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import benchmark.core.atomic as atomic
from benchmark.core.config import load_config
from benchmark.core.hashing import sha256_file
from benchmark.core.layout import FETCH_MANIFEST, IDENTITY_RECORD, Layout
from benchmark.core.sections import DatasetConfig, FetchConfig, PathsConfig, ScoringProtocol
from benchmark.data.archives import safe_extract
from benchmark.data.decode import read_rgb
from benchmark.data.download import download, obtain_archive
from benchmark.data.errors import ChecksumError, FetchError, UnsafeArchiveError
from benchmark.data.fetch import build_dataset, fetch_archive, read_checksums
from benchmark.data.identity import content_hash, read_identity
from benchmark.data.pairs import find_pairs

REPO = Path(__file__).resolve().parents[1]


# --- a local HTTP server with Range support and scripted failures ---------------------------------------------


class _Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cut_once: dict[str, int] = {}  # path -> bytes sent before dropping the connection (first request only)
        self.html: set[str] = set()  # paths answered with an HTML page
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Range")))
                if self.path in server.html:
                    body = b"<html>confirm download</html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                file = server.root / self.path.lstrip("/")
                if not file.is_file():
                    self.send_error(404)
                    return
                data = file.read_bytes()
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                cut = server.cut_once.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    root = tmp_path / "www"
    root.mkdir()
    with _Server(root) as s:
        yield s


# --- archives in the official layouts -----------------------------------------------------------------------------


def _png(seed: int, size: tuple[int, int] = (8, 12)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def gopro_files() -> dict[str, bytes]:
    """GOPRO_Large/{train,test}/<scene>/{blur,blur_gamma,sharp}/<frame>.png: 2 scenes x 2 train, 1 x 2 test frames."""
    files, seed = {}, 0
    for split, scenes in (("train", ("GOPR0372_07_00", "GOPR0374_11_00")), ("test", ("GOPR0384_11_00",))):
        for scene in scenes:
            for frame in ("000047", "000048"):
                for folder in ("blur", "blur_gamma", "sharp"):
                    seed += 1
                    files[f"GOPRO_Large/{split}/{scene}/{folder}/{frame}.png"] = _png(seed)
    return files


GOPRO_SPEC = FetchConfig(archive="GOPRO_Large.zip", urls=(), layout="gopro", counts={"train": 4, "test": 2})


def _layout(tmp_path: Path) -> Layout:
    """The layout of a scratch repository at ``tmp_path``: data in ``<tmp>/data``, checksums pinned in
    ``<tmp>/checksums.sha256`` (never the repository's)."""
    return Layout(PathsConfig(data=str(tmp_path / "data")), root=tmp_path)


def _fetch(spec: FetchConfig, tmp_path: Path, dataset: str = "gopro", **kw: object) -> dict[str, int]:
    """Fetch into the scratch layout's ``<data>/<dataset>``, the archive placed where the layout keeps archives."""
    layout = _layout(tmp_path)
    return fetch_archive(
        dataset,
        spec,
        layout.dataset(dataset),
        placed=layout.archive(spec.archive),
        checksums=layout.checksums,
        progress=False,
        **kw,  # type: ignore[arg-type]
    )


def _leftovers(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if p.name.startswith(".")) if data.exists() else []


# --- download, resume, checksums ------------------------------------------------------------------------------


def test_download_verify_extract_and_normalise_gopro(server: _Server, tmp_path: Path) -> None:
    files = gopro_files()
    archive = _zip(server.root / "GOPRO_Large.zip", files)
    spec = FetchConfig(
        archive="GOPRO_Large.zip",
        urls=(f"{server.url}/GOPRO_Large.zip",),
        layout="gopro",
        counts={"train": 4, "test": 2},
    )
    assert _fetch(spec, tmp_path) == {"train": 4, "test": 2}
    data = tmp_path / "data" / "gopro"
    names = [p.name for p in find_pairs(data / "train")]
    assert names == ["GOPR0372_07_00_000047", "GOPR0372_07_00_000048", "GOPR0374_11_00_000047", "GOPR0374_11_00_000048"]
    # `blur`, not `blur_gamma`, and the sharp frame of the same name.
    blur = read_rgb(data / "test" / "blur" / "GOPR0384_11_00_000048.png")
    expected = np.asarray(Image.open(io.BytesIO(files["GOPRO_Large/test/GOPR0384_11_00/blur/000048.png"])))
    assert np.array_equal(blur, expected)
    sharp = read_rgb(data / "test" / "sharp" / "GOPR0384_11_00_000048.png")
    assert np.array_equal(
        sharp, np.asarray(Image.open(io.BytesIO(files["GOPRO_Large/test/GOPR0384_11_00/sharp/000048.png"])))
    )
    # Trust on first use: the archive's hash is recorded, and the download stays where data.dvc tracks it.
    assert read_checksums(tmp_path / "checksums.sha256") == {"GOPRO_Large.zip": sha256_file(archive)}
    assert (_layout(tmp_path).archive("GOPRO_Large.zip")).is_file()
    assert _leftovers(tmp_path / "data") == []
    # The new folder carries its identity (hashed before the swap) and the fetch manifest with the archive's hash.
    identity = read_identity(data, "gopro")
    assert (identity.dataset, identity.made_by) == ("gopro", "fetch")
    assert identity.sha256 == content_hash(data) and len(identity.files) == 2 * (4 + 2)
    manifest = json.loads((data / FETCH_MANIFEST).read_text())
    assert manifest == {
        "dataset": "gopro",
        "archive": "GOPRO_Large.zip",
        "counts": {"train": 4, "test": 2},
        "sha256": sha256_file(archive),
    }


def test_blur_gamma_is_selectable(tmp_path: Path) -> None:
    files = gopro_files()
    archive = _zip(tmp_path / "GOPRO_Large.zip", files)
    spec = FetchConfig(
        archive="GOPRO_Large.zip", urls=(), layout="gopro", counts={"train": 4, "test": 2}, blur_folder="blur_gamma"
    )
    _fetch(spec, tmp_path, archive=archive)
    got = read_rgb(tmp_path / "data" / "gopro" / "train" / "blur" / "GOPR0372_07_00_000047.png")
    gamma = files["GOPRO_Large/train/GOPR0372_07_00/blur_gamma/000047.png"]
    assert np.array_equal(got, np.asarray(Image.open(io.BytesIO(gamma))))


def test_interrupted_download_resumes_with_range(server: _Server, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    (server.root / "a.bin").write_bytes(payload)
    server.cut_once["/a.bin"] = 100_000
    dest = tmp_path / "a.bin"
    with pytest.raises(FetchError, match="run again to resume"):
        download(f"{server.url}/a.bin", dest, progress=False)
    part = tmp_path / "a.bin.part"
    assert not dest.exists() and part.stat().st_size == 100_000
    download(f"{server.url}/a.bin", dest, progress=False)
    assert dest.read_bytes() == payload and not part.exists()
    assert server.requests[-1] == ("/a.bin", "bytes=100000-")


def test_pinned_checksum_must_match_and_a_mismatch_is_moved_aside(server: _Server, tmp_path: Path) -> None:
    _zip(server.root / "GOPRO_Large.zip", gopro_files())
    (tmp_path / "checksums.sha256").write_text(f"{'0' * 64}  GOPRO_Large.zip\n")
    spec = FetchConfig(
        archive="GOPRO_Large.zip",
        urls=(f"{server.url}/GOPRO_Large.zip",),
        layout="gopro",
        counts={"train": 4, "test": 2},
    )
    with pytest.raises(ChecksumError, match=r"does not match the pinned 0{64}.*moved aside to .*mismatch-"):
        _fetch(spec, tmp_path)
    archives = _layout(tmp_path).archive("GOPRO_Large.zip").parent
    assert not (archives / "GOPRO_Large.zip").exists()
    assert len(list(archives.glob("GOPRO_Large.zip.mismatch-*"))) == 1
    assert not (tmp_path / "data" / "gopro").exists()


def test_hand_placed_archive_is_used_without_network(tmp_path: Path) -> None:
    placed = _layout(tmp_path).archive("GOPRO_Large.zip").parent
    placed.mkdir(parents=True)
    archive = _zip(placed / "GOPRO_Large.zip", gopro_files())
    (tmp_path / "checksums.sha256").write_text(f"{sha256_file(archive)}  GOPRO_Large.zip\n")
    spec = FetchConfig(
        archive="GOPRO_Large.zip",
        urls=("http://127.0.0.1:9/unreachable.zip",),
        layout="gopro",
        counts={"train": 4, "test": 2},
    )
    assert _fetch(spec, tmp_path) == {"train": 4, "test": 2}


def test_no_source_answers_names_urls_and_the_place(server: _Server, tmp_path: Path) -> None:
    server.html.add("/drive.zip")
    urls = (f"{server.url}/drive.zip", f"{server.url}/missing.zip", "http://127.0.0.1:9/closed.zip")
    spec = FetchConfig(archive="GOPRO_Large.zip", urls=urls, layout="gopro")
    with pytest.raises(FetchError) as err:
        _fetch(spec, tmp_path)
    message = str(err.value)
    assert "HTML page" in message and "HTTP 404" in message and "closed.zip" in message
    assert str(_layout(tmp_path).archive("GOPRO_Large.zip")) in message
    # How to pass an archive by hand, in the CLI's spelling (the next test checks both messages).
    assert "or pass archive=PATH" in message


def test_hints_name_the_archive_override_of_the_cli(tmp_path: Path) -> None:
    spec = FetchConfig(archive="GOPRO_Large.zip", urls=(), layout="gopro")
    with pytest.raises(FetchError) as missing:
        obtain_archive(spec, tmp_path / "placed.zip", archive=tmp_path / "none.zip", progress=False)
    with pytest.raises(FetchError) as nowhere:
        obtain_archive(spec, tmp_path / "placed.zip", progress=False)
    for err in (missing, nowhere):
        assert "archive=" in str(err.value) and "--archive" not in str(err.value)


def test_html_source_is_skipped_for_the_next_url(server: _Server, tmp_path: Path) -> None:
    server.html.add("/drive.zip")
    _zip(server.root / "GOPRO_Large.zip", gopro_files())
    urls = (f"{server.url}/drive.zip", f"{server.url}/GOPRO_Large.zip")
    spec = FetchConfig(archive="GOPRO_Large.zip", urls=urls, layout="gopro", counts={"train": 4, "test": 2})
    assert _fetch(spec, tmp_path)["test"] == 2


# --- broken and malicious archives --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_truncated_archive_leaves_no_partial_dataset(tmp_path: Path, kind: str) -> None:
    name = f"GOPRO_Large.{kind}"
    full = (_zip if kind == "zip" else _tar)(tmp_path / name, gopro_files())
    cut = tmp_path / "cut" / name
    cut.parent.mkdir()
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    spec = FetchConfig(archive=name, urls=(), layout="gopro", counts={"train": 4, "test": 2})
    with pytest.raises(FetchError, match=r"truncated or corrupt|neither a zip nor a tar"):
        _fetch(spec, tmp_path, archive=cut)
    assert not (tmp_path / "data" / "gopro").exists()
    assert _leftovers(tmp_path / "data") == []


def _tar_with(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        ok = tarfile.TarInfo("GOPRO_Large/readme.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        for m in members:
            tf.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    return path


def _member(name: str, *, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("../escape.txt"), "contains '..'"),
        (_member("GOPRO_Large/../../escape.txt"), "contains '..'"),
        (_member("/tmp/msfs-bench-escape.txt"), "absolute path"),
        (_member("GOPRO_Large/link", kind=tarfile.SYMTYPE, link="../../escape.txt"), "symlink .* points outside"),
        (_member("GOPRO_Large/abs", kind=tarfile.SYMTYPE, link="/etc/passwd"), "symlink .* points outside"),
        (_member("GOPRO_Large/hard", kind=tarfile.LNKTYPE, link="../outside"), "hard link .* points outside"),
        (_member("GOPRO_Large/dev", kind=tarfile.CHRTYPE), "device file or FIFO"),
        (_member("GOPRO_Large/fifo", kind=tarfile.FIFOTYPE), "device file or FIFO"),
    ],
)
def test_malicious_tar_members_are_refused(tmp_path: Path, member: tarfile.TarInfo, message: str) -> None:
    archive = _tar_with(tmp_path / "evil.tar.gz", member)
    dest = tmp_path / "box" / "extract"
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(archive, dest)
    assert not dest.exists()
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "box" / "escape.txt").exists()
    assert not Path("/tmp/msfs-bench-escape.txt").exists()


@pytest.mark.parametrize(
    ("name", "message"), [("../escape.txt", "contains '..'"), ("/tmp/msfs-bench-escape.txt", "absolute path")]
)
def test_malicious_zip_members_are_refused(tmp_path: Path, name: str, message: str) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("GOPRO_Large/readme.txt", b"ok")
        zf.writestr(zipfile.ZipInfo(name), b"x")
    dest = tmp_path / "box" / "extract"
    with pytest.raises(UnsafeArchiveError, match=message):
        safe_extract(archive, dest)
    assert not dest.exists() and not (tmp_path / "box" / "escape.txt").exists()


def test_zip_symlink_escaping_is_refused_and_inner_links_are_kept(tmp_path: Path) -> None:
    def with_link(path: Path, target: str) -> Path:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("d/file.txt", b"data")
            info = zipfile.ZipInfo("d/link")
            info.external_attr = 0o120777 << 16  # S_IFLNK
            zf.writestr(info, target)
        return path

    with pytest.raises(UnsafeArchiveError, match="points outside"):
        safe_extract(with_link(tmp_path / "evil.zip", "../../outside"), tmp_path / "a")
    safe_extract(with_link(tmp_path / "fine.zip", "file.txt"), tmp_path / "b")
    assert (tmp_path / "b" / "d" / "link").read_bytes() == b"data"


def test_wrong_count_names_the_dataset_and_keeps_the_old_dataset(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "GOPRO_Large.zip", gopro_files())
    _fetch(GOPRO_SPEC, tmp_path, archive=archive)
    target = tmp_path / "data" / "gopro"
    before = _tree(target)
    identity = read_identity(target, "gopro")
    wrong = FetchConfig(archive="GOPRO_Large.zip", urls=(), layout="gopro", counts={"train": 2103, "test": 1111})
    with pytest.raises(FetchError, match=r"gopro: 4 train pairs in the archive, expected 2103"):
        _fetch(wrong, tmp_path, archive=archive)
    assert _tree(target) == before  # every file, its bytes and its mtime, dataset_identity.json included
    assert read_identity(target, "gopro") == identity
    assert _leftovers(tmp_path / "data") == []  # no .gopro.building-* folder


def _tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_failed_swap_keeps_the_old_dataset_and_leaves_no_build_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _zip(tmp_path / "GOPRO_Large.zip", gopro_files())
    _fetch(GOPRO_SPEC, tmp_path, archive=archive)
    target = tmp_path / "data" / "gopro"
    before = _tree(target)
    swaps: list[Path] = []

    def failing_swap(built: Path, destination: Path) -> None:
        swaps.append(built)
        assert built.parent.name.startswith(".gopro.building-") and (built / IDENTITY_RECORD).is_file()
        raise OSError("disk went away")

    monkeypatch.setattr(atomic, "replace_dir", failing_swap)
    with pytest.raises(OSError, match="disk went away"):
        _fetch(GOPRO_SPEC, tmp_path, archive=archive)
    assert len(swaps) == 1 and not swaps[0].exists()
    assert _tree(target) == before
    assert _leftovers(tmp_path / "data") == []


def test_build_dataset_removes_stale_builds_and_pins_in_the_layout_checksums(tmp_path: Path) -> None:
    """``build_dataset`` takes every path from the Layout: the archive placed under ``<data>/external/archives``, the
    checksums file at ``<root>/checksums.sha256`` (here a temporary root), the dataset at ``<data>/<name>``."""
    layout = Layout(PathsConfig(data=str(tmp_path / "data")), root=tmp_path / "repo")
    placed = layout.archive("GOPRO_Large.zip")
    placed.parent.mkdir(parents=True)
    archive = _zip(placed, gopro_files())
    stale = [tmp_path / "data" / ".gopro.building-killed", tmp_path / "data" / ".gopro.old-killed"]
    for folder in stale:
        (folder / "train").mkdir(parents=True)
    other = tmp_path / "data" / ".hide.building-live"
    other.mkdir()
    dataset = DatasetConfig(
        name="gopro", protocol=ScoringProtocol(quantize="uint8", ssim_variant="gaussian2d"), fetch=GOPRO_SPEC
    )
    (tmp_path / "repo").mkdir()
    built = build_dataset(dataset, layout, progress=False)
    assert (built.root, built.counts, built.made_by) == (tmp_path / "data" / "gopro", {"train": 4, "test": 2}, "fetch")
    assert layout.checksums == tmp_path / "repo" / "checksums.sha256"
    assert read_checksums(layout.checksums) == {"GOPRO_Large.zip": sha256_file(archive)}
    assert read_identity(layout.dataset("gopro"), "gopro").made_by == "fetch"
    assert not any(folder.exists() for folder in stale)  # left by killed builds of this dataset: removed
    assert other.is_dir()  # another dataset's build folder is not this fetch's business
    with pytest.raises(FetchError, match=r"archive=.*: synthblur is generated, not fetched"):
        build_dataset(load_config(["dataset=synthblur"]).dataset, layout, archive=archive)


# --- replace_dir --------------------------------------------------------------------------------------------------


def test_replace_dir_swaps_in_a_complete_folder(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    first = atomic.building_dir(target)
    assert first.parent == tmp_path and first.name.startswith(".ds.building-")
    (first / "a.txt").write_text("one")
    atomic.replace_dir(first, target)  # no target yet: a plain rename
    assert (target / "a.txt").read_text() == "one" and not first.exists()

    second = atomic.building_dir(target)
    (second / "sub").mkdir()
    (second / "sub" / "b.txt").write_text("two")
    atomic.replace_dir(second, target)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == ["sub", "sub/b.txt"]
    assert (target / "sub" / "b.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no .ds.old-* or .ds.building-* left


def test_replace_dir_puts_the_old_folder_back_when_the_final_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ds"
    target.mkdir()
    (target / "old.txt").write_text("old")
    (target / "deep").mkdir()
    (target / "deep" / "x.bin").write_bytes(b"\x00\x01")
    before = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    built = atomic.building_dir(target)
    (built / "new.txt").write_text("new")
    real_replace = os.replace
    calls: list[tuple[str, str]] = []

    def replace(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        calls.append((str(src), str(dst)))
        if len(calls) == 2:  # the first moves the old folder aside; the second would move the new one in
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        atomic.replace_dir(built, target)
    monkeypatch.undo()
    assert len(calls) == 3 and calls[1] == (str(built), str(target))  # aside, (failed) swap, put back
    assert {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert (built / "new.txt").read_text() == "new"  # the new folder is left for its builder to remove
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ds", built.name])  # the .ds.old-* folder is gone


# --- HIDE and RealBlur layouts ----------------------------------------------------------------------------------


def test_hide_layout_follows_its_split_lists(tmp_path: Path) -> None:
    files: dict[str, bytes] = {}
    lists = {"train": ["8fromGOPR0950.png", "9fromGOPR0950.png"], "test": ["1fromGOPR1096.png", "3fromGOPR1096.png"]}
    for i, name in enumerate(lists["train"]):
        files[f"HIDE_dataset/train/{name}"] = _png(100 + i)
        files[f"HIDE_dataset/GT/{name}"] = _png(200 + i)
    files[f"HIDE_dataset/test/test-close-ups/{lists['test'][0]}"] = _png(300)
    files[f"HIDE_dataset/test/test-long-shot/{lists['test'][1]}"] = _png(301)
    for i, name in enumerate(lists["test"]):
        files[f"HIDE_dataset/GT/{name}"] = _png(400 + i)
    files["HIDE_dataset/train.txt"] = "\n".join(lists["train"]).encode()
    files["HIDE_dataset/test.txt"] = ("\n".join(lists["test"]) + "\n").encode()
    archive = _zip(tmp_path / "HIDE_dataset.zip", files)
    spec = FetchConfig(archive="HIDE_dataset.zip", urls=(), layout="hide", counts={"train": 2, "test": 2})
    assert _fetch(spec, tmp_path, "hide", archive=archive) == {"train": 2, "test": 2}
    test = tmp_path / "data" / "hide" / "test"
    assert [p.name for p in find_pairs(test)] == ["1fromGOPR1096", "3fromGOPR1096"]
    assert np.array_equal(read_rgb(test / "sharp" / "3fromGOPR1096.png"), np.asarray(Image.open(io.BytesIO(_png(401)))))
    assert np.array_equal(read_rgb(test / "blur" / "3fromGOPR1096.png"), np.asarray(Image.open(io.BytesIO(_png(301)))))


def _realblur_files() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    seed = 1000
    for cam, folder in (
        ("J", "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"),
        ("R", "RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref"),
    ):
        for split, scenes in (("train", ("scene001", "scene002")), ("test", ("scene230",))):
            lines = []
            for scene in scenes:
                for k in (1, 2):
                    seed += 2
                    files[f"{folder}/{scene}/gt/gt_{k}.png"] = _png(seed)
                    files[f"{folder}/{scene}/blur/blur_{k}.png"] = _png(seed + 1)
                    lines.append(f"{folder}/{scene}/gt/gt_{k}.png {folder}/{scene}/blur/blur_{k}.png")
            files[f"RealBlur_{cam}_{split}_list.txt"] = "\n".join(lines).encode()
    return files


@pytest.mark.parametrize(("dataset", "camera"), [("realblur_j", "J"), ("realblur_r", "R")])
def test_realblur_layout_reads_ground_truth_first(tmp_path: Path, dataset: str, camera: str) -> None:
    files = _realblur_files()
    archive = _tar(tmp_path / "RealBlur.tar.gz", files)
    spec = FetchConfig(archive="RealBlur.tar.gz", urls=(), layout=dataset, counts={"train": 4, "test": 2})
    assert _fetch(spec, tmp_path, dataset, archive=archive) == {"train": 4, "test": 2}
    test = tmp_path / "data" / dataset / "test"
    assert [p.name for p in find_pairs(test)] == ["scene230_blur_1", "scene230_blur_2"]
    folder = next(k.split("/")[0] for k in files if k.startswith(f"RealBlur-{camera}"))
    gt = files[f"{folder}/scene230/gt/gt_2.png"]
    assert np.array_equal(read_rgb(test / "sharp" / "scene230_blur_2.png"), np.asarray(Image.open(io.BytesIO(gt))))


# --- configs and CLI ------------------------------------------------------------------------------------------


def test_dataset_configs_state_the_official_counts() -> None:
    expected = {
        "gopro": ("GOPRO_Large.zip", "gopro", {"train": 2103, "test": 1111}),
        "hide": ("HIDE_dataset.zip", "hide", {"train": 6397, "test": 2025}),
        "realblur_j": ("RealBlur.tar.gz", "realblur_j", {"train": 3758, "test": 980}),
        "realblur_r": ("RealBlur.tar.gz", "realblur_r", {"train": 3758, "test": 980}),
    }
    for dataset, (archive, layout, counts) in expected.items():
        spec = load_config([f"dataset={dataset}"]).dataset.fetch
        assert spec is not None and (spec.archive, spec.layout, spec.counts) == (archive, layout, counts)
        assert spec.urls, dataset
    synthblur = load_config(["dataset=synthblur"]).dataset
    assert synthblur.fetch is None and synthblur.synth is not None  # generated, not downloaded


def _cli(*overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmark.fetch", *overrides, "tracking=none"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_errors_name_the_reason(tmp_path: Path) -> None:
    # An unknown dataset is refused by Hydra itself, before the harness runs (exit status 1, its own message).
    unknown = _cli("dataset=nope", f"paths.data={tmp_path / 'data'}")
    assert unknown.returncode == 1 and "Could not find 'dataset/nope'" in unknown.stderr
    assert all(name in unknown.stderr for name in ("gopro", "hide", "realblur_j", "synthblur"))
    # A known error of the harness: one line, exit status 2. It fails before the checksums file is read or written.
    checksums = REPO / "checksums.sha256"
    pins = checksums.read_bytes() if checksums.exists() else None
    missing = _cli("dataset=gopro", f"archive={tmp_path / 'none.zip'}", f"paths.data={tmp_path / 'data'}")
    assert missing.returncode == 2 and "none.zip does not exist" in missing.stderr
    assert missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr
    assert not (tmp_path / "data").exists()
    assert (checksums.read_bytes() if checksums.exists() else None) == pins
