"""Archive extraction (7z, zip, tar) that never leaves half an archive behind.

:func:`extract` unpacks into a temporary folder beside the destination and renames the
top-level entries into place only once everything has been unpacked. Member names that
would land outside the destination (absolute paths, ``..``) are refused, and a tar cut
short is recognised by its missing end-of-archive marker. ``py7zr`` reads the
password-protected 7z archives of HER2+.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from geneshot._progress import progress_bar
from geneshot.errors import InputError


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
            for m in progress_bar(
                members, progress=progress, desc=f"extract {archive.name}", unit="file"
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
