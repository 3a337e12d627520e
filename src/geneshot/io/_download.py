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

Downloading lives in :mod:`geneshot.io._http` (resume, checksums; it also says why not
``pooch``) and extraction in :mod:`geneshot.io._archive`; this module knows the datasets.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from geneshot.cache import atomic_path
from geneshot.errors import InputError
from geneshot.io._archive import archive_kind, extract
from geneshot.io._http import RemoteFile, download, get_json, remote_size

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

__all__ = [
    "FETCHERS",
    "STATE_DIR",
    "RemoteFile",
    "download",
    "extract",
    "fetch_cscc",
    "fetch_dataset",
    "fetch_her2st",
    "zenodo_files",
]


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
