"""One pool of resident Ray actors per device profile, and the static node -> actor placement.

Each profile's actors are created with that profile's Ray resources (``num_cpus``, fractional
``num_gpus``), so Ray places them where those resources exist, and a client only ever runs on an
actor of its own profile. The node -> actor mapping is fixed because the node's Context lives
there (:func:`place_nodes`: round-robin, or by each client's local work when it differs,
in blocks of clients that fold their replies together).
A dead actor is replaced by a fresh one with the same resources; its nodes get fresh Contexts,
holding the states the driver kept for them if it kept any (``RayGrid``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import ray
from flwr.app import Context

from fedsim.config.schema import DeviceProfile
from fedsim.engine.actor import ClientActor, VectorizeOptions
from fedsim.registry import BUILT_IN_PACKAGES, session_registrations

ActorKey = tuple[int, int]  # (profile index, slot in its pool)
READY_TIMEOUT_S = 600.0

_RemoteActor = ray.remote(ClientActor)


def pool_sizes(profiles: list[DeviceProfile], clients: list[int],
               cluster: dict[str, float]) -> list[int]:
    """Actors per profile: explicit, or each profile's share of the cluster's CPUs (and GPUs).

    ``clients[i]`` is the number of clients of profile ``i``. Raises ValueError naming the
    profile when the pools cannot all be placed at once.
    """
    total = max(1, sum(clients))
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    sizes = []
    for p, n in zip(profiles, clients, strict=True):
        if n == 0:
            sizes.append(0)
            continue
        if p.actors:
            sizes.append(min(p.actors, n))
            continue
        k = math.floor(cpus * n / total / p.num_cpus + 1e-9)
        if p.num_gpus > 0:
            k = min(k, math.floor(gpus * n / total / p.num_gpus + 1e-9))
        sizes.append(max(1, min(k, n)))
    need_cpu = sum(k * p.num_cpus for k, p in zip(sizes, profiles, strict=True))
    need_gpu = sum(k * p.num_gpus for k, p in zip(sizes, profiles, strict=True))
    if need_cpu > cpus + 1e-9 or need_gpu > gpus + 1e-9:
        detail = ", ".join(f"{p.name}: {k} x ({p.num_cpus:g} CPU, {p.num_gpus:g} GPU)"
                           for k, p in zip(sizes, profiles, strict=True))
        raise ValueError(f"engine.profiles need {need_cpu:g} CPUs and {need_gpu:g} GPUs for "
                         f"their actors ({detail}) but the Ray cluster has {cpus:g} CPUs and "
                         f"{gpus:g} GPUs; lower the profiles' actors, num_cpus or num_gpus")
    return sizes


def node_blocks(node_profile: dict[int, int], block: int) -> dict[int, int]:
    """Each node's block: the ``k``-th node of a profile (in partition order) is in block
    ``k // block`` of that profile. A block always runs on one actor (:func:`place_nodes`),
    which is what lets folded replies (``fedsim.engine.fold``) not depend on the actor count."""
    rank = [0] * (max(node_profile.values(), default=0) + 1)
    blocks = {}
    for node_id, p in node_profile.items():  # in partition order
        blocks[node_id] = rank[p] // block
        rank[p] += 1
    return blocks


def place_nodes(node_profile: dict[int, int], sizes: list[int],
                node_work: dict[int, float] | None = None,
                block: int = 1) -> dict[int, ActorKey]:
    """The static node -> (profile, actor slot) placement, whole blocks of ``block`` nodes at
    a time (:func:`node_blocks`; 1: node by node).

    Without work estimates, block ``k`` of a profile goes to actor ``k mod K``. With them
    (clients whose local steps differ: ``local_epochs`` on partitions of unequal size), the
    heaviest block goes first onto the least-loaded actor of its profile (longest processing
    time first, Graham 1969: within 4/3 of the best makespan), so the actors of a profile
    finish a full round together. Ties keep partition order.
    """
    blocks = node_blocks(node_profile, block)
    groups: dict[tuple[int, int], list[int]] = {}  # (profile, block) -> its nodes
    for node_id, p in node_profile.items():
        groups.setdefault((p, blocks[node_id]), []).append(node_id)
    slot_of: dict[tuple[int, int], int] = {}
    if node_work is None:
        slot_of = {(p, b): b % sizes[p] for p, b in groups}
    else:
        loads = [[0.0] * k for k in sizes]
        work = {g: sum(node_work[n] for n in nodes) for g, nodes in groups.items()}
        for _, (p, b) in sorted(enumerate(groups), key=lambda item: (-work[item[1]], item[0])):
            slot = min(range(sizes[p]), key=lambda s: (loads[p][s], s))
            loads[p][slot] += work[(p, b)]
            slot_of[(p, b)] = slot
    return {n: (p, slot_of[(p, blocks[n])]) for n, p in node_profile.items()}


def shippable_registrations() -> dict[str, dict[str, Any]]:
    """The driver's decorator registrations (``fedsim.registry``), for each actor to install.

    Ray pickles functions and classes of an importable module by reference; the modules that
    defined these registrations (a script, a notebook's helper) may not be importable on the
    actors, so they travel by value (installed packages and fedsim's own stay by reference)."""
    registrations = session_registrations()
    for items in registrations.values():
        for obj in items.values():
            for name in _defining_modules(obj):
                module = sys.modules.get(name)
                if module is not None and _by_value(module):
                    ray.cloudpickle.register_pickle_by_value(module)
    return registrations


def _defining_modules(obj: Any) -> set[str]:
    parts = [obj, *(vars(obj).values() if hasattr(obj, "__dict__") and not isinstance(
        obj, type) else ())]
    return {m for p in parts if (m := getattr(p, "__module__", None))}


def _by_value(module: Any) -> bool:
    top = module.__name__.split(".", 1)[0]
    file = getattr(module, "__file__", None) or ""
    return (module.__name__ != "__main__" and top not in BUILT_IN_PACKAGES
            and "site-packages" not in file and top not in sys.stdlib_module_names)


class ActorPools:
    """The actors of every profile and the nodes each one holds."""

    def __init__(self, profiles: list[DeviceProfile], node_profile: dict[int, int],
                 make_context: Callable[[int], Context], client_app_ref: str,
                 timer: str, node_work: dict[int, float] | None = None,
                 block: int = 1, vectorize: VectorizeOptions | None = None) -> None:
        self.profiles = profiles
        self.vectorize = vectorize
        self.make_context = make_context
        self.client_app_ref = client_app_ref
        self.timer = timer
        counts = [0] * len(profiles)
        for p in node_profile.values():
            counts[p] += 1
        # no more actors than a profile has blocks: a block never spreads over two
        self.sizes = [min(k, math.ceil(n / block)) for k, n in zip(
            pool_sizes(profiles, counts, ray.cluster_resources()), counts, strict=True)]
        self.placement = place_nodes(node_profile, self.sizes, node_work, block)
        # each node's fold block (consecutive nodes of a profile that share an actor)
        self.node_block = node_blocks(node_profile, block)
        self.nodes_of: dict[ActorKey, list[int]] = {}
        for node_id, key in self.placement.items():
            self.nodes_of.setdefault(key, []).append(node_id)
        self.actors: dict[ActorKey, Any] = {}
        self.replaced = 0
        self.registrations = shippable_registrations()
        ready = [self._start(key) for key in self.nodes_of]
        ray.get(ready, timeout=READY_TIMEOUT_S)

    def _start(self, key: ActorKey) -> Any:
        """Create the actor for ``key`` and register its nodes; returns the ready ref."""
        profile = self.profiles[key[0]]
        actor = _RemoteActor.options(num_cpus=profile.num_cpus, num_gpus=profile.num_gpus,
                                     max_restarts=0).remote(self.client_app_ref, profile.name,
                                                            self.timer, self.registrations,
                                                            self.vectorize)
        self.actors[key] = actor
        return actor.register.remote([self.make_context(n) for n in self.nodes_of[key]])

    def cpus_held(self) -> float:
        """CPUs the actors of all pools hold."""
        return sum(k * p.num_cpus for k, p in zip(self.sizes, self.profiles, strict=True))

    def actor(self, key: ActorKey) -> Any:
        return self.actors[key]

    def replace(self, key: ActorKey, states: dict[int, Any] | None = None) -> None:
        """Replace a dead actor by a fresh one holding fresh Contexts for its nodes, with
        ``states`` (by partition id) as the ``Context.state`` of the nodes they name."""
        ray.kill(self.actors[key], no_restart=True)
        ray.get(self._start(key), timeout=READY_TIMEOUT_S)
        if states:
            ray.get(self.actors[key].import_states.remote(states), timeout=READY_TIMEOUT_S)
        self.replaced += 1

    def export_states(self) -> dict[int, Any]:
        states: dict[int, Any] = {}
        for part in ray.get([a.export_states.remote() for a in self.actors.values()]):
            states.update(part)
        return states

    def import_states(self, states: dict[int, Any]) -> None:
        ray.get([a.import_states.remote(states) for a in self.actors.values()])

    def describe(self) -> list[dict[str, Any]]:
        """What every actor reports about itself (profile, Ray resources, nodes served)."""
        keys = sorted(self.actors)
        infos = ray.get([self.actors[k].describe.remote() for k in keys])
        return [{"key": k, **info} for k, info in zip(keys, infos, strict=True)]

    def shutdown(self) -> None:
        for actor in self.actors.values():
            ray.kill(actor, no_restart=True)
        self.actors.clear()
