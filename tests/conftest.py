"""Shared pytest configuration for the MIHO test suite."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def device() -> str:
    """The device tests run on by default (CPU; GPU tests are marked ``gpu``)."""
    return "cpu"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when no CUDA device is available."""
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; none is available")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
