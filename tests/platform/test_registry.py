"""The Registry mechanism itself: provenance, clashes, refresh, and shipping decorator
registrations to another process."""

from __future__ import annotations

import logging
import pickle

import pytest
from plugin_pkg import make_plugin, use_plugin

from fedsim.registry import (
    BUILT_IN,
    DOTTED,
    Registry,
    RegistryError,
    install_session_registrations,
    registries,
    session_registrations,
)
from strategies.registry import STRATEGIES


def test_a_plugin_cannot_shadow_a_builtin(tmp_path, monkeypatch, caplog) -> None:
    site = make_plugin(tmp_path, installed=True)
    info = next(site.glob("*.dist-info"))
    (info / "entry_points.txt").write_text("[fedsim.strategies]\nfedavg = labplug:SPEC\n")
    caplog.set_level(logging.WARNING, logger="fedsim")
    plugin = use_plugin(site, monkeypatch)
    next(plugin)
    try:
        assert STRATEGIES.entry("fedavg").source == BUILT_IN
        assert STRATEGIES.get("fedavg").name == "fedavg"
        assert "'fedavg' of labplug is ignored" in caplog.text
    finally:
        next(plugin, None)


def test_refresh_sees_a_plugin_installed_later(tmp_path, monkeypatch) -> None:
    assert "labavg" not in STRATEGIES.names()
    plugin = use_plugin(make_plugin(tmp_path, installed=True), monkeypatch)
    next(plugin)  # puts it on the path and refreshes
    try:
        assert "labavg" in STRATEGIES.names()
    finally:
        next(plugin, None)
    assert "labavg" not in STRATEGIES.names()


def test_dotted_references_and_prefixes() -> None:
    reg: Registry = Registry("thing", "fedsim.test-things", prefixes={"m:": "math:"})
    assert reg.get("m:pi") == pytest.approx(3.14159, abs=1e-5)
    assert reg.entry("math:tau").source == DOTTED
    assert "math:e" in reg and "e" not in reg
    with pytest.raises(RegistryError, match="unknown thing 'e'"):
        reg.get("e")


def test_decorator_registrations_travel_to_another_process() -> None:
    """What an engine ships: pickled in the driver, installed in the client process, also
    into a registry that is created only after the registrations arrive."""
    group = "fedsim.test-late"
    try:
        STRATEGIES.register("shipped", STRATEGIES.get("fedavg"))
        shipped = pickle.loads(pickle.dumps(session_registrations()))
    finally:
        STRATEGIES.unregister("shipped")
    assert "shipped" not in STRATEGIES.names()
    shipped[group] = {"late": len}
    install_session_registrations(shipped)
    try:
        assert STRATEGIES.get("shipped").name == "fedavg"
        late: Registry = Registry("late thing", group)
        assert late.get("late") is len and late.entry("late").source == "decorator"
    finally:
        STRATEGIES.unregister("shipped")
        registries()[group].unregister("late")
