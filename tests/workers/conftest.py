"""Fixtures shared by the worker tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.workers.intake import ContractIntake


@pytest.fixture
def intake() -> Iterator[ContractIntake]:
    """A running contract-exact intake on a loopback port."""
    with ContractIntake() as server:
        yield server
