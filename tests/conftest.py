"""Shared fixtures: the embedded server on loopback, nothing else on the network."""

from __future__ import annotations

import os

import pytest

# Tests never reach the cloud, whatever the developer's shell has set.
for _name in (
    "DASHSCOPE_API_KEY",
    "DASHSCOPE_WEBSOCKET_BASE_URL",
    "DASHSCOPE_API_REGION",
    "DASHSCOPE_WORKSPACE_ID",
):
    os.environ.pop(_name, None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: long reliability runs (make soak), not part of make test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("-m") and "soak" in config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="soak test: run with make soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
