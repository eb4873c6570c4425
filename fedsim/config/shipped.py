"""The ready-made experiment files that ship with fedsim, found by name from any folder.

They live in the repository's top-level ``configs/`` folder. A wheel carries the same files as
``fedsim/configs/*.toml`` (``setup.py`` maps the package ``fedsim.configs`` onto ``configs/``),
so an installed fedsim finds them inside its package and a source checkout finds them beside it.
"""

from __future__ import annotations

from pathlib import Path

from fedsim.config.errors import ConfigError

SUFFIX = ".toml"


def configs_dir() -> Path:
    """The folder of the shipped configs: inside the installed package, else the checkout's."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"


def shipped_names() -> list[str]:
    """Names of the shipped configs (``quickstart``, ``fedlion``, ...), sorted."""
    return sorted(path.stem for path in configs_dir().glob(f"*{SUFFIX}"))


def shipped_config(name: str) -> Path:
    """The shipped config called ``name`` (``"quickstart"`` or ``"quickstart.toml"``)."""
    stem = name.removesuffix(SUFFIX)
    if stem not in shipped_names():
        raise ConfigError("config", name, "an experiment file, or the name of a shipped "
                          "config: " + ", ".join(shipped_names()))
    return configs_dir() / f"{stem}{SUFFIX}"


def find_config(name_or_path: str | Path) -> Path:
    """The experiment file that a command line or ``fedsim.run`` names.

    An existing file is used as given; otherwise a bare name (``quickstart``, with or without
    ``.toml``) is the shipped config of that name. Anything else is reported: a folder by the
    TOML reader, a missing path (one with a folder in it, or a ``.toml`` name that is not
    shipped) as a missing file, an unknown bare name with the list of shipped names."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    bare = path.parent == Path(".")
    if bare and text.removesuffix(SUFFIX) in shipped_names():
        return shipped_config(text)
    if path.exists():
        return path
    if not bare or text.endswith(SUFFIX):
        raise ConfigError("config", text, "file not found (shipped configs, runnable by name: "
                          + ", ".join(shipped_names()) + ")")
    return shipped_config(text)
