"""Fixtures with the throwaway plugin package of ``plugin_pkg`` on the path."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugin_pkg import make_plugin, use_plugin


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The plugin as an installed distribution with entry points."""
    yield from use_plugin(make_plugin(tmp_path, installed=True), monkeypatch)


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The plugin as a plain importable module, nothing installed."""
    yield from use_plugin(make_plugin(tmp_path, installed=False), monkeypatch)
