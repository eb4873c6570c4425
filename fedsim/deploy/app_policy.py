"""A SuperNode executes only fedsim's own app (finding 1 of #24).

Flower 1.41's answer, ``flower-supernode --trusted-entities``, verifies only FABs that come
with signatures from Flower Hub: the SuperLink fills a FAB's ``verifications`` only for Hub
apps (``control_handlers._get_remote_fab``); a FAB submitted with ``flwr run DIR`` has none,
and a SuperNode with trusted entities answers every such run with
``FAB_VERIFICATION_ERROR``. ``flwr build`` does not sign. So an operator cannot, with Flower
alone, trust a locally built app by key.

What fedsim enforces instead, on every SuperNode ``fedsim deploy supernode`` starts: it runs
``flower-supernode`` through this module, which switches Flower's own FAB check on and makes it
apply :func:`fab_allowed`: a FAB is run only if it holds nothing but ``pyproject.toml`` (plus
Flower's ``.info/`` manifest) and that file has the same TOML content (``flwr build``
reformats it) as the ``pyproject.toml`` of the fedsim installed on this node
(:data:`fedsim.deploy.experiment.APP_PYPROJECT`, whose components are the installed
``fedsim.deploy.server_app:app`` and ``clients.client_app:app``), or if its SHA-256 is one
the operator listed (``--trust-app-hash``). A FAB that fails gets Flower's
``FAB_VERIFICATION_ERROR`` reply; its code never runs. The experiment itself travels as run
config (data) and is checked by the client (``clients.setup.check_node_settings``).

Usage (what ``fedsim deploy supernode`` runs): ``python -m fedsim.deploy.app_policy
FLOWER-SUPERNODE-ARGS``; extra trusted hashes in ``FEDSIM_TRUSTED_APP_HASHES`` (comma list).
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tomllib
import zipfile

TRUSTED_HASHES_ENV = "FEDSIM_TRUSTED_APP_HASHES"
POLICY = "fedsim-app-policy"


def fab_allowed(content: bytes, trusted_hashes: frozenset[str] = frozenset()) -> bool:
    """Whether a FAB (zip bytes) is fedsim's own app, or one the operator trusts by hash."""
    from fedsim.deploy.experiment import APP_PYPROJECT

    if hashlib.sha256(content).hexdigest() in trusted_hashes:
        return True
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as fab:
            names = fab.namelist()
            code = [n for n in names if not n.startswith(".info/")]
            return code == ["pyproject.toml"] and \
                tomllib.loads(fab.read("pyproject.toml").decode()) == tomllib.loads(APP_PYPROJECT)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, UnicodeDecodeError):
        return False


def install(trusted_hashes: frozenset[str]) -> None:
    """Make Flower's SuperNode FAB verification apply :func:`fab_allowed` to every FAB."""
    from flwr.supercore.fab import Fab
    from flwr.supernode import start_client_internal as sci

    pull = sci._pull_and_store_message

    def pull_checked(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        get_fab = kwargs["get_fab"]

        def get_fab_for_policy(fab_hash: str, run_id: int) -> Fab:
            fab = get_fab(fab_hash, run_id)  # "valid_license" lets Flower's check proceed
            return Fab(fab.hash_str, fab.content, {**fab.verifications, "valid_license": POLICY})

        kwargs["get_fab"] = get_fab_for_policy
        kwargs["trusted_entities"] = {POLICY: POLICY}  # non-empty: Flower verifies every FAB
        return pull(*args, **kwargs)

    sci._pull_and_store_message = pull_checked
    sci._verify_fab = lambda fab, _entities: fab_allowed(fab.content, trusted_hashes)


def main() -> int:
    from flwr.supernode.cli import flower_supernode

    hashes = frozenset(h.strip().lower() for h in
                       os.environ.get(TRUSTED_HASHES_ENV, "").split(",") if h.strip())
    install(hashes)
    sys.argv[0] = "flower-supernode"
    return flower_supernode() or 0


if __name__ == "__main__":
    sys.exit(main())
