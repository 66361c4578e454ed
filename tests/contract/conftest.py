"""Deselect the contract checks a backend flavour cannot pass by design (see test_contract.FLAVOURS)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from tests.contract.test_contract import impossible_items

    dropped = impossible_items(items)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        keep = set(map(id, dropped))
        items[:] = [item for item in items if id(item) not in keep]
