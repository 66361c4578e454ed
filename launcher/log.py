"""The launcher's own log: one line per message on stderr, shared by every backend."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("launcher")

_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, pid, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        import json
        import time

        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


#: logging's own fallback for records no handler takes, kept to be put back.
_LAST_RESORT = logging.lastResort


_json_mode = False


def json_mode() -> bool:
    """True once configure() chose JSON lines."""
    return _json_mode


def last_words(message: str, level: str = "error") -> None:
    """One line straight to fd 2, safe in a signal handler or just before os._exit: JSON in JSON mode."""
    import os

    if _json_mode:
        import json
        import time

        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": level,
                           "pid": os.getpid(), "logger": "launcher", "message": message})
    else:
        line = message
    try:
        os.write(2, (line + "\n").encode())
    except OSError:
        pass


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send the launcher's messages to stderr at ``level``, as text or JSON lines (idempotent).

    With JSON, warnings and errors that a library logs through :mod:`logging` without any handler
    configured (waitress's "Exception while serving /path" with its traceback, for one) are JSON
    objects too: they go through ``logging.lastResort``, which otherwise prints the bare message and
    traceback over several lines.  An app that configures logging itself is left alone (the
    fallback is only used when no handler exists).
    """
    global _json_mode
    _json_mode = fmt == "json"
    for handler in list(logger.handlers):
        if getattr(handler, "_launcher", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S %z"))
    handler._launcher = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    if fmt == "json":
        fallback = _StderrHandler(logging.WARNING)  # the level of logging's own fallback
        fallback.setFormatter(JSONFormatter())
        logging.lastResort = fallback
    else:
        logging.lastResort = _LAST_RESORT


class _StderrHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` (looked up per record, as logging's own fallback does,
    so a replaced or re-opened stderr is honoured)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)
