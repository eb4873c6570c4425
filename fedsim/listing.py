"""What ``fedsim list`` prints: every registry's names with where each came from, and the
settings of one strategy or task kind (``fedsim list --params NAME``)."""

from __future__ import annotations

import dataclasses
import typing

from fedsim.config.errors import ConfigError
from fedsim.config.fields import describe_allowed
from fedsim.registry import BUILT_IN, Registry, RegistryError, import_dotted

# Every extension point, in the order ``fedsim list`` shows them (dotted, so none is imported
# before it is listed).
REGISTRIES = (
    ("strategies", "strategies.registry:STRATEGIES"),
    ("models", "fedsim.tasks.models:MODELS"),
    ("datasets", "fedsim.tasks.datasets:DATASETS"),
    ("partitioners", "fedsim.tasks.partitioning:PARTITIONERS"),
    ("task kinds", "fedsim.tasks.kind:TASK_KINDS"),
    ("codecs", "fedsim.comm.codec:CODECS"),
)


def _summary(registry: Registry, name: str) -> str:
    """A one-line description of a name (a strategy's summary, else the first doc line)."""
    try:
        obj = registry.get(name)
    except RegistryError as err:
        return f"(does not load: {err})"
    text = getattr(obj, "summary", None) or (getattr(obj, "__doc__", None) or "")
    return text.strip().split("\n")[0]


def list_registries() -> str:
    """Each registry: name, source (built-in, entry point of a distribution, decorator) and,
    for names that do not come with fedsim, where they are defined."""
    lines = []
    for title, ref in REGISTRIES:
        registry: Registry = import_dotted(ref)
        lines.append(f"{title} (entry point group {registry.group}):")
        for entry in registry.entries():
            where = "" if entry.source == BUILT_IN else f"  [{entry.source}: {entry.origin}]"
            lines.append(f"  {entry.name:<16} {entry.source:<12} "
                         f"{_summary(registry, entry.name)}{where}")
    lines.append("  (any of these also takes a dotted reference 'package.module:Name')")
    return "\n".join(lines)


def _settings_table(cls: type, prefix: str) -> list[str]:
    hints = typing.get_type_hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        expected = hints.get(f.name, str)
        allowed = describe_allowed(f, expected if isinstance(expected, type) else str)
        lines.append(f"  {prefix}{f.name} = {default!r}  ({allowed})")
        doc = f.metadata.get("doc")
        if doc:
            lines.append(f"      {doc}")
    return lines


def list_params(name: str) -> str:
    """The settings of strategy ``name`` (``[strategy]``) or task kind ``name``."""
    from fedsim.tasks.kind import TASK_KINDS
    from strategies.registry import STRATEGIES

    if name in STRATEGIES:
        spec = STRATEGIES.get(name)
        entry = STRATEGIES.entry(name)
        lines = [f"strategy {name} ({entry.source}: {entry.origin})", f"  {spec.summary}",
                 "[strategy] settings:"]
        return "\n".join([*lines, *_settings_table(spec.params_cls, "strategy.")])
    if name in TASK_KINDS:
        kind = TASK_KINDS.get(name)
        entry = TASK_KINDS.entry(name)
        lines = [f"task kind {name} ({entry.source}: {entry.origin})",
                 "  " + (kind.__doc__ or "").strip().split("\n")[0]]
        if kind.settings is None:
            return "\n".join([*lines, "  (no settings of its own; see [task])"])
        section, cls = kind.settings
        return "\n".join([*lines, f"[{section}] settings:", *_settings_table(cls, section + ".")])
    raise ConfigError("--params", name, "a strategy or task kind: "
                      + ", ".join([*STRATEGIES.names(), *TASK_KINDS.names()]))
