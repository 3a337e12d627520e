"""Logging of the ``geneshot`` logger: one stderr handler, level set by ``-q``/``-v``.

Library modules only call ``logging.getLogger(__name__)``; nothing shows until an
application configures logging. The CLI does that through :func:`configure_logging`
(WARNING by default, INFO with ``-v``, DEBUG with ``-vv``, ERROR with ``-q``); a Python
user may call it too, or configure the standard :mod:`logging` module as usual.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging", "level_for"]

LOGGER = "geneshot"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is *now* (like :data:`logging.lastResort`).

    A handler holding the stream it was created with keeps writing to a stale stream once
    stderr is replaced (test runners, ``contextlib.redirect_stderr``).
    """

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__()
        self.setLevel(level)

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def level_for(verbosity: int) -> int:
    """Log level of a verbosity: -1 (quiet) ERROR, 0 WARNING, 1 INFO, 2 or more DEBUG."""
    if verbosity < 0:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)


def configure_logging(verbosity: int = 0) -> logging.Logger:
    """Send ``geneshot.*`` log records at the level of ``verbosity`` to stderr.

    Calling it again replaces the handler it added before (no duplicated lines).

    Parameters
    ----------
    verbosity
        -1 quiet (errors only), 0 warnings, 1 info (``-v``), 2 debug (``-vv``).

    Returns
    -------
    logging.Logger
        The ``geneshot`` logger.
    """
    logger = logging.getLogger(LOGGER)
    for h in list(logger.handlers):
        if isinstance(h, _StderrHandler):
            logger.removeHandler(h)
    level = level_for(verbosity)
    handler = _StderrHandler(level)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger
