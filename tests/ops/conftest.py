"""Fixtures of the operations tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests import support
from tests.ops.helpers import AppState


@pytest.fixture
def app_state() -> Iterator[AppState]:
    """The ops app's state directory, in a short world-reachable path under /tmp (not under
    pytest's 0700 tmp_path: a backend may run the app as another user)."""
    base = support.short_tmpdir("wl-ops-")
    base.chmod(0o755)
    try:
        yield AppState(base / "state")
    finally:
        shutil.rmtree(base, ignore_errors=True)
