"""A two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``): the head has
custom resource ``siteA``, the second node ``siteB``. Its temp folder (and so its
``ray_current_cluster`` address file) is private, so no other Ray on the machine joins it by
accident, and it is always shut down, even when a test fails. Its nodes use this machine's own
address, as ``ray start`` does: Ray 2.55 turns a driver's ``127.0.0.1`` into that address
(``resolve_ip_for_localhost``), and a driver then finds no raylet bound to loopback."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

HEALTH_CHECKS = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                 "health_check_failure_threshold": 4}
"""A dead node is declared dead within about 2 s (Ray's defaults: about 15 s)."""


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[tuple]:
    """``(cluster, second_node)``; the driver joins it with ``engine.ray_address``."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    root = tempfile.mkdtemp(prefix="fsc-", dir="/tmp")  # short: socket paths have a limit
    temp_dir = os.path.join(root, "ray")
    os.makedirs(temp_dir)
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = root  # Cluster writes its address file to $RAY_TMPDIR/ray
    cluster = Cluster()  # the head joins inside the try: it is shut down whatever happens
    try:
        cluster.add_node(num_cpus=1, resources={"siteA": 1},
                         temp_dir=temp_dir, include_dashboard=False,
                         _system_config=HEALTH_CHECKS)
        second = cluster.add_node(num_cpus=1, resources={"siteB": 1},
                                  temp_dir=temp_dir)
        cluster.wait_for_nodes()
        yield cluster, second
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        for _ in range(3):  # a process that was just stopped may still add a log file
            shutil.rmtree(root, ignore_errors=True)
            if not os.path.exists(root):
                break
