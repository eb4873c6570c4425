"""One registry mechanism for every extension point: strategies, models, datasets, partitioners,
task kinds and uplink codecs.

A :class:`Registry` maps names to objects. Built-ins and third-party code fill it the same three
ways, and the registry records where each name came from:

- **entry points** of an installed distribution, in the registry's group (``fedsim.strategies``,
  ``fedsim.models``, ...). fedsim's own built-ins are entry points of fedsim's distribution
  (``pyproject.toml``), so a pip-installed package adds names exactly as fedsim does;
- **a dotted reference** used in place of a name, ``"package.module:Attribute"``, resolved on
  first use in every process that needs it (the server and each client), nothing installed;
- **a decorator** (``@STRATEGIES.register("myprox")``, or ``fedsim.register_strategy``) for
  notebooks and scripts; such names exist in the process that ran the decorator, and engines
  whose clients live in other processes ship them there (:func:`session_registrations`).

The registry knows nothing of what it holds beyond a ``check`` that a loaded object is of the
right kind, so this module imports no concrete implementation.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("fedsim")

BUILT_IN = "built-in"
ENTRY_POINT = "entry point"
DOTTED = "dotted reference"
DECORATOR = "decorator"
BUILT_IN_PACKAGES = ("fedsim", "strategies", "clients")


class RegistryError(ValueError):
    """A name or reference that does not resolve; ``allowed`` says what would."""

    def __init__(self, message: str, allowed: str) -> None:
        super().__init__(message)
        self.allowed = allowed


@dataclass(frozen=True)
class Entry:
    """One registered name: the object (None until loaded), where it came from and how."""

    name: str
    source: str  # BUILT_IN, ENTRY_POINT, DOTTED or DECORATOR
    origin: str  # "package.module:Attr", or the distribution of an entry point


def is_dotted(name: str) -> bool:
    """Whether ``name`` is a ``package.module:Attribute`` reference rather than a plain name."""
    return ":" in name and not name.startswith(":") and not name.endswith(":")


def import_dotted(reference: str) -> Any:
    """The object that ``"package.module:Attr.sub"`` names.

    The current folder is importable (as it is for ``python -m``), so a module beside the
    config, ``mylab/fedprox.py``, is found as ``mylab.fedprox``."""
    module_name, _, attr_path = reference.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise RegistryError(f"cannot import module {module_name!r} of {reference!r} ({err})",
                            "an importable module: installed, or a package below the current "
                            "folder") from err
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as err:
            raise RegistryError(f"module {module_name!r} has no attribute {attr_path!r}",
                                f"a name defined in {module_name}") from err
    return obj


class Registry(Generic[T]):
    """Names of one kind of extension (``kind``), filled from entry point group ``group``.

    ``check(obj)`` returns the usable object for whatever was registered or referenced (a
    spec instance, a factory, ...) or raises TypeError saying what was expected. ``prefixes``
    abbreviate dotted references: ``{"flwr:": "flwr.serverapp.strategy:"}`` makes
    ``"flwr:FedProx"`` mean ``"flwr.serverapp.strategy:FedProx"``.
    """

    def __init__(self, kind: str, group: str, check: Callable[[Any], T] | None = None,
                 prefixes: dict[str, str] | None = None) -> None:
        self.kind, self.group = kind, group
        self._check = check or (lambda obj: obj)
        self._prefixes = dict(prefixes or {})
        self._loaded: dict[str, T] = {}
        self._entries: dict[str, Entry] = {}
        self._entry_points: dict[str, Any] | None = None
        self._session: dict[str, Any] = {}  # registered by decorator in this process
        _ALL[group] = self
        for name, obj in _PENDING.pop(group, {}).items():
            self.register(name, obj, replace=True)

    # -- filling --------------------------------------------------------------------------
    def register(self, name: str, obj: Any = None, *, replace: bool = False) -> Any:
        """Register ``obj`` as ``name``; without ``obj``, a decorator that registers what it
        decorates and returns it unchanged."""
        if obj is None:
            return lambda target: self.register(name, target, replace=replace)
        if not name or is_dotted(name) or name != name.strip():
            raise RegistryError(f"cannot register {self.kind} {name!r}",
                                "a plain name without ':' or surrounding spaces")
        if not replace and name in self.names():
            raise RegistryError(f"{self.kind} {name!r} is already registered "
                                f"({self.entry(name).source}: {self.entry(name).origin})",
                                "another name, or register(..., replace=True)")
        checked = self._checked(name, obj)
        self._loaded[name] = checked
        origin = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', name)}"
        self._entries[name] = Entry(name, DECORATOR, origin)
        self._session[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Forget a name registered by decorator (tests, notebooks re-running a cell)."""
        if name not in self._session:
            raise RegistryError(f"{self.kind} {name!r} was not registered in this session",
                                ", ".join(sorted(self._session)) or "none")
        for table in (self._loaded, self._entries, self._session):
            table.pop(name, None)

    def refresh(self) -> None:
        """Look for entry points again (a package installed or removed since the first look);
        names registered by decorator stay."""
        self._entry_points = None
        self._loaded = {k: v for k, v in self._loaded.items() if k in self._session}

    def _discover(self) -> dict[str, Any]:
        """Entry points of this group, by name (built-ins first on a clash, with a warning)."""
        if self._entry_points is None:
            found: dict[str, Any] = {}
            for ep in sorted([*entry_points(group=self.group), *_source_entry_points(self.group)],
                             key=lambda ep: not _is_builtin(ep.value)):
                if ep.name in found and found[ep.name].value == ep.value:
                    continue  # the checkout's pyproject.toml repeats the installed metadata
                if ep.name in found:
                    log.warning("%s %r of %s is ignored: %s already provides it", self.kind,
                                ep.name, _dist_name(ep), found[ep.name].value)
                    continue
                found[ep.name] = ep
            self._entry_points = found
        return self._entry_points

    # -- looking up -----------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every name known without importing anything: entry points and decorators."""
        return sorted({*self._discover(), *self._entries})

    def entry(self, name: str) -> Entry:
        """Where ``name`` (a plain name or a dotted reference) comes from."""
        if name in self._entries:
            return self._entries[name]
        if is_dotted(name):
            return Entry(name, DOTTED, name)
        ep = self._discover().get(name)
        if ep is None:
            raise self._unknown(name)
        source = BUILT_IN if _is_builtin(ep.value) else ENTRY_POINT
        return Entry(name, source, ep.value if source == BUILT_IN else
                     f"{_dist_name(ep)} ({ep.value})")

    def entries(self) -> list[Entry]:
        return [self.entry(name) for name in self.names()]

    def get(self, name: str) -> T:
        """The object registered as ``name``, or referenced by ``"package.module:Attr"``."""
        if name in self._loaded:
            return self._loaded[name]
        if is_dotted(name):
            obj = import_dotted(self.expand(name))
        else:
            ep = self._discover().get(name)
            if ep is None:
                raise self._unknown(name)
            try:
                obj = ep.load()
            except Exception as err:  # noqa: BLE001 - a broken plugin names itself
                raise RegistryError(f"{self.kind} {name!r} failed to load from {ep.value} "
                                    f"({type(err).__name__}: {err})",
                                    "a working installation of " + _dist_name(ep)) from err
        checked = self._checked(name, obj)
        self._loaded[name] = checked
        return checked

    def expand(self, reference: str) -> str:
        """``reference`` with an abbreviating prefix (see ``prefixes``) written out."""
        for short, full in self._prefixes.items():
            if reference.startswith(short):
                return full + reference[len(short):]
        return reference

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (is_dotted(name) or name in self.names())

    def _checked(self, name: str, obj: Any) -> T:
        try:
            return self._check(obj)
        except TypeError as err:
            raise RegistryError(f"{self.kind} {name!r} is not usable: {err}", str(err)) from err

    def _unknown(self, name: str) -> RegistryError:
        return RegistryError(f"unknown {self.kind} {name!r}",
                             ", ".join(self.names()) + ", or a 'package.module:Name' reference")

    # -- other processes ------------------------------------------------------------------
    def session_registrations(self) -> dict[str, Any]:
        """What the decorator registered in this process (to re-register elsewhere)."""
        return dict(self._session)


