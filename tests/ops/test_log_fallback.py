"""--log-format json in-process: a library that logs through :mod:`logging` with no handler of its own
(waitress does) must still give one JSON object per line, and an app's own logging set-up wins."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from launcher import log


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    saved = logging.lastResort
    yield
    log.configure("info", "text")
    logging.lastResort = saved


def test_unhandled_library_error_is_one_json_line(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # pytest's own capture handler: gone
    log.configure("info", "json")
    library = logging.getLogger("ops_test_library.channel")  # no handler anywhere: logging's fallback
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        library.exception("Exception while serving /error")
    library.info("below the fallback's level: dropped, as before")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["message"] == "Exception while serving /error" and record["level"] == "error"
    assert record["logger"] == "ops_test_library.channel" and "RuntimeError: boom" in record["exception"]


def test_text_mode_keeps_loggings_own_fallback() -> None:
    saved = logging.lastResort
    log.configure("info", "json")
    log.configure("info", "text")
    assert logging.lastResort is saved
