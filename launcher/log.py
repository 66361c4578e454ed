"""The launcher's own log: one line per message on stderr, shared by every backend."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("launcher")

_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


def configure(level: str = "info") -> None:
    """Send the launcher's messages to stderr at ``level`` (idempotent)."""
    for handler in list(logger.handlers):
        if getattr(handler, "_launcher", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S %z"))
    handler._launcher = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
