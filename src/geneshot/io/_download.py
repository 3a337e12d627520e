"""Downloaders for the public datasets: resumable, checksum-verified, atomically extracted.

``fetch_dataset("her2st", dest)`` puts the data under ``dest/her2st`` and ``"cscc"`` under
``dest/cscc`` (so ``dest`` is what ``$GENESHOT_DATA`` should point at). Work in progress
lives in ``dest/.geneshot-downloads/<dataset>/``:

- each file is downloaded to ``<name>.part``, resumed with an HTTP ``Range`` request after an
  interruption, checked against the listed size and md5, then renamed to ``<name>``;
- an archive is extracted into a temporary folder beside ``dest/<dataset>`` and its
  top-level entries renamed into place, so a failure never leaves half an archive behind;
- ``<name>.done`` records each finished file and ``complete.json`` the whole dataset, so a
  re-run makes no request at all.

Only the standard library (``urllib``) and ``py7zr`` (for the password-protected 7z
archives of HER2+) are used.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from geneshot.cache import atomic_path
from geneshot.errors import InputError

log = logging.getLogger(__name__)

ZENODO_URL = "https://zenodo.org"
HER2ST_RECORD = "3957257"
# Published in the data's own README (github.com/almaan/her2st).
HER2ST_PASSWORD_DATA = "zNLXkYk3Q9znUseS"  # count matrices and images
HER2ST_PASSWORD_META = "yUx44SzG6NdB32gY"  # metadata and spot selection
_META_WORDS = ("spot", "pat", "meta", "clinical", "lbl", "cluster")

GEO_URL = "https://ftp.ncbi.nlm.nih.gov"
CSCC_SERIES = "GSE144240"
CSCC_TAR = f"{CSCC_SERIES}_RAW.tar"

STATE_DIR = ".geneshot-downloads"
_CHUNK = 1 << 20
_USER_AGENT = "geneshot-downloader"


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: its name, URL and (when known) size and md5."""

    name: str
    url: str
    size: int | None = None
    md5: str | None = None


def _request(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> urllib.request.Request:
    return urllib.request.Request(
        url, headers={"User-Agent": _USER_AGENT, **(headers or {})}, method=method
    )


def _network_error(url: str, err: Exception, resumable: bool = False) -> InputError:
    if isinstance(err, urllib.error.HTTPError):
        what = f"HTTP {err.code} {err.reason}"
    else:
        what = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
    fix = "check the connection, or pass --base-url to a mirror"
    if resumable:
        fix += "; re-run to resume (the partial download is kept)"
    return InputError(url, f"download failed ({what})", fix)


def get_json(url: str, timeout: float = 60) -> dict:
    """GET a JSON document."""
    try:
        with urllib.request.urlopen(
            _request(url, {"Accept": "application/json"}), timeout=timeout
        ) as resp:
            body = resp.read()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _network_error(url, err) from None
    try:
        doc = json.loads(body)
    except ValueError as err:
        raise InputError(
            url,
            f"response is not JSON ({err})",
            "check --base-url: it must serve the Zenodo records API",
        ) from None
    if not isinstance(doc, dict):
        raise InputError(
            url,
            "response is not a JSON object",
            "check --base-url: it must serve the Zenodo records API",
        )
    return doc


def remote_size(url: str, timeout: float = 60) -> int | None:
    """``Content-Length`` from a HEAD request, or None when the server does not say."""
    try:
        with urllib.request.urlopen(_request(url, method="HEAD"), timeout=timeout) as resp:
            n = resp.headers.get("Content-Length")
    except urllib.error.HTTPError as err:
        if err.code in (404, 410):
            raise _network_error(url, err) from None
        return None  # some servers refuse HEAD; the GET will tell
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _network_error(url, err) from None
    return int(n) if n and n.isdigit() else None


def md5sum(path: Path) -> str:
    """Hex md5 of a file."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, url: str, size: int | None, md5: str | None, name: str) -> None:
    """Raise (after deleting ``path``) when its size or md5 differ from the expected ones."""
    got_size = path.stat().st_size
    problem = None
    if size is not None and got_size != size:
        problem = f"size is {got_size} bytes, expected {size}"
    elif md5 is not None:
        got = md5sum(path)
        if got != md5.lower():
            problem = f"md5 checksum mismatch (expected {md5}, got {got})"
    if problem:
        path.unlink(missing_ok=True)
        raise InputError(
            url,
            f"downloaded file {name}: {problem}; it was deleted",
            "re-run to download it again; if this repeats, the server or mirror holds a different file",
        )


def download(
    url: str,
    target: str | os.PathLike,
    *,
    size: int | None = None,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``target``, resuming ``target.part`` and verifying size and md5.

    Parameters
    ----------
    url
        What to fetch (HTTP or HTTPS).
    target
        Final path; it appears only once the content is complete and verified.
    size, md5
        Expected size in bytes and hex md5 (None: not checked; the size is then taken from
        the server's ``Content-Range`` / ``Content-Length`` when it gives one).
    progress
        Show a progress bar.
    timeout
        Seconds to wait for the server on each connection.
    """
    target = Path(target)
    if target.exists():
        _verify(target, url, size, md5, target.name)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if size is None or have < size:
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            resp = urllib.request.urlopen(_request(url, headers), timeout=timeout)
        except urllib.error.HTTPError as err:
            if err.code != 416 or not have:
                raise _network_error(url, err, resumable=bool(have)) from None
            resp = None  # 416: nothing left past what we have; verify below
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            raise _network_error(url, err, resumable=bool(have)) from None
        if resp is not None:
            with resp:
                if have and resp.status != 206:
                    have = 0  # server ignored the Range header: start again
                total = size
                crange = resp.headers.get("Content-Range", "")
                m = re.match(r"bytes (\d+)-\d+/(\d+)", crange)
                if m and int(m.group(1)) != have:
                    have = 0  # unexpected offset: do not splice mismatched bytes
                    resp.close()
                    part.unlink(missing_ok=True)
                    return download(
                        url, target, size=size, md5=md5, progress=progress, timeout=timeout
                    )
                if total is None and m:
                    total = int(m.group(2))
                elif total is None and resp.headers.get("Content-Length", "").isdigit():
                    total = have + int(resp.headers["Content-Length"])
                size = total
                bar = tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=target.name,
                    disable=not progress,
                )
                try:
                    with open(part, "ab" if have else "wb") as fh, bar:
                        for chunk in iter(lambda: resp.read(_CHUNK), b""):
                            fh.write(chunk)
                            bar.update(len(chunk))
                except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
                    raise _network_error(url, err, resumable=True) from None
    if not part.exists():
        raise InputError(url, "server sent no data", "re-run, or pass --base-url to a mirror")
    if size is not None and part.stat().st_size < size:
        raise InputError(
            url,
            f"download stopped at {part.stat().st_size} of {size} bytes",
            "re-run to resume (the partial download is kept)",
        )
    _verify(part, url, size, md5, target.name)
    os.replace(part, target)
    return target


# ---------------------------------------------------------------------------- extraction


def archive_kind(path: Path) -> str | None:
    """``"7z"``, ``"zip"``, ``"tar"`` or None, from the file's magic bytes."""
    with open(path, "rb") as fh:
        head = fh.read(262)
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if (
        len(head) >= 262
        and head[257:262] == b"ustar"
        or head[:2] in (b"\x1f\x8b", b"BZ")
        and tarfile.is_tarfile(path)
    ):
        return "tar"
    return None


def _safe_names(names: Sequence[str], archive: Path) -> None:
    for n in names:
        parts = Path(n).parts
        if Path(n).is_absolute() or ".." in parts:
            raise InputError(
                archive,
                f"archive member {n!r} would be written outside the destination",
                "do not extract this archive; re-download it from the official source",
            )


def _extract_7z(archive: Path, into: Path, passwords: Sequence[str | None]) -> None:
    import py7zr

    errors = []
    for pw in passwords:
        for p in list(into.iterdir()):  # clean up a failed attempt
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        try:
            with py7zr.SevenZipFile(archive, "r", password=pw) as z:
                _safe_names(z.getnames(), archive)
                z.extractall(into)
            return
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001  py7zr reports a wrong password as many types
            errors.append(type(err).__name__)
    tried = "the published passwords" if any(passwords) else "no password"
    raise InputError(
        archive,
        f"7z archive cannot be extracted with {tried} ({', '.join(errors)})",
        "re-download it; if it persists, extract it by hand with 7z and the password from the dataset README",
    )


def _extract_zip(archive: Path, into: Path, passwords: Sequence[str | None]) -> None:
    try:
        with zipfile.ZipFile(archive) as z:
            _safe_names(z.namelist(), archive)
            for pw in passwords:
                try:
                    z.extractall(into, pwd=pw.encode() if pw else None)
                    return
                except RuntimeError:  # bad or missing password
                    continue
                except NotImplementedError as err:  # AES encryption: zipfile has no decoder
                    raise InputError(
                        archive,
                        f"zip uses an unsupported encryption or compression ({err})",
                        "extract it by hand: 7z x -p<password> <archive>",
                    ) from None
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise InputError(archive, f"zip archive is corrupt ({err})", "re-download it") from None
    raise InputError(
        archive,
        "zip archive cannot be decrypted with the published passwords",
        "extract it by hand with the password from the dataset README",
    )


