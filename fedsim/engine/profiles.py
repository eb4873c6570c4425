"""Device profiles: which clients are which kind of device, and what happens to them in a round.

A profile (``[[engine.profiles]]``, see ``fedsim.config.schema.DeviceProfile``) gives a class of
devices its Ray resources, compute speed, bandwidth, latency and reliability. Clients are
assigned to profiles by explicit partition ids, and the rest by shares, from a seeded
permutation. Whether a client is available in a round and whether it drops out are pure
functions of (seed, partition, round, phase), so they do not depend on actors or timing.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from fedsim.config.build import build_dataclass
from fedsim.config.errors import ConfigError
from fedsim.config.schema import DeviceProfile

SHARE_TOLERANCE = 1e-6
RESERVED_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")
_LABEL = r"[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?"
LABEL_KEY = re.compile(rf"({_LABEL}(\.{_LABEL})*/)?{_LABEL}")
"""A Ray node label key: ``name`` or ``prefix/name`` (DNS-style prefix), as Ray checks it."""
LABEL_SELECTOR = re.compile(rf"!?(in\({_LABEL}(, ?{_LABEL})*\)|{_LABEL})")
"""A Ray label selector value: ``v``, ``!v``, ``in(a,b)`` or ``!in(a,b)``."""


EXIT_NO_NODE = 5
"""``fedsim run``'s exit code when the run stopped because no node can host a profile."""


class ProfileUnhostable(RuntimeError):
    """No live node of the cluster can host (or, in time, start) a profile's actor: the run
    stops, resumable from its last checkpoint (``fedsim.engine.pool``)."""


def build_profiles(raw: list[Any]) -> list[DeviceProfile]:
    """Typed profiles from ``[[engine.profiles]]`` tables (one default profile if none)."""
    if not raw:
        return [DeviceProfile()]
    profiles = []
    for i, item in enumerate(raw):
        profile = item if isinstance(item, DeviceProfile) else build_dataclass(
            DeviceProfile, item, f"engine.profiles[{i}].")
        check_placement(profile, f"engine.profiles[{i}].")
        profiles.append(profile)
    names = [p.name for p in profiles]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"engine.profiles[{i}].name", name, "a name no other profile has")
    return profiles


def check_placement(profile: DeviceProfile, prefix: str) -> None:
    """ConfigError naming the field unless the profile's Ray placement (``resources``,
    ``labels``, ``accelerator_type``) is one Ray accepts for an actor."""
    for name, amount in profile.resources.items():
        where = f"{prefix}resources.{name}"
        if not isinstance(name, str) or not name or name in RESERVED_RESOURCES:
            raise ConfigError(f"{prefix}resources", name, "a custom resource name (CPUs and "
                              "GPUs are num_cpus and num_gpus)")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or \
                not 0 < amount < float("inf"):
            raise ConfigError(where, amount, "a number > 0")
        if amount > 1 and amount != int(amount):
            raise ConfigError(where, amount, "a whole number when above 1 (Ray's rule for "
                              "resource quantities)")
    for key, value in profile.labels.items():
        if not isinstance(key, str) or not LABEL_KEY.fullmatch(key):
            raise ConfigError(f"{prefix}labels", key, "a Ray label key: letters, digits, '-', "
                              "'_', '.', at most 63, optionally after 'prefix/'")
        if not isinstance(value, str) or not LABEL_SELECTOR.fullmatch(value):
            raise ConfigError(f"{prefix}labels.{key}", value, "a Ray label selector: 'v', "
                              "'!v', 'in(a,b)' or '!in(a,b)'")
    if profile.accelerator_type and not re.fullmatch(_LABEL, profile.accelerator_type):
        raise ConfigError(f"{prefix}accelerator_type", profile.accelerator_type,
                          "an accelerator type such as 'H100' or 'A10G' (letters, digits, "
                          "'-', '_', '.'; empty: any)")


def assign_profiles(profiles: list[DeviceProfile], num_clients: int, seed: int) -> list[int]:
    """Profile index of every partition; ConfigError names the field when that is impossible."""
    owner = [-1] * num_clients
    for i, p in enumerate(profiles):
        for pid in p.partitions:
            where = f"engine.profiles[{i}].partitions"
            if isinstance(pid, bool) or not isinstance(pid, int) or not 0 <= pid < num_clients:
                raise ConfigError(where, pid, f"partition ids are integers in 0..{num_clients - 1}")
            if owner[pid] != -1:
                raise ConfigError(where, pid, f"a partition not already given to profile "
                                  f"{profiles[owner[pid]].name!r}")
            owner[pid] = i
    by_share = [i for i, p in enumerate(profiles) if not p.partitions]
    rest = [pid for pid in range(num_clients) if owner[pid] == -1]
    if not by_share:
        if rest:
            raise ConfigError("engine.profiles", f"{len(rest)} unassigned partitions",
                              "every partition in some profile's partitions, or a profile "
                              "with a share")
        return owner
    total = sum(profiles[i].share for i in by_share)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise ConfigError(f"engine.profiles[{by_share[-1]}].share", profiles[by_share[-1]].share,
                          f"shares of the profiles without partitions must sum to 1 "
                          f"(they sum to {total:g})")
    # Largest-remainder split of the remaining partitions, over a seeded permutation.
    exact = [profiles[i].share * len(rest) for i in by_share]
    counts = [math.floor(x) for x in exact]
    for j in sorted(range(len(exact)), key=lambda j: counts[j] - exact[j])[:len(rest)
                                                                          - sum(counts)]:
        counts[j] += 1
    order = np.random.default_rng([seed, 0x70F11E]).permutation(rest)
    start = 0
    for j, i in enumerate(by_share):
        for pid in order[start:start + counts[j]]:
            owner[int(pid)] = i
        start += counts[j]
    return owner


def _unit(*keys: int) -> float:
    """A uniform number in [0, 1) that depends only on ``keys`` (splitmix64 mixing)."""
    x = 0x9E3779B97F4A7C15
    for k in keys:
        x = (x ^ (k & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return (x >> 11) / float(1 << 53)


def round_fate(profile: DeviceProfile, seed: int, partition: int, server_round: int,
               phase: int) -> str | None:
    """``"unavailable"``, ``"dropout"`` or None (takes part) for one client in one phase."""
    if profile.availability < 1.0 and _unit(seed, partition, server_round, phase, 1) >= \
            profile.availability:
        return "unavailable"
    if profile.dropout > 0.0 and _unit(seed, partition, server_round, phase, 2) < profile.dropout:
        return "dropout"
    return None
