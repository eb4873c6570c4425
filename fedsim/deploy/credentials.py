"""TLS and SuperNode-authentication credentials for a deployment
(docs/design-notes.md#tls-and-supernode-authentication).

- a self-signed certificate authority (``ca.crt``, ``ca.key``),
- the SuperLink's server certificate (``server.pem``, ``server.key``) signed by it, whose
  subject alternative names must list every name or IP address clients dial,
- one EC P-384 key pair per SuperNode in OpenSSH format (``NAME``, ``NAME.pub``); the public
  half is registered with the SuperLink, the private half stays on the SuperNode's machine.

Private keys are written with mode 0600. Nothing is overwritten unless ``overwrite`` is set.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedsim.deploy.errors import DeployError

CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
DEFAULT_NAMES = ("localhost", "127.0.0.1")
VALID_DAYS = 365
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ServerCredentials:
    """Paths of the files a SuperLink (and anyone dialling it) needs."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class NodeKeys:
    """Paths of one SuperNode's key pair."""

    private_key: Path
    public_key: Path


def _write(path: Path, data: bytes, private: bool, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise DeployError(f"{path} already exists",
                          "keep it, pass --overwrite to replace it, or choose another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    if private:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
    else:
        path.write_bytes(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _subject_names(names: list[str] | tuple[str, ...]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    seen = set()
    for name in names:
        name = name.strip()
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9*][A-Za-z0-9.-]*", name):
                raise DeployError(f"{name!r} is not a host name or IP address",
                                  "pass names like superlink.example.org or 10.0.0.5") from None
            out.append(x509.DNSName(name))
    return out


def create_ca(out: Path, overwrite: bool = False, common_name: str = "fedsim CA") -> Path:
    """Write a self-signed CA (``ca.crt``, ``ca.key``) into ``out``; return the cert path."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA384()))
    _write(out / CA_KEY, _pem_key(key), private=True, overwrite=overwrite)
    _write(out / CA_CERT, cert.public_bytes(serialization.Encoding.PEM), private=False,
           overwrite=overwrite)
    return out / CA_CERT


def create_server_certificate(out: Path, names: list[str] | tuple[str, ...] = DEFAULT_NAMES,
                              overwrite: bool = False) -> ServerCredentials:
    """Write ``server.pem``/``server.key`` signed by the CA in ``out``.

    ``names``: every host name and IP address SuperNodes and the ``flwr`` CLI use to reach
    the SuperLink (they become the certificate's subject alternative names).
    """
    try:
        ca_key = serialization.load_pem_private_key((out / CA_KEY).read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((out / CA_CERT).read_bytes())
    except FileNotFoundError as err:
        raise DeployError(f"no CA in {out} ({err.filename} is missing)",
                          "create one first with `fedsim deploy certs --out DIR`") from None
    sans = _subject_names(list(names))
    if not sans:
        raise DeployError("the server certificate needs at least one name",
                          "pass --name with the SuperLink's host name or IP address")
    key = ec.generate_private_key(ec.SECP384R1())
    first = names[0] if names else "localhost"
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_cert.public_key()), critical=False)
            .sign(ca_key, hashes.SHA384()))
    _write(out / SERVER_KEY, _pem_key(key), private=True, overwrite=overwrite)
    _write(out / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM), private=False,
           overwrite=overwrite)
    return ServerCredentials(out / CA_CERT, out / SERVER_CERT, out / SERVER_KEY)


def create_node_keys(out: Path, name: str, overwrite: bool = False) -> NodeKeys:
    """Write one SuperNode's EC P-384 key pair (OpenSSH format) as ``out/name(.pub)``."""
    if not _NODE_NAME.match(name):
        raise DeployError(f"SuperNode name {name!r} is not usable as a file name",
                          "use letters, digits, '-', '_' and '.'")
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    _write(out / name, private, private=True, overwrite=overwrite)
    _write(out / f"{name}.pub", public + f" {name}\n".encode(), private=False,
           overwrite=overwrite)
    return NodeKeys(out / name, out / f"{name}.pub")


def certificate_names(cert_path: Path) -> list[str]:
    """The subject alternative names of a certificate (for messages and checks)."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in ext.get_values_for_type(x509.DNSName)] + \
           [str(v) for v in ext.get_values_for_type(x509.IPAddress)]
