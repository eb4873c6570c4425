"""Device profiles: which clients are which kind of device, and what happens to them in a round.

A profile (``[[engine.profiles]]``, see ``fedsim.config.schema.DeviceProfile``) gives a class of
devices its Ray resources, compute speed, bandwidth, latency and reliability. Clients are
assigned to profiles by explicit partition ids, and the rest by shares, from a seeded
permutation. Whether a client is available in a round and whether it drops out are pure
functions of (seed, partition, round, phase), so they do not depend on actors or timing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedsim.config.build import build_dataclass
from fedsim.config.errors import ConfigError
from fedsim.config.schema import DeviceProfile

SHARE_TOLERANCE = 1e-6


def build_profiles(raw: list[Any]) -> list[DeviceProfile]:
    """Typed profiles from ``[[engine.profiles]]`` tables (one default profile if none)."""
    if not raw:
        return [DeviceProfile()]
    profiles = []
    for i, item in enumerate(raw):
        profile = item if isinstance(item, DeviceProfile) else build_dataclass(
            DeviceProfile, item, f"engine.profiles[{i}].")
        profiles.append(profile)
    names = [p.name for p in profiles]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"engine.profiles[{i}].name", name, "a name no other profile has")
    return profiles


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
