"""Experiment configuration: a typed schema read from TOML, validated once, echoed to results."""

from fedsim.config.errors import ConfigError
from fedsim.config.load import config_from_dict, load_config, parse_override, save_config
from fedsim.config.schema import ExperimentConfig

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "config_from_dict",
    "load_config",
    "parse_override",
    "save_config",
]
