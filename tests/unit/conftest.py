from __future__ import annotations

import pytest

from launcher import registry
from tests.unit.fakes import FakeBackend


@pytest.fixture
def fake_backend(monkeypatch: pytest.MonkeyPatch) -> type[FakeBackend]:
    """Inject the fake backends into the registry; nothing is served."""
    table = dict(registry.BUILTIN)
    table["fake"] = "tests.unit.fakes:FakeBackend"
    table["missing"] = "tests.unit.fakes:MissingLibraryBackend"
    monkeypatch.setattr(registry, "BUILTIN", table)
    monkeypatch.setattr(registry, "_entry_points", dict)
    FakeBackend.calls.clear()
    return FakeBackend


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory) -> None:
    """No SERVE_* variables and an empty working directory (no config file)."""
    import os

    for key in list(os.environ):
        if key.startswith("SERVE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
