"""One pool of resident Ray actors per device profile, and the static node -> actor placement.

Each profile's actors are created with that profile's Ray resources (``num_cpus``, fractional
``num_gpus``), so Ray places them where those resources exist, and a client only ever runs on an
actor of its own profile. The node -> actor mapping is fixed because the node's Context lives
there (:func:`place_nodes`: round-robin, or by each client's local work when it differs,
in blocks of clients that fold their replies together).
A profile can also name where its actors run on a cluster (custom ``resources``, node
``labels``, ``accelerator_type``; :func:`actor_options`). Before any actor starts, every pool is
checked against the nodes Ray reports (:func:`check_hostable`), so a profile no node can host
fails at once, naming it, instead of waiting for a node that never comes.
A dead actor is replaced by a fresh one with the same resources; its nodes get fresh Contexts,
holding the states the driver kept for them if it kept any (``RayGrid``). A replacement is only
created when a live node can host it (waiting up to ``host_wait_s`` for one to join), and waits
for its node at most ``ready_timeout_s`` (a lost node's profile may have nowhere left to go:
:class:`ProfileUnhostable`). Each actor's Ray node is known (:meth:`ActorPools.lost_with_node`
tells an actor lost with its node from one whose own process died).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

import ray
from flwr.app import Context

from fedsim.config.errors import ConfigError
from fedsim.config.schema import DeviceProfile
from fedsim.engine.actor import ClientActor, VectorizeOptions
from fedsim.engine.profiles import ProfileUnhostable
from fedsim.registry import BUILT_IN_PACKAGES, session_registrations

ActorKey = tuple[int, int]  # (profile index, slot in its pool)
READY_TIMEOUT_S = 600.0
HOST_POLL_S = 0.5  # how often a replacement waiting for a host re-reads Ray's node table

_RemoteActor = ray.remote(ClientActor)
ACCELERATOR_RESOURCE = "accelerator_type:"  # Ray's node resource for its accelerator type


def actor_options(profile: DeviceProfile) -> dict[str, Any]:
    """The Ray actor options that place one actor of ``profile``."""
    options: dict[str, Any] = {"num_cpus": profile.num_cpus, "num_gpus": profile.num_gpus,
                               "max_restarts": 0}
    if profile.resources:
        options["resources"] = {k: float(v) for k, v in profile.resources.items()}
    if profile.labels:
        options["label_selector"] = dict(profile.labels)
    if profile.accelerator_type:
        options["accelerator_type"] = profile.accelerator_type
    return options


def profile_demand(profile: DeviceProfile) -> dict[str, float]:
    """The node resources one actor of ``profile`` holds (accelerator type included)."""
    need = {"CPU": profile.num_cpus, "GPU": profile.num_gpus,
            **{k: float(v) for k, v in profile.resources.items()}}
    if profile.accelerator_type:
        need[ACCELERATOR_RESOURCE + profile.accelerator_type] = 0.001
    return {k: v for k, v in need.items() if v > 0}


def label_matches(selector: str, value: str | None) -> bool:
    """Whether a node label ``value`` (None: the node lacks it) meets a Ray label selector."""
    negate = selector.startswith("!")
    body = selector[1:] if negate else selector
    allowed = [v.strip() for v in body[3:-1].split(",")] if body.startswith("in(") else [body]
    return (value not in allowed) if negate else (value in allowed)


def actors_fitting(profile: DeviceProfile, node: dict[str, Any]) -> int:
    """How many actors of ``profile`` one node of ``ray.nodes()`` holds when it holds nothing
    else (0: it cannot host the profile: a resource, label or accelerator it lacks)."""
    if not node.get("Alive", False):
        return 0
    labels = node.get("Labels") or {}
    if any(not label_matches(sel, labels.get(key)) for key, sel in profile.labels.items()):
        return 0
    have = node.get("Resources") or {}
    fits = [math.floor(have.get(k, 0.0) / v + 1e-9) for k, v in profile_demand(profile).items()]
    return min(fits) if fits else 1 << 30


def check_hostable(profiles: list[DeviceProfile], sizes: list[int],
                   nodes: list[dict[str, Any]]) -> None:
    """ConfigError naming the profile when the live ``nodes`` cannot hold its pool of
    ``sizes[i]`` actors even with nothing else on them (Ray would wait for them forever)."""
    for i, (profile, size) in enumerate(zip(profiles, sizes, strict=True)):
        room = sum(actors_fitting(profile, node) for node in nodes)
        if size and room < size:
            raise ConfigError(f"engine.profiles[{i}]", profile.name, _unhostable(
                profile, size, room, nodes) + "; lower its actors or change its placement")


def _unhostable(profile: DeviceProfile, size: int, room: int,
                nodes: list[dict[str, Any]]) -> str:
    """Why the cluster cannot host ``size`` actors of ``profile`` (for the error)."""
    wants = ", ".join(f"{k}={v:g}" for k, v in profile_demand(profile).items())
    if profile.labels:
        wants += f", labels {profile.labels}"
    live = [n for n in nodes if n.get("Alive", False)]
    offered = "; ".join(
        f"{n.get('NodeID', '?')[:8]}: " + ", ".join(
            f"{k}={v:g}" for k, v in sorted((n.get("Resources") or {}).items())
            if not k.startswith("node:") and k not in ("memory", "object_store_memory"))
        for n in live)
    return (f"profile {profile.name!r} needs {size} actor(s) of ({wants}) but the "
            f"{len(live)} live node(s) of the Ray cluster can hold {room} ({offered})")


def _driver_node() -> str | None:
    """The id of the Ray node this process (the driver) is attached to."""
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def cluster_nodes() -> list[dict[str, Any]]:
    """The nodes of the Ray cluster as Ray reports them now (dead ones included)."""
    return ray.nodes()


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
        for name, amount in p.resources.items():  # a site's own resource bounds its pool
            k = min(k, math.floor(cluster.get(name, 0.0) / amount + 1e-9))
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
        self.node_of: dict[ActorKey, str] = {}  # the Ray node id each actor runs on
        self.lost_nodes: set[str] = set()  # Ray nodes found gone with an actor of this run
        self.replaced = 0
        self.registrations = shippable_registrations()
        # how long a replacement actor may wait for a node (RayGrid: the phase limit + grace)
        self.ready_timeout_s = READY_TIMEOUT_S
        # how long a replacement waits for a node that can host it to join (RayGrid: the
        # phase limit; 0: the run stops at once when no live node can host it)
        self.host_wait_s = 0.0
        check_hostable(profiles, self.sizes, cluster_nodes())
        self._await_first_actors([self._start(key) for key in self.nodes_of])

    def _await_first_actors(self, ready: list[Any]) -> None:
        """Wait for the first actors; ones still unplaced after ``READY_TIMEOUT_S`` (the
        nodes that could host them are held by other work) stop the run, naming them."""
        done, waiting = ray.wait(ready, num_returns=len(ready), timeout=READY_TIMEOUT_S)
        # an actor that failed to start raises its own error here
        started = dict(zip(done, ray.get(done), strict=True))
        for key, ref in zip(self.nodes_of, ready, strict=True):
            if ref in started:
                self.node_of[key] = started[ref]
        if waiting:
            keys = [key for key, ref in zip(self.nodes_of, ready, strict=True)
                    if ref in waiting]
            names = sorted({self.profiles[key[0]].name for key in keys})
            self.shutdown()
            raise ProfileUnhostable(
                f"{len(keys)} actor(s) of profile(s) {', '.join(map(repr, names))} found no "
                f"free node within {READY_TIMEOUT_S:g} s: the nodes that can host them are "
                "busy with other work (ray status shows what holds them)")

    def _start(self, key: ActorKey) -> Any:
        """Create the actor for ``key`` and register its nodes; returns the ready ref (it
        resolves to the Ray node id the actor runs on)."""
        profile = self.profiles[key[0]]
        actor = _RemoteActor.options(**actor_options(profile)).remote(
            self.client_app_ref, profile.name, self.timer, self.registrations, self.vectorize)
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
        self._start_replacement(key)
        if states:
            ray.get(self.actors[key].import_states.remote(states), timeout=READY_TIMEOUT_S)
        self.replaced += 1

    def _start_replacement(self, key: ActorKey, retry: bool = True) -> None:
        """Start ``key``'s new actor once a live node can host it (:meth:`_await_host`), and
        wait for it at most ``ready_timeout_s``; else :class:`ProfileUnhostable`, naming the
        profile."""
        profile = self.profiles[key[0]]
        self._await_host(profile)
        try:
            self.node_of[key] = ray.get(self._start(key), timeout=self.ready_timeout_s)
        except ray.exceptions.GetTimeoutError:
            ray.kill(self.actors[key], no_restart=True)
            raise ProfileUnhostable(
                f"a replacement actor of profile {profile.name!r} found no free node within "
                f"{self.ready_timeout_s:g} s (the nodes that can host it are busy); the run "
                "stops here: resume it from its last checkpoint (fedsim run --resume)") from None
        except ray.exceptions.RayActorError:
            # placed on a node that was dying before Ray declared it dead: once more, on the
            # nodes Ray now knows to be alive (or the clear stop above when none can host it)
            if retry:
                self._start_replacement(key, retry=False)
                return
            raise ProfileUnhostable(
                f"the replacement actor of profile {profile.name!r} died too, on a node that "
                "was going away; the run stops here: resume it from its last checkpoint "
                "(fedsim run --resume)") from None

    def _live_nodes(self) -> list[dict[str, Any]]:
        """Ray's nodes, those found gone with an actor counted dead even before Ray says so."""
        return [{**n, "Alive": False} if n.get("NodeID") in self.lost_nodes else n
                for n in cluster_nodes()]

    def _await_host(self, profile: DeviceProfile) -> None:
        """Return once a live node can host an actor of ``profile``. When none can, wait up
        to ``host_wait_s`` for one to join the cluster (re-reading Ray's node table every
        ``HOST_POLL_S``), saying so in the run log; then :class:`ProfileUnhostable`."""
        nodes = self._live_nodes()
        if any(actors_fitting(profile, node) for node in nodes):
            return
        if self.host_wait_s > 0:
            print(f"fedsim: no live node of the Ray cluster can host a replacement actor of "
                  f"profile {profile.name!r}; waiting up to {self.host_wait_s:g} s "
                  "(engine.phase_timeout_s) for one to join", file=sys.stderr, flush=True)
            end = time.monotonic() + self.host_wait_s
            while time.monotonic() < end:
                time.sleep(HOST_POLL_S)
                nodes = self._live_nodes()
                hosts = [n.get("NodeID", "?") for n in nodes if actors_fitting(profile, n)]
                if hosts:
                    print(f"fedsim: Ray node {hosts[0][:8]} can host profile "
                          f"{profile.name!r}: its replacement actor starts there",
                          file=sys.stderr, flush=True)
                    return
        waited = f" (waited {self.host_wait_s:g} s for one to join)" if self.host_wait_s else ""
        raise ProfileUnhostable(
            f"no live node of the Ray cluster can host a replacement actor of profile "
            f"{profile.name!r} any more{waited} ({_unhostable(profile, 1, 0, nodes)}); the "
            "run stops here: resume it from its last checkpoint (fedsim run --resume) once a "
            "node that can host the profile has joined")

    def lost_with_node(self, key: ActorKey, error: Exception) -> str | None:
        """The id of the Ray node that went away with actor ``key`` (its call failed with
        ``error``), or None when the actor died on a node that is still alive (its own
        process ended: a client killed it). A node is gone when Ray reports it dead, or when
        Ray could not reach the actor at all (``ActorUnavailableError``: the connection to
        its node broke and Ray's health checks have not yet declared the node dead), unless
        that node is the driver's own, which is alive as long as the driver is."""
        node = self.node_of.get(key)
        if node is None:
            return None
        alive = {n.get("NodeID") for n in cluster_nodes() if n.get("Alive", False)}
        unreachable = isinstance(error, ray.exceptions.ActorUnavailableError) \
            and node != _driver_node()
        if node not in alive or unreachable:
            self.lost_nodes.add(node)
            return node
        return None

    def export_states(self) -> dict[int, Any]:
        """Every live actor's nodes' states, by partition id. An actor that died since its
        last call (its node lost) is left out with a note: the next phase finds it dead,
        counts its clients as crashed and replaces it."""
        states: dict[int, Any] = {}
        refs = {key: actor.export_states.remote() for key, actor in self.actors.items()}
        for key, ref in refs.items():
            try:
                states.update(ray.get(ref, timeout=self.ready_timeout_s))
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as err:
                print(f"fedsim: the client states of actor {key} of profile "
                      f"{self.profiles[key[0]].name!r} are not in this checkpoint: "
                      f"{type(err).__name__}", file=sys.stderr, flush=True)
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
