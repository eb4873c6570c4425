"""The trust rules of ``fedsim deploy`` without starting Flower: which peers may use the
Control API, which app bundles a SuperNode runs, and which unsafe flags are refused."""

from __future__ import annotations

import hashlib
import io
import tomllib
import zipfile
from pathlib import Path

import pytest
import tomli_w

from fedsim.deploy.app_policy import fab_allowed
from fedsim.deploy.control_gate import allowed_peers, peer_allowed
from fedsim.deploy.errors import DeployError
from fedsim.deploy.experiment import APP_PYPROJECT
from fedsim.deploy.nodes import SuperLinkSpec, SuperNodeSpec


def _fab(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr(".info/CONTENT", "".join(f"{n},x,{len(t)}\n" for n, t in files.items()))
    return buf.getvalue()


def test_control_api_peers() -> None:
    local = allowed_peers([], "127.0.0.1")
    assert peer_allowed("127.0.0.1", local) and peer_allowed("::1", local)
    assert peer_allowed("::ffff:127.0.0.1", local)
    for outsider in ("127.0.0.2", "10.0.0.7", None, "not-an-ip"):
        assert not peer_allowed(outsider, local)
    on_host = allowed_peers(["10.0.0.7"], "10.0.0.5")
    assert peer_allowed("10.0.0.5", on_host) and peer_allowed("10.0.0.7", on_host)
    assert not peer_allowed("10.0.0.8", on_host)
    assert peer_allowed("203.0.113.9", allowed_peers(["any"], "0.0.0.0"))
    with pytest.raises(ValueError, match="--control-from 'lab-pc' is not an IP address"):
        allowed_peers(["lab-pc"], "0.0.0.0")


def test_supernode_runs_only_fedsims_app() -> None:
    own = _fab({"pyproject.toml": APP_PYPROJECT})
    assert fab_allowed(own)
    rebuilt = tomli_w.dumps(tomllib.loads(APP_PYPROJECT), multiline_strings=False)
    assert rebuilt != APP_PYPROJECT and fab_allowed(_fab({"pyproject.toml": rebuilt}))
    foreign = _fab({"pyproject.toml": APP_PYPROJECT, "clients/client_app.py": "import os"})
    assert not fab_allowed(foreign)  # fedsim's pyproject, but code that would shadow fedsim's
    assert not fab_allowed(_fab({"pyproject.toml": APP_PYPROJECT.replace(
        "clients.client_app:app", "evil:app")}))
    assert not fab_allowed(b"not a zip")
    assert fab_allowed(foreign, frozenset({hashlib.sha256(foreign).hexdigest()}))


def test_unsafe_flags_are_refused_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="--insecure is refused on 0.0.0.0"):
        SuperLinkSpec(home=tmp_path, host="0.0.0.0", insecure=True, auth=False).command()
    with pytest.raises(DeployError, match="--no-auth is refused on 10.0.0.5"):
        SuperLinkSpec(home=tmp_path, host="10.0.0.5", certs=tmp_path, auth=False).command()
    assert "--insecure" in SuperLinkSpec(home=tmp_path, insecure=True, auth=False).command()
    with pytest.raises(DeployError, match="--insecure is refused for a SuperLink at "
                                          "10.0.0.5:9092"):
        SuperNodeSpec(home=tmp_path, superlink="10.0.0.5:9092", insecure=True).command()
    assert "--insecure" in SuperNodeSpec(home=tmp_path, superlink="[::1]:9092",
                                         insecure=True).command()
    with pytest.raises(DeployError, match="--trust-app-hash 'abc' is not a SHA-256"):
        SuperNodeSpec(home=tmp_path, superlink="h:1", trusted_app_hashes=["abc"]).env()
