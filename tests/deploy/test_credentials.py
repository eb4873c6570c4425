"""Credentials: a CA, a server certificate with the right names, OpenSSH P-384 node keys."""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedsim.deploy import credentials
from fedsim.deploy.errors import DeployError


def test_server_certificate_names_and_chain(tmp_path: Path) -> None:
    credentials.create_ca(tmp_path)
    creds = credentials.create_server_certificate(
        tmp_path, ["superlink.example.org", "10.0.0.5", "localhost", "127.0.0.1"])
    assert sorted(credentials.certificate_names(creds.server_cert)) == sorted(
        ["superlink.example.org", "localhost", "10.0.0.5", "127.0.0.1"])
    ca = x509.load_pem_x509_certificate(creds.ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(creds.server_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    # the pair loads into an SSL context (what uvicorn does with it)
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
        creds.server_cert, creds.server_key)
    for key in (creds.server_key, tmp_path / credentials.CA_KEY):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_node_keys_are_openssh_p384(tmp_path: Path) -> None:
    keys = credentials.create_node_keys(tmp_path, "site-a")
    private = serialization.load_ssh_private_key(keys.private_key.read_bytes(), None)
    public = serialization.load_ssh_public_key(keys.public_key.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp384r1"
    assert public.public_numbers() == private.public_key().public_numbers()
    assert keys.public_key.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert stat.S_IMODE(os.stat(keys.private_key).st_mode) == 0o600


def test_flower_register_accepts_the_public_key(tmp_path: Path) -> None:
    from flwr.cli.supernode.register import try_load_public_key

    keys = credentials.create_node_keys(tmp_path, "n")
    assert try_load_public_key(keys.public_key)


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="no CA"):
        credentials.create_server_certificate(tmp_path)
    credentials.create_ca(tmp_path)
    with pytest.raises(DeployError, match="already exists"):
        credentials.create_ca(tmp_path)
    with pytest.raises(DeployError, match="not a host name"):
        credentials.create_server_certificate(tmp_path, ["bad name!"])
    with pytest.raises(DeployError, match="file name"):
        credentials.create_node_keys(tmp_path, "../escape")
