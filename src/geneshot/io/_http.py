"""HTTP downloads that resume after an interruption and verify size and md5.

:func:`download` writes ``<target>.part``, resumes it with an HTTP ``Range`` request after an
interruption (a dropped connection, Ctrl-C), checks the listed size and md5, and only then
renames it to ``<target>``; a file that fails the check is deleted.

Why not ``pooch``: it verifies checksums (``known_hash``, md5 included) but cannot resume.
``pooch.core.stream_download`` streams into ``pooch.utils.temporary_file`` inside a context
manager that deletes that file when the download fails, and a retry starts again from
byte 0 without a ``Range`` header. The HER2+ archives are several GB behind slow links;
restarting them from scratch after every dropped connection is the failure this module
exists to avoid. Only the standard library (``urllib``) is used.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from geneshot._progress import progress_bar
from geneshot.errors import InputError

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
                bar = progress_bar(
                    progress=progress,
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=target.name,
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
