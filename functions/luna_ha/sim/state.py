"""The persistent state of one simulated Luna SA appliance: HSM, partitions, clients, home directory.

Everything here is plain data plus the few transitions that touch several parts at once
(initialize, zeroize, regenerate the server certificate). Commands live in ``commands.py``; the
shell dialogue in ``appliance.py``. One ``threading.RLock`` guards the whole state because several
SSH sessions may run commands against the same appliance at once.

Choices where ``luna/REFERENCE.md`` is silent:
* A factory-fresh appliance is shown exactly like a zeroized one (label ``no label``,
  ``HSM IS ZEROIZED !!!!``); ``server.pem`` exists from the start (the appliance makes one at
  first boot). The server certificate is self-signed RSA 2048 (``key_type="ec"`` makes a P-256 key
  for faster tests), CN = the appliance hostname, valid 10 years.
* Partition serials are the HSM serial plus a 3-digit counter that starts at ``001`` and is never
  reused, not even after zeroization. Every partition reports 102,400 bytes total, used = 0 while
  it holds no objects, 2,048 bytes per object otherwise. HSM storage is 2,097,152 bytes; space in
  use is the sum of the partitions' totals. At most 20 partitions (the licence count).
* Zeroization (3 failed HSM Admin logins) removes the partitions, the admin password and the
  cloning domain, and drops every client's assignment to a removed partition; client registrations,
  the home directory, the NTLS binding and the server certificate are appliance configuration and
  survive. Initializing or zeroizing ends the HSM Admin login of every shell session.
"""

from __future__ import annotations

import datetime
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ATTEMPTS_BEFORE_ZEROIZATION = 3
HSM_STORAGE_BYTES = 2_097_152
PARTITION_SIZE_BYTES = 102_400
OBJECT_SIZE_BYTES = 2_048
MAX_PARTITIONS = 20
NO_LABEL = "no label"
SERVER_CERT_FILE = "server.pem"

KeyType = Literal["rsa", "ec"]


@dataclass(frozen=True)
class Dialect:
    """What differs between appliance software generations (output only; commands are the same)."""

    name: str
    software_version: str
    firmware: str
    banner: str
    model_label: str
    model: str
    #: 5.3+ prints `Audit Role Initialized`/`Remote Login Initialized` in `hsm show` and
    #: `HTL Required`/`OTT Expiry` in `client show`.
    extended_fields: bool


def _banner(version: str, years: str) -> str:
    return f"Luna SA {version} Command Line Shell - Copyright (c) {years} SafeNet, Inc. All rights reserved."


DIALECTS: dict[str, Dialect] = {
    "5.1": Dialect(
        "5.1", "5.1.0-25", "6.2.1", _banner("5.1.0", "2001-2011"), "Hardware Model:", "Luna K6", False
    ),
    "5.4": Dialect(
        "5.4", "5.4.9-2", "6.10.9", _banner("5.4.9", "2001-2015"), "Hardware Model:", "Luna K6", True
    ),
    "6.2": Dialect("6.2", "6.2.2-5", "6.24.0", _banner("6.2.2", "2001-2016"), "HSM Model:", "K6 Base", True),
}
DEFAULT_DIALECT = "5.4"


@dataclass
class Partition:
    name: str
    serial: str
    password: str
    domain: str
    objects: int = 0

    @property
    def used_bytes(self) -> int:
        return self.objects * OBJECT_SIZE_BYTES