_ALL: dict[str, Registry] = {}
_PENDING: dict[str, dict[str, Any]] = {}  # shipped here before their registry was created


def registries() -> dict[str, Registry]:
    """Every registry created so far, by entry point group."""
    return dict(_ALL)


def refresh_all() -> None:
    """:meth:`Registry.refresh` every registry (after installing or removing a plugin)."""
    for registry in _ALL.values():
        registry.refresh()


def session_registrations() -> dict[str, dict[str, Any]]:
    """Decorator registrations of every registry in this process, by group: what an engine
    ships to client processes (Ray pickles them by value) so notebook plugins work there."""
    return {group: reg.session_registrations() for group, reg in _ALL.items()
            if reg.session_registrations()}


def install_session_registrations(shipped: dict[str, dict[str, Any]]) -> None:
    """Re-register what :func:`session_registrations` gave, in a client process (a group
    whose registry is not created yet here gets them when it is)."""
    for group, items in shipped.items():
        registry = _ALL.get(group)
        if registry is None:
            _PENDING.setdefault(group, {}).update(items)
            continue
        for name, obj in items.items():
            registry.register(name, obj, replace=True)


@functools.lru_cache(maxsize=1)
def _checkout_entry_points() -> dict[str, list[EntryPoint]]:
    """fedsim's own entry points as its source checkout's ``pyproject.toml`` declares them.

    An install's metadata holds them too; reading the file as well keeps a checkout that is
    only on ``PYTHONPATH`` (or whose editable install predates a new built-in) complete."""
    path = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        project = tomllib.loads(path.read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    from fedsim import DISTRIBUTION

    if project.get("name") != DISTRIBUTION:
        return {}
    return {group: [EntryPoint(name, value, group) for name, value in table.items()
                    if _is_builtin(value)]
            for group, table in project.get("entry-points", {}).items()}


def _source_entry_points(group: str) -> list[EntryPoint]:
    return _checkout_entry_points().get(group, [])


def _is_builtin(value: str) -> bool:
    return value.split(".", 1)[0].split(":", 1)[0] in BUILT_IN_PACKAGES


def _dist_name(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or "an installed package"