def _extract_tar(archive: Path, into: Path, progress: bool) -> None:
    try:
        with tarfile.open(archive) as t:
            members = t.getmembers()
            # tarfile takes a header cut short for the end of the archive: check that the
            # real end-of-archive marker (two zero blocks) follows the last member
            t.fileobj.seek(t.offset)
            if t.fileobj.read(1024) != bytes(1024):
                raise tarfile.ReadError(
                    f"no end-of-archive marker after {len(members)} members (truncated)"
                )
            _safe_names([m.name for m in members], archive)
            for m in tqdm(
                members, desc=f"extract {archive.name}", unit="file", disable=not progress
            ):
                t.extract(m, into, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise InputError(
            archive, f"tar archive is corrupt ({type(err).__name__}: {err})", "re-download it"
        ) from None


def _merge(src: Path, dst: Path) -> None:
    """Rename ``src`` onto ``dst``: whole when ``dst`` is absent, else entry by entry."""
    if not dst.exists():
        os.replace(src, dst)
    elif src.is_dir() and dst.is_dir():
        for child in src.iterdir():
            _merge(child, dst / child.name)
    else:
        if dst.is_dir():
            shutil.rmtree(dst)
        os.replace(src, dst)


def extract(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    passwords: Sequence[str | None] = (None,),
    progress: bool = True,
) -> list[str]:
    """Extract ``archive`` (7z, zip or tar) into ``dest`` atomically; return the top-level names.

    The archive is unpacked into a temporary folder beside ``dest``; only when that has
    fully succeeded are its top-level entries renamed into ``dest`` (a missing ``dest`` is
    created by one rename). Files of the same name already in ``dest`` are replaced.

    Parameters
    ----------
    archive
        The archive; its format is recognised from its first bytes.
    dest
        Destination folder.
    passwords
        Passwords to try in turn (7z and zip); None means no password.
    progress
        Show a progress bar (tar).
    """
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(archive)
    if kind is None:
        raise InputError(
            archive,
            "not a 7z, zip or tar archive",
            "re-download it; the server may have returned an error page",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    try:
        if kind == "7z":
            _extract_7z(archive, tmp, passwords)
        elif kind == "zip":
            _extract_zip(archive, tmp, passwords)
        else:
            _extract_tar(archive, tmp, progress)
        names = sorted(p.name for p in tmp.iterdir())
        if not names:
            raise InputError(archive, "archive is empty", "re-download it")
        if not dest.exists():
            os.replace(tmp, dest)
        else:
            for name in names:
                _merge(tmp / name, dest / name)
        return names
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- datasets


def _done(marker: Path, info: dict) -> None:
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps(info))


def _is_done(marker: Path, info: dict) -> bool:
    try:
        return marker.exists() and json.loads(marker.read_text()) == info
    except ValueError:
        return False


def _fetch_files(
    dataset: str,
    files: Sequence[RemoteFile],
    dest: Path,
    passwords_of: Callable[[str], Sequence[str | None]],
    progress: bool,
    keep_archives: bool,
    timeout: float,
) -> Path:
    """Download, verify and extract/place each file; mark each and the whole as done."""
    out = dest / dataset
    state = dest / STATE_DIR / dataset
    state.mkdir(parents=True, exist_ok=True)
    try:
        _fetch_each(dataset, files, out, state, passwords_of, progress, keep_archives, timeout)
    except BaseException:
        # leave no empty bookkeeping folders behind (a kept .part keeps its folder)
        for d in (state, state.parent):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise
    _done(state / "complete.json", {"files": [f.name for f in files]})
    return out


def _fetch_each(
    dataset: str,
    files: Sequence[RemoteFile],
    out: Path,
    state: Path,
    passwords_of: Callable[[str], Sequence[str | None]],
    progress: bool,
    keep_archives: bool,
    timeout: float,
) -> None:
    for f in files:
        info = {"name": f.name, "size": f.size, "md5": f.md5}
        marker = state / f"{f.name}.done"
        if _is_done(marker, info):
            log.info("%s: %s already in place", dataset, f.name)
            continue
        local = download(
            f.url, state / f.name, size=f.size, md5=f.md5, progress=progress, timeout=timeout
        )
        try:
            if archive_kind(local) is not None:
                extract(local, out, passwords=passwords_of(f.name), progress=progress)
            else:
                out.mkdir(parents=True, exist_ok=True)
                shutil.copy2(local, out / f".{f.name}.tmp")
                os.replace(out / f".{f.name}.tmp", out / f.name)
        except InputError:
            local.unlink(missing_ok=True)  # verified but unusable: do not keep it around
            raise
        _done(marker, info)
        if not keep_archives:
            local.unlink(missing_ok=True)


def _complete(dest: Path, dataset: str) -> bool:
    return (dest / STATE_DIR / dataset / "complete.json").exists() and (dest / dataset).is_dir()


def zenodo_files(record: dict, base_url: str, record_id: str) -> list[RemoteFile]:
    """Files of a Zenodo records-API response (name, download URL, size, md5)."""
    files = record.get("files")
    if isinstance(files, dict):
        files = files.get("entries", files)
        files = list(files.values()) if isinstance(files, dict) else files
    if not isinstance(files, list) or not files:
        raise InputError(
            f"{base_url}/api/records/{record_id}",
            "field 'files' is missing or empty",
            "check --base-url: it must serve the Zenodo records API for this record",
        )
    out = []
    for f in files:
        name = f.get("key") or f.get("filename") or f.get("name")
        if not name or "/" in name or name.startswith("."):
            raise InputError(
                f"{base_url}/api/records/{record_id}",
                f"file entry has no usable name ({name!r})",
                "check --base-url",
            )
        links = f.get("links") or {}
        url = (
            links.get("content")
            or links.get("self")
            or links.get("download")
            or f"{base_url}/api/records/{record_id}/files/{name}/content"
        )
        checksum = str(f.get("checksum") or "")
        md5 = checksum.split(":", 1)[1] if checksum.startswith("md5:") else None
        if md5 is None:
            log.warning("%s: no md5 in the listing; only the size is checked", name)
        size = f.get("size") or f.get("filesize")
        out.append(RemoteFile(name, url, int(size) if size else None, md5))
    return out


def her2st_passwords(name: str) -> tuple[str, str]:
    """Both published passwords, the likelier one first (metadata/spot archives use the second)."""
    meta = any(w in name.lower() for w in _META_WORDS)
    return (
        (HER2ST_PASSWORD_META, HER2ST_PASSWORD_DATA)
        if meta
        else (HER2ST_PASSWORD_DATA, HER2ST_PASSWORD_META)
    )


def fetch_her2st(
    dest: str | os.PathLike,
    *,
    base_url: str | None = None,
    progress: bool = True,
    keep_archives: bool = False,
    timeout: float = 60,
) -> Path:
    """Download HER2+ (Zenodo record 3957257) into ``dest/her2st``; return that folder.

    Parameters
    ----------
    dest
        Parent folder (what ``$GENESHOT_DATA`` should point at).
    base_url
        Zenodo or a mirror serving ``/api/records/3957257`` (default https://zenodo.org).
    progress
        Show progress bars.
    keep_archives
        Keep the downloaded archives under ``dest/.geneshot-downloads/her2st``.
    timeout
        Seconds to wait for the server on each connection.
    """
    dest = Path(dest)
    if _complete(dest, "her2st"):
        log.info("her2st is already complete in %s", dest / "her2st")
        return dest / "her2st"
    base = (base_url or ZENODO_URL).rstrip("/")
    record = get_json(f"{base}/api/records/{HER2ST_RECORD}", timeout)
    files = zenodo_files(record, base, HER2ST_RECORD)
    return _fetch_files("her2st", files, dest, her2st_passwords, progress, keep_archives, timeout)


def fetch_cscc(
    dest: str | os.PathLike,
    *,
    base_url: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    keep_archives: bool = False,
    timeout: float = 60,
) -> Path:
    """Download cSCC (GEO GSE144240, ``GSE144240_RAW.tar``) into ``dest/cscc``; return it.

    GEO publishes no checksum: the size is checked against the server's, the tar's
    integrity by reading it whole, and ``md5`` when the caller knows it.

    Parameters
    ----------
    dest
        Parent folder (what ``$GENESHOT_DATA`` should point at).
    base_url
        NCBI's FTP-over-HTTPS host or a mirror of its ``/geo/series/...`` tree.
    md5
        Expected md5 of the tar, if known.
    progress, keep_archives, timeout
        As for :func:`fetch_her2st`.
    """
    dest = Path(dest)
    if _complete(dest, "cscc"):
        log.info("cscc is already complete in %s", dest / "cscc")
        return dest / "cscc"
    base = (base_url or GEO_URL).rstrip("/")
    url = f"{base}/geo/series/{CSCC_SERIES[:-3]}nnn/{CSCC_SERIES}/suppl/{CSCC_TAR}"
    size = remote_size(url, timeout)
    files = [RemoteFile(CSCC_TAR, url, size, md5)]
    return _fetch_files("cscc", files, dest, lambda _: (None,), progress, keep_archives, timeout)


FETCHERS: dict[str, Callable[..., Path]] = {"her2st": fetch_her2st, "cscc": fetch_cscc}


def fetch_dataset(
    name: str,
    dest: str | os.PathLike,
    *,
    base_url: str | None = None,
    progress: bool = True,
    **kwargs,
) -> Path:
    """Download a named dataset into ``dest/<name>`` (see :data:`FETCHERS`)."""
    if name not in FETCHERS:
        raise InputError(
            None,
            f"no downloader for dataset {name!r}",
            f"use one of: {', '.join(sorted(FETCHERS))}",
        )
    return FETCHERS[name](dest, base_url=base_url, progress=progress, **kwargs)
