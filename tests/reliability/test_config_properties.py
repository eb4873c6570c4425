"""Property-based tests: every invalid config or CLI input yields a clear message, never a crash."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedsim import cli
from fedsim.config import ConfigError, config_from_dict, load_config
from fedsim.config.schema import EvalConfig, OutputConfig, TaskConfig, TrainConfig

SECTIONS = {"task": TaskConfig, "train": TrainConfig, "eval": EvalConfig, "output": OutputConfig}
KNOWN = {s: [f.name for f in dataclasses.fields(c)] for s, c in SECTIONS.items()}

values = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                          max_size=2),
)
keys = st.one_of(st.sampled_from(sorted({k for ks in KNOWN.values() for k in ks})),
                 st.text(min_size=1, max_size=10))
section_tables = st.dictionaries(keys, values.filter(lambda v: v is not None), max_size=4)
configs = st.fixed_dictionaries({}, optional={
    "task": section_tables, "train": section_tables, "eval": section_tables,
    "output": section_tables, "seed": values.filter(lambda v: v is not None),
    "name": values.filter(lambda v: v is not None),
    "strategy": st.one_of(st.sampled_from(["fedavg", "fedadam", "nope"]),
                          st.dictionaries(st.sampled_from(["name", "eta", "beta_1", "x"]),
                                          values.filter(lambda v: v is not None), max_size=3)),
})


@settings(max_examples=300, deadline=None)
@given(configs)
def test_any_config_is_either_valid_or_a_named_config_error(data: dict) -> None:
    try:
        cfg = config_from_dict(data)
    except ConfigError as err:
        assert err.field and str(err).startswith(err.field)
        assert "is invalid" in str(err)
        return
    assert 1 <= cfg.train.clients_per_round <= cfg.task.num_clients


override_text = st.one_of(
    st.builds(lambda s, k, v: f"{s}.{k}={v}", st.sampled_from(sorted(SECTIONS)),
              st.one_of(keys, st.just("")), st.text(max_size=8)),
    st.text(max_size=20),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(override_text, max_size=3))
def test_any_override_is_either_applied_or_a_named_config_error(
        overrides: list[str]) -> None:
    path = Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml"
    try:
        load_config(path, overrides)
    except ConfigError as err:
        assert "is invalid" in str(err)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.lists(override_text, min_size=1, max_size=2))
def test_cli_never_shows_a_traceback(tmp_path_factory: pytest.TempPathFactory,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture, overrides: list[str]) -> None:
    import fedsim.engine

    monkeypatch.setattr(fedsim.engine, "run_engine", lambda *args: None)
    out = tmp_path_factory.mktemp("run")
    config = Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml"
    argv = ["run", str(config), "--out", str(out / "r")]
    for item in overrides:
        argv += ["--set", item]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code in (0, 2)
    assert "Traceback" not in err
    if code == 2:  # a config error, or argparse's usage error (e.g. ``--set -x``)
        assert "config error:" in err or "error: argument --set" in err
