"""The Python API: run a fedsim experiment from a script, a notebook or a test.

:func:`run` takes what ``fedsim run`` takes (an experiment file, the name of a shipped config,
settings) plus a dict or an :class:`~fedsim.config.schema.ExperimentConfig`, goes through the
same validation and the same run path as the command line (:mod:`fedsim.launch`), and returns
the run's :class:`~fedsim.result.RunResult`. :func:`load` reads a finished results folder.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedsim.config import ConfigError, ExperimentConfig, config_from_dict
from fedsim.config.build import to_dict
from fedsim.config.load import read_toml
from fedsim.config.shipped import find_config
from fedsim.result import RunResult

ConfigSource = str | Path | Mapping[str, Any] | ExperimentConfig


def run(config: ConfigSource, /, *, engine: str = "ray", out: str | Path | None = None,
        progress: bool = True, **overrides: Any) -> RunResult:
    """Run one federated experiment to the end and return its results.

    Args:
        config: what to run, one of
            - the name of a config shipped with fedsim: ``"quickstart"``, ``"fedlion"``, ...
              (``fedsim list`` shows them);
            - the path of a TOML experiment file (``"configs/fedlion.toml"``, a ``Path``);
            - a dict shaped like that TOML file
              (``{"task": {"dataset": "digits"}, "strategy": {"name": "fedlion"}}``);
              anything left out takes its default;
            - an :class:`~fedsim.config.schema.ExperimentConfig` (validated again, so one
              changed in place is checked like the rest).
        engine: what carries the messages, as ``fedsim run --engine``: ``"ray"`` (fedsim's
            Ray engine, the default), ``"inprocess"`` (clients called in this process; small
            runs and tests) or ``"flower"`` (Flower's own simulation).
        out: the results folder, which must be new or empty. By default a new folder
            ``OUTPUT_DIR/NAME-TIMESTAMP`` (``[output] dir``, relative to the current folder) is
            made for every call, so a run never writes into an earlier run's results.
        progress: show a progress bar (a line per round when stderr is not a terminal) and
            the start and closing lines on stderr, as the command line does; ``False`` prints
            none of them (warnings that Flower or Ray log still show).
        **overrides: settings that replace those of ``config``, in either spelling
            (both may be mixed in one call and are applied in the order given):
            - a dotted key, as ``fedsim run --set``: ``**{"train.rounds": 3, "task.alpha": 0.1}``;
            - a section as keyword, holding a dict: ``train={"rounds": 3}``,
              ``strategy={"name": "fedlion", "beta1": 0.9}``; it changes only the keys it
              names, the section's other settings stay. A top-level setting is a plain
              keyword: ``seed=1``, ``name="trial"``.

            Values are Python values (``3``, ``0.1``, ``"digits"``, ``[...]``), not TOML text.
            The ``[engine]`` section shares its name with the ``engine`` argument: change its
            settings with dotted keys, ``**{"engine.num_cpus": 2}``.

    Returns:
        The finished run: its folder, round-by-round metrics and summary.

    Raises:
        ConfigError: a setting, override, file or name is invalid; it names the field, the
            value and what is allowed (the same errors as ``fedsim run``), and nothing starts.
        KeyboardInterrupt: the run was interrupted; the rounds finished so far stay in the
            results folder, and ``fedsim run --resume RUN_DIR`` continues it.

    Example:
        >>> import fedsim
        >>> result = fedsim.run("quickstart", engine="inprocess", **{"train.rounds": 3})
        >>> result.summary["final_accuracy"] > 0.5
        True
    """
    from fedsim.launch import carry_out, check_engine, prepare_run

    if isinstance(engine, Mapping):
        raise ConfigError("engine", engine, "the name of an engine (ray, inprocess, flower); "
                          "the [engine] section's settings are dotted keys: "
                          "**{'engine.num_cpus': 2}")
    check_engine(engine)
    cfg = resolve_config(config, overrides)
    run_dir = prepare_run(cfg, engine, out)
    carry_out(cfg, engine, run_dir, progress=progress)
    return RunResult.from_dir(run_dir.resolve())


def load(run_dir: str | Path) -> RunResult:
    """The results of a finished (or interrupted) run, read from its results folder.

    Raises ValueError naming ``run_dir`` when it holds no fedsim run."""
    return RunResult.from_dir(run_dir)


def resolve_config(config: ConfigSource, overrides: Mapping[str, Any] | None = None,
                   ) -> ExperimentConfig:
    """The validated experiment config that :func:`run` would run (nothing starts).

    Useful to check settings, or to read the defaults a name or a file resolves to."""
    if isinstance(config, ExperimentConfig):
        data = to_dict(config)
    elif isinstance(config, Mapping):
        data = copy.deepcopy(dict(config))
    elif isinstance(config, str | Path):
        data = read_toml(find_config(config))
    else:
        raise ConfigError("config", config, "a path, the name of a shipped config, a dict or "
                          "an ExperimentConfig")
    return config_from_dict(apply_settings(data, overrides or {}))


def apply_settings(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with each override applied: a dotted key sets one setting, a dict given for a
    section updates the keys it names, any other value sets a top-level setting."""
    data = copy.deepcopy(data)
    if isinstance(data.get("strategy"), str):  # `strategy = "fedlion"` is short for the table
        data["strategy"] = {"name": data["strategy"]}
    for key, value in overrides.items():
        path = key.split(".")
        if not key or any(not part for part in path):
            raise ConfigError(key, value, "a setting such as train.rounds, or a section "
                              "keyword such as train={'rounds': 3}")
        if isinstance(value, Mapping):
            _merge(data, path, value)
        else:
            _section(data, path[:-1])[path[-1]] = copy.deepcopy(value)
    return data


def _section(data: dict[str, Any], path: list[str]) -> dict[str, Any]:
    """The table at ``path`` of ``data``, made if missing (ConfigError if a value is there)."""
    node = data
    for i, part in enumerate(path):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(path[: i + 1]), child, "is a value, not a section")
        node = child
    return node


def _merge(data: dict[str, Any], path: list[str], values: Mapping[str, Any]) -> None:
    """Update the table at ``path`` with ``values``, recursing into nested tables."""
    table = _section(data, path)
    for key, value in values.items():
        if isinstance(value, Mapping) and isinstance(table.get(key, {}), dict):
            _merge(data, [*path, str(key)], value)
        else:
            table[key] = copy.deepcopy(value)