@dataclass
class RegisteredClient:
    name: str
    #: The `-hostname` or `-ip` value given at registration.
    hostname: str
    by_ip: bool
    cert_der: bytes
    #: Partition names, in assignment order.
    partitions: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """MD5 of the certificate's DER as upper-case colon-hex (the 5.x `client fingerprint`)."""
        digest = hashlib.md5(self.cert_der, usedforsecurity=False).hexdigest().upper()
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@dataclass
class ServerCertificate:
    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def make_server_certificate(hostname: str, key_type: KeyType = "rsa") -> ServerCertificate:
    """A self-signed NTLS server certificate and its private key (PEM), CN = the hostname."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Chrysalis-ITS"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Luna SA simulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, hostname),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return ServerCertificate(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


@dataclass
class ApplianceModel:
    """One appliance. Hold ``lock`` while reading or changing more than one field."""

    hostname: str
    serial: str
    server_cert: ServerCertificate
    dialect: Dialect = DIALECTS[DEFAULT_DIALECT]
    key_type: KeyType = "rsa"
    label: str = NO_LABEL
    zeroized: bool = True
    admin_password: str | None = None
    domain: str | None = None
    attempts_left: int = ATTEMPTS_BEFORE_ZEROIZATION
    partitions: dict[str, Partition] = field(default_factory=dict)
    clients: dict[str, RegisteredClient] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    ntls_bound: bool = False
    ntls_device: str | None = None
    max_partitions: int = MAX_PARTITIONS
    next_partition_number: int = 1
    #: Bumped by init and zeroization; a session's HSM Admin login is valid for one generation.
    generation: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.files.setdefault(SERVER_CERT_FILE, self.server_cert.cert_pem)

    @classmethod
    def create(
        cls,
        *,
        hostname: str,
        serial: str,
        dialect: str = DEFAULT_DIALECT,
        key_type: KeyType = "rsa",
        initialized: bool = False,
        label: str | None = None,
        admin_password: str | None = None,
        domain: str | None = None,
    ) -> ApplianceModel:
        """A factory-fresh (zeroized) appliance, or one already through init + regenCert + ntls bind."""
        if not (len(serial) == 6 and serial.isdigit()):
            raise ValueError("the HSM serial is 6 digits")
        if dialect not in DIALECTS:
            raise ValueError(f"unknown appliance software {dialect!r} (one of {', '.join(DIALECTS)})")
        state = cls(
            hostname=hostname,
            serial=serial,
            server_cert=make_server_certificate(hostname, key_type),
            dialect=DIALECTS[dialect],
            key_type=key_type,
        )
        if initialized:
            if not admin_password or not domain:
                raise ValueError("an initialized appliance needs an admin password and a cloning domain")
            state.initialize(label or hostname, admin_password, domain)
            state.ntls_bound, state.ntls_device = True, "eth0"
        return state

    # -- transitions ------------------------------------------------------------------------------

    def initialize(self, label: str, admin_password: str, domain: str) -> None:
        with self.lock:
            self._drop_partitions()
            self.label, self.admin_password, self.domain = label, admin_password, domain
            self.zeroized = False
            self.attempts_left = ATTEMPTS_BEFORE_ZEROIZATION
            self.generation += 1

    def zeroize(self) -> None:
        with self.lock:
            self._drop_partitions()
            self.label, self.admin_password, self.domain = NO_LABEL, None, None
            self.zeroized = True
            self.attempts_left = ATTEMPTS_BEFORE_ZEROIZATION
            self.generation += 1

    def regenerate_server_cert(self) -> None:
        with self.lock:
            self.server_cert = make_server_certificate(self.hostname, self.key_type)
            self.files[SERVER_CERT_FILE] = self.server_cert.cert_pem

    def add_partition(self, name: str, password: str, domain: str) -> Partition:
        with self.lock:
            partition = Partition(name, f"{self.serial}{self.next_partition_number:03d}", password, domain)
            self.next_partition_number += 1
            self.partitions[name] = partition
            return partition

    def remove_partition(self, name: str) -> None:
        with self.lock:
            del self.partitions[name]
            for client in self.clients.values():
                if name in client.partitions:
                    client.partitions.remove(name)

    def _drop_partitions(self) -> None:
        for name in list(self.partitions):
            self.remove_partition(name)

    # -- derived values ----------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return not self.zeroized

    @property
    def space_in_use(self) -> int:
        return PARTITION_SIZE_BYTES * len(self.partitions)
