"""Progress bars: one place decides whether they show, one wrapper draws them.

Every module draws its bars through :func:`progress_bar` instead of calling tqdm itself, so
that ``geneshot -q`` and a redirected stderr silence all of them at once. A bar shows only
when the caller asked for it (the library functions' ``progress`` argument) *and*
:func:`progress_enabled` says so: not quiet, and stderr is a terminal (or a Jupyter kernel).
Redirected output therefore holds no carriage-return frames of half-drawn bars.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["progress_bar", "progress_enabled", "set_quiet"]

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Switch every progress bar off (``True``) or back to the terminal check (``False``).

    The CLI calls this for every command (``geneshot -q`` sets it). When bars are off, the
    bars that Hugging Face libraries draw themselves ("Loading weights", downloads) are
    silenced too: through ``HF_HUB_DISABLE_PROGRESS_BARS`` when they are not imported yet,
    through their own switch when they are.
    """
    global _quiet
    _quiet = bool(quiet)
    if progress_enabled():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        try:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        except ImportError:  # an old huggingface_hub without the switch
            pass
    if "transformers" in sys.modules:
        # transformers reads the hub switch once at import; its "Loading weights" bar has its own
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass


def _interactive_stderr() -> bool:
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # closed or replaced stream
        return False
    # a notebook's stderr is no terminal, but tqdm.auto draws widgets there
    return "ipykernel" in sys.modules


def progress_enabled() -> bool:
    """Whether progress bars show: not quiet and stderr is a terminal (or a notebook)."""
    return not _quiet and _interactive_stderr()


def progress_bar(
    iterable: Iterable | None = None,
    *,
    progress: bool = True,
    desc: str | None = None,
    total: float | None = None,
    unit: str = "it",
    leave: bool = True,
    **kwargs: Any,
):
    """A tqdm bar, drawn only when ``progress`` and :func:`progress_enabled` agree.

    Parameters
    ----------
    iterable
        What to iterate over; ``None`` for a bar updated by hand (``bar.update(n)``).
    progress
        The caller's wish (a library function's ``progress`` argument).
    desc, total, unit, leave
        As in :class:`tqdm.tqdm`.
    **kwargs
        Passed on to tqdm (e.g. ``initial``, ``unit_scale``).

    Returns
    -------
    tqdm.tqdm
        Iterable and context manager; a disabled bar still counts but draws nothing.
    """
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        leave=leave,
        disable=not (progress and progress_enabled()),
        **kwargs,
    )
