"""Content-addressed on-disk cache.

An entry's key is a hash of everything that determines it: the content of its input
files, its parameters, the geneshot version and a per-step version string (bump it when
a step's algorithm changes). Entries are written to a temporary file and renamed, so a
crash never leaves a half-written entry behind, and they are shared across runs and
output folders.

Location: ``--cache DIR``, else ``$GENESHOT_CACHE``, else the user cache directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geneshot import __version__
from geneshot._constants import ENV_CACHE

_FINGERPRINTS: dict[tuple[str, int, int], str] = {}
_UMASK = os.umask(0)
os.umask(_UMASK)


def default_cache_dir() -> Path:
    """Cache folder from ``$GENESHOT_CACHE`` or the platform's user cache directory."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("geneshot"))


def fingerprint(path: str | os.PathLike) -> str:
    """Hash of a file's content (memoised per path, size and mtime within the process)."""
    p = Path(path)
    st = p.stat()
    memo = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _FINGERPRINTS:
        h = hashlib.blake2b(digest_size=16)
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        _FINGERPRINTS[memo] = h.hexdigest()
    return _FINGERPRINTS[memo]


def hash_parts(parts: Any) -> str:
    """Stable hash of a JSON-able structure (numpy scalars and paths allowed)."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            # hashed in place (the digest of its bytes, as tobytes() would give, without a copy)
            return hashlib.blake2b(np.ascontiguousarray(o), digest_size=16).hexdigest()
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        if isinstance(o, (set, frozenset)):
            return sorted(o)
        raise TypeError(f"cannot hash {type(o).__name__}")

    blob = json.dumps(parts, sort_keys=True, default=default).encode()
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get normal permissions
        os.replace(tmp_path, target)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            tmp_path.unlink(missing_ok=True)
        raise


def _json_default(o: Any) -> Any:
    """JSON for NumPy scalars and arrays, sets and tuples; anything else as its string."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def write_json_atomic(target: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, all or nothing (NumPy values allowed)."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=_json_default))


def save_npz_atomic(target: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays to ``target`` (.npz, uncompressed) atomically."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


@dataclass
class Cache:
    """On-disk cache rooted at ``root`` (see module docstring for how it is found)."""

    root: Path | None = None
    hits: dict[str, int] = field(default_factory=dict)
    misses: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser() if self.root else default_cache_dir()

    def key(self, namespace: str, parts: Any) -> str:
        """Key of an entry: namespace, package version and hashed parts."""
        return hash_parts({"ns": namespace, "geneshot": __version__, "parts": parts})

    def path(self, namespace: str, parts: Any, suffix: str = ".npz") -> Path:
        """Where the entry for ``parts`` lives (it may not exist yet)."""
        k = self.key(namespace, parts)
        return self.root / namespace / k[:2] / f"{k}{suffix}"

    def _count(self, namespace: str, hit: bool) -> None:
        book = self.hits if hit else self.misses
        book[namespace] = book.get(namespace, 0) + 1

    def load(self, namespace: str, parts: Any) -> dict[str, np.ndarray] | None:
        """Cached arrays for ``parts``, or None when absent or unreadable (then removed)."""
        p = self.path(namespace, parts, ".npz")
        if not p.exists():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                out = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError):
            p.unlink(missing_ok=True)  # corrupt entry (e.g. disk full earlier): recompute
            return None
        self._count(namespace, True)
        return out

    def arrays(
        self,
        namespace: str,
        parts: Any,
        compute: Callable[[], dict[str, np.ndarray]],
    ) -> dict[str, np.ndarray]:
        """Return cached arrays for ``parts``, computing and storing them on a miss."""
        out = self.load(namespace, parts)
        if out is not None:
            return out
        out = compute()
        save_npz_atomic(self.path(namespace, parts, ".npz"), out)
        self._count(namespace, False)
        return out

    def json(self, namespace: str, parts: Any, compute: Callable[[], Any]) -> Any:
        """Return a cached JSON value for ``parts``, computing and storing it on a miss."""
        p = self.path(namespace, parts, ".json")
        if p.exists():
            try:
                out = json.loads(p.read_text())
                self._count(namespace, True)
                return out
            except (OSError, ValueError):
                p.unlink(missing_ok=True)
        out = compute()
        with atomic_path(p) as tmp:
            tmp.write_text(json.dumps(out))
        self._count(namespace, False)
        return out

    def info(self) -> dict[str, dict[str, int]]:
        """Entries and bytes per namespace."""
        out: dict[str, dict[str, int]] = {}
        if not self.root.exists():
            return out
        for ns in sorted(d for d in self.root.iterdir() if d.is_dir()):
            files = [f for f in ns.rglob("*") if f.is_file() and not f.name.startswith(".")]
            out[ns.name] = {"entries": len(files), "bytes": sum(f.stat().st_size for f in files)}
        return out

    def clear(self, namespace: str | None = None) -> int:
        """Delete all entries (or one namespace); return the number of bytes freed."""
        info = self.info()
        names = [namespace] if namespace else list(info)
        freed = 0
        for ns in names:
            if ns in info:
                freed += info[ns]["bytes"]
                shutil.rmtree(self.root / ns, ignore_errors=True)
        return freed

    def summary(self) -> str:
        """One line of hits and misses per namespace used in this process."""
        names = sorted(set(self.hits) | set(self.misses))
        return ", ".join(f"{n}: {self.hits.get(n, 0)} hit / {self.misses.get(n, 0)} computed" for n in names)
