"""Downloaders against a local HTTP server: resume, checksums, atomic extraction, re-runs."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import py7zr
import pytest

from geneshot import read
from geneshot._constants import Key
from geneshot.errors import InputError
from geneshot.io._download import (
    HER2ST_PASSWORD_DATA,
    HER2ST_PASSWORD_META,
    STATE_DIR,
    download,
    extract,
    fetch_cscc,
    fetch_her2st,
)
from geneshot.io._section import section_meta

CSCC_PATH = "/geo/series/GSE144nnn/GSE144240/suppl/GSE144240_RAW.tar"
RECORD_PATH = "/api/records/3957257"


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _7z(src: Path, names: list[str], password: str) -> bytes:
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", password=password) as z:
        z.set_encrypted_header(True)
        for n in names:
            z.writeall(src / n, n)
    return buf.getvalue()


def _tar(src: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for p in sorted(src.iterdir()):
            t.add(p, p.name)
    return buf.getvalue()


@pytest.fixture
def her2st_server(http_server, build, tmp_path):
    """Serves a fake Zenodo record: three encrypted 7z archives and a README."""
    src = build.write_her2st(tmp_path / "src", ["A1", "C2"], images=["C2"])
    archives = {
        "ST-cnts.7z": _7z(src, ["ST-cnts"], HER2ST_PASSWORD_DATA),
        "ST-imgs.7z": _7z(src, ["ST-imgs"], HER2ST_PASSWORD_DATA),
        "ST-spotfiles.7z": _7z(src, ["ST-spotfiles"], HER2ST_PASSWORD_META),
        "README.md": b"fake record\n",
    }
    entries = []
    for name, blob in archives.items():
        path = f"{RECORD_PATH}/files/{name}/content"
        http_server.files[path] = blob
        entries.append(
            {
                "key": name,
                "size": len(blob),
                "checksum": f"md5:{_md5(blob)}",
                "links": {"self": http_server.url + path},
            }
        )
    http_server.record = {"id": 3957257, "files": entries}
    http_server.files[RECORD_PATH] = json.dumps(http_server.record).encode()
    return http_server


@pytest.fixture
def cscc_server(http_server, build, tmp_path):
    src = build.write_cscc(tmp_path / "src", {"P2_rep1": ".jpg.gz", "P5_rep2": None})
    http_server.files[CSCC_PATH] = _tar(src)
    return http_server


# ---------------------------------------------------------------------------- download()


def test_download_and_resume_from_part(http_server, tmp_path):
    blob = np.random.default_rng(0).bytes(300_000)
    http_server.files["/f.bin"] = blob
    target = tmp_path / "f.bin"
    target.with_name("f.bin.part").write_bytes(blob[:100_000])  # an earlier, interrupted run
    download(http_server.url + "/f.bin", target, size=len(blob), md5=_md5(blob), progress=False)
    assert target.read_bytes() == blob and not target.with_name("f.bin.part").exists()
    assert http_server.requests == [("GET", "/f.bin", "bytes=100000-")]
    assert http_server.sent == 200_000  # only the missing bytes travelled


def test_interrupted_transfer_keeps_part_and_resumes(http_server, tmp_path):
    blob = np.random.default_rng(1).bytes(200_000)
    http_server.files["/f.bin"] = blob
    http_server.truncate_once.add("/f.bin")
    target = tmp_path / "f.bin"
    with pytest.raises(
        InputError,
        match=r"f\.bin: download stopped at 100000 of 200000 bytes\. Fix: re-run to resume",
    ):
        download(http_server.url + "/f.bin", target, md5=_md5(blob), progress=False)
    part = target.with_name("f.bin.part")
    have = part.stat().st_size if part.exists() else 0
    assert 0 < have < len(blob) and not target.exists()
    download(http_server.url + "/f.bin", target, md5=_md5(blob), progress=False)
    assert target.read_bytes() == blob and not part.exists()
    assert http_server.requests[-1][2] == f"bytes={have}-"


def test_server_ignoring_range_restarts_cleanly(http_server, tmp_path):
    blob = np.random.default_rng(2).bytes(50_000)
    http_server.files["/f.bin"], http_server.ranges = blob, False
    target = tmp_path / "f.bin"
    target.with_name("f.bin.part").write_bytes(b"x" * 10_000)  # bytes that must not be kept
    download(http_server.url + "/f.bin", target, size=len(blob), md5=_md5(blob), progress=False)
    assert target.read_bytes() == blob


def test_checksum_mismatch_leaves_nothing(http_server, tmp_path):
    http_server.files["/f.bin"] = b"abc" * 1000
    target = tmp_path / "d" / "f.bin"
    with pytest.raises(
        InputError,
        match=r"/f\.bin: downloaded file f\.bin: md5 checksum mismatch \(expected 0+, got .*\); it was deleted\. Fix: re-run",
    ):
        download(http_server.url + "/f.bin", target, md5="0" * 32, progress=False)
    assert _tree(tmp_path / "d") == []


def test_http_error_is_one_clear_line(http_server, tmp_path):
    with pytest.raises(
        InputError,
        match=r"/missing: download failed \(HTTP 404 .*\)\. Fix: check the connection, or pass --base-url",
    ):
        download(http_server.url + "/missing", tmp_path / "m", progress=False)
    assert _tree(tmp_path) == []


# ---------------------------------------------------------------------------- extract()


def test_extraction_is_atomic_on_a_corrupt_archive(tmp_path, build):
    src = build.write_cscc(tmp_path / "src", {"P2_rep1": None})
    blob = _tar(src)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(blob[: len(blob) // 2])
    dest = tmp_path / "out" / "cscc"
    with pytest.raises(InputError, match=r"bad\.tar: tar archive is corrupt"):
        extract(bad, dest, progress=False)
    assert _tree(tmp_path / "out") == []  # no partial files, no temporary folder


def test_extraction_refuses_path_traversal(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 3
        t.addfile(info, io.BytesIO(b"bad"))
    (tmp_path / "evil.tar").write_bytes(buf.getvalue())
    with pytest.raises(InputError, match="would be written outside the destination"):
        extract(tmp_path / "evil.tar", tmp_path / "out" / "x", progress=False)
    assert not (tmp_path / "out" / "evil.txt").exists() and _tree(tmp_path / "out") == []


def test_not_an_archive(tmp_path):
    (tmp_path / "page.html").write_text("<html>rate limited</html>")
    with pytest.raises(InputError, match="not a 7z, zip or tar archive"):
        extract(tmp_path / "page.html", tmp_path / "out", progress=False)


# ---------------------------------------------------------------------------- datasets


@pytest.mark.slow
def test_fetch_her2st_reads_and_reruns_as_noop(her2st_server, tmp_path):
    dest = tmp_path / "data"
    out = fetch_her2st(dest, base_url=her2st_server.url, progress=False)
    assert out == dest / "her2st"
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "ST-cnts",
        "ST-imgs",
        "ST-spotfiles",
    ]
    c2 = read.her2st(out, "C2")  # the layout reads with the HER2+ reader
    assert section_meta(c2)[Key.IMAGE_PATH] is not None and c2.n_obs == 20
    assert read.dataset("her2st", out, "A1")[0].n_obs == 20
    # archives are not kept; markers are
    state = dest / STATE_DIR / "her2st"
    assert sorted(p.name for p in state.iterdir()) == [
        "README.md.done",
        "ST-cnts.7z.done",
        "ST-imgs.7z.done",
        "ST-spotfiles.7z.done",
        "complete.json",
    ]
    n = len(her2st_server.requests)
    fetch_her2st(dest, base_url=her2st_server.url, progress=False)
    assert len(her2st_server.requests) == n  # re-run: not a single request


def test_fetch_her2st_bad_checksum_leaves_nothing(her2st_server, tmp_path):
    her2st_server.record["files"][1]["checksum"] = "md5:" + "1" * 32  # ST-imgs
    her2st_server.files[RECORD_PATH] = json.dumps(her2st_server.record).encode()
    dest = tmp_path / "data"
    with pytest.raises(InputError, match=r"ST-imgs\.7z: md5 checksum mismatch"):
        fetch_her2st(dest, base_url=her2st_server.url, progress=False)
    # the first archive is in place (and marked), the failed one left no trace
    assert (dest / "her2st" / "ST-cnts").is_dir() and not (dest / "her2st" / "ST-imgs").exists()
    assert not list(dest.rglob("*.part")) and not list(dest.rglob("ST-imgs*"))
    assert sorted(p.name for p in dest.iterdir()) == [STATE_DIR, "her2st"]


def test_fetch_her2st_wrong_password_leaves_nothing(her2st_server, tmp_path, build):
    blob = _7z(build.write_her2st(tmp_path / "other", ["B1"]), ["ST-cnts"], "not-the-password")
    path = f"{RECORD_PATH}/files/ST-cnts.7z/content"
    her2st_server.files[path] = blob
    her2st_server.record["files"][0].update(size=len(blob), checksum=f"md5:{_md5(blob)}")
    her2st_server.files[RECORD_PATH] = json.dumps(her2st_server.record).encode()
    dest = tmp_path / "data"
    with pytest.raises(
        InputError,
        match=r"ST-cnts\.7z: 7z archive cannot be extracted with the published passwords",
    ):
        fetch_her2st(dest, base_url=her2st_server.url, progress=False)
    assert _tree(dest) == []


def test_fetch_her2st_bad_listing(http_server, tmp_path):
    http_server.files[RECORD_PATH] = b'{"files": []}'
    with pytest.raises(InputError, match=r"api/records/3957257: field 'files' is missing or empty"):
        fetch_her2st(tmp_path / "d", base_url=http_server.url, progress=False)
    http_server.files[RECORD_PATH] = b"<html>"
    with pytest.raises(InputError, match="response is not JSON"):
        fetch_her2st(tmp_path / "d", base_url=http_server.url, progress=False)
    assert _tree(tmp_path / "d") == []


def test_fetch_cscc_reads_and_reruns_as_noop(cscc_server, tmp_path):
    dest = tmp_path / "data"
    out = fetch_cscc(dest, base_url=cscc_server.url, progress=False)
    a = read.cscc_section(out, "P2_rep1")
    assert section_meta(a)[Key.IMAGE_PATH] is not None and a.n_obs == 20
    assert [s.obs[Key.SECTION].iloc[0] for s in read.dataset("cscc", out)] == ["P2_rep1", "P5_rep2"]
    assert ("HEAD", CSCC_PATH, None) in cscc_server.requests
    n = len(cscc_server.requests)
    fetch_cscc(dest, base_url=cscc_server.url, progress=False)
    assert len(cscc_server.requests) == n


def test_fetch_cscc_wrong_md5_leaves_nothing(cscc_server, tmp_path):
    dest = tmp_path / "data"
    with pytest.raises(InputError, match="md5 checksum mismatch"):
        fetch_cscc(dest, base_url=cscc_server.url, md5="2" * 32, progress=False)
    assert _tree(dest) == []


def test_fetch_cscc_resumes_after_interruption(cscc_server, tmp_path):
    cscc_server.truncate_once.add(CSCC_PATH)
    dest = tmp_path / "data"
    with pytest.raises(InputError, match="re-run to resume"):
        fetch_cscc(dest, base_url=cscc_server.url, progress=False)
    assert not (dest / "cscc").exists() and len(list(dest.rglob("*.part"))) == 1
    fetch_cscc(dest, base_url=cscc_server.url, progress=False)
    assert cscc_server.requests[-1][2] is not None  # the second GET was a Range request
    assert len(read.dataset("cscc", dest / "cscc")) == 2


def test_plain_zip_extracts_into_existing_folder(tmp_path):
    import zipfile

    dest = tmp_path / "her2st"
    (dest / "ST-cnts").mkdir(parents=True)
    (dest / "ST-cnts" / "old.tsv").write_text("kept")
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("ST-cnts/A1.tsv", "new")
        z.writestr("clinical.txt", "c")
    assert extract(tmp_path / "a.zip", dest, progress=False) == ["ST-cnts", "clinical.txt"]
    assert sorted(p.name for p in (dest / "ST-cnts").iterdir()) == ["A1.tsv", "old.tsv"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # temp folder gone


def test_unknown_dataset_has_no_downloader(tmp_path):
    from geneshot.io import fetch_dataset

    with pytest.raises(
        InputError, match="no downloader for dataset 'visium'. Fix: use one of: cscc, her2st"
    ):
        fetch_dataset("visium", tmp_path)
