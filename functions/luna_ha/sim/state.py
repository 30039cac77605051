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
import hmac
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
    """What differs between appliance software generations.

    5.x and 6.x differ in output only. 7.x (``family == 7``) also changes commands: partitions are
    created uninitialized and each has its own Partition SO and Crypto Officer (see ``Partition``).
    """

    name: str
    software_version: str
    firmware: str
    banner: str
    model_label: str
    model: str
    #: 5.3+ prints `Audit Role Initialized`/`Remote Login Initialized` in `hsm show` and
    #: `HTL Required`/`OTT Expiry` in `client show`.
    extended_fields: bool
    #: 5 or 6 (Luna SA: `partition create` initializes) or 7 (Luna Network HSM 7).
    family: int = 5
    #: lunash has `partition init` and `partition init co` (7.8.1 on; earlier 7.x: REST or lunacm).
    lunash_partition_init: bool = False


def _banner(version: str, years: str) -> str:
    return f"Luna SA {version} Command Line Shell - Copyright (c) {years} SafeNet, Inc. All rights reserved."


def _banner7(version: str, year: str, company: str) -> str:
    shell = f"Luna Network HSM Command Line Shell v{version}."
    return f"{shell} Copyright (c) {year} {company}. All rights reserved."


DIALECTS: dict[str, Dialect] = {
    "5.1": Dialect(
        "5.1", "5.1.0-25", "6.2.1", _banner("5.1.0", "2001-2011"), "Hardware Model:", "Luna K6", False
    ),
    "5.4": Dialect(
        "5.4", "5.4.9-2", "6.10.9", _banner("5.4.9", "2001-2015"), "Hardware Model:", "Luna K6", True
    ),
    "6.2": Dialect("6.2", "6.2.2-5", "6.24.0", _banner("6.2.2", "2001-2016"), "HSM Model:", "K6 Base", True),
    "7.2": Dialect(
        "7.2",
        "7.2.0-220",
        "7.0.3",
        _banner7("7.2.0-220", "2018", "SafeNet"),
        "HSM Model:",
        "Luna K7",
        True,
        family=7,
    ),
    "7.8": Dialect(
        "7.8",
        "7.8.5-20",
        "7.8.4",
        _banner7("7.8.5-20", "2024", "Thales Group"),
        "HSM Model:",
        "Luna K7",
        True,
        family=7,
        lunash_partition_init=True,
    ),
}
#: Names accepted for ``--dialect`` besides the keys of ``DIALECTS``.
DIALECT_ALIASES: dict[str, str] = {"7.x": "7.8"}
DEFAULT_DIALECT = "5.4"
#: Failed logins a 7.x partition role (Partition SO, Crypto Officer) allows before it locks.
ROLE_LOGIN_ATTEMPTS = 10


@dataclass
class Role:
    """A 7.x partition role (the Crypto Officer): uninitialized until a password is set."""

    password: str | None = None
    #: HSM policy 21 (on by default): a password set by initialization expires at first use.
    pin_to_be_changed: bool = False
    attempts_left: int = ROLE_LOGIN_ATTEMPTS

    @property
    def initialized(self) -> bool:
        return self.password is not None

    @property
    def locked_out(self) -> bool:
        return self.attempts_left <= 0


@dataclass
class Partition:
    """A partition. 5.x/6.x: created initialized, ``password`` is what clients log in with.

    7.x: created uninitialized (``initialized`` False, ``password``/``domain`` empty); ``partition
    init`` sets ``label``, the Partition SO password (``so_password``) and the cloning ``domain``;
    then the Crypto Officer (``co``) gets its password, which is what clients log in with.
    """

    name: str
    serial: str
    password: str
    domain: str
    objects: int = 0
    #: 7.x: the partition has its own Partition SO and Crypto Officer.
    has_so: bool = False
    initialized: bool = True
    label: str = ""
    so_password: str | None = None
    so_attempts_left: int = ROLE_LOGIN_ATTEMPTS
    co: Role = field(default_factory=Role)

    @property
    def used_bytes(self) -> int:
        return self.objects * OBJECT_SIZE_BYTES

    @property
    def version(self) -> int:
        """The `Partition Version` 7.x prints: 0 until initialized, then 1."""
        return 1 if self.initialized else 0

    @property
    def client_password(self) -> str | None:
        """The password a client logs in to this partition with (7.x: the Crypto Officer's)."""
        return self.co.password if self.has_so else self.password


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
    #: HSM policy 21 (7.x): a Crypto Officer password set by initialization must be changed first.
    policy21: bool = True
    #: NTLS serves a regenerated certificate or a new binding only after `service restart ntls` (7.x).
    ntls_restart_pending: bool = False
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
        dialect = DIALECT_ALIASES.get(dialect, dialect)
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

    def add_uninitialized_partition(self, name: str) -> Partition:
        """7.x `partition create`: a partition without label, Partition SO, domain or Crypto Officer,
        with a 13-digit serial that is not prefixed by the HSM serial."""
        with self.lock:
            serial = _partition_serial_7(self.serial, self.next_partition_number)
            self.next_partition_number += 1
            partition = Partition(name, serial, "", "", has_so=True, initialized=False)
            self.partitions[name] = partition
            return partition

    def init_partition(self, name: str, label: str, so_password: str, domain: str) -> None:
        """7.x partition initialization. On an initialized partition this ERASES it (its objects and
        its Crypto Officer), as REST and lunacm do; lunash refuses before calling this."""
        with self.lock:
            partition = self.partitions[name]
            partition.initialized = True
            partition.label, partition.so_password, partition.domain = label, so_password, domain
            partition.so_attempts_left = ROLE_LOGIN_ATTEMPTS
            partition.objects = 0
            partition.co = Role()

    def verify_partition_so(self, name: str, password: str) -> bool:
        """A Partition SO password check (7.x): True resets the attempts; a wrong ``password`` uses
        one. A locked-out Partition SO (no attempts left) or an uninitialized partition is False
        without using one."""
        with self.lock:
            partition = self.partitions[name]
            if partition.so_password is None or partition.so_attempts_left <= 0:
                return False
            if not hmac.compare_digest(password.encode(), partition.so_password.encode()):
                partition.so_attempts_left -= 1
                return False
            partition.so_attempts_left = ROLE_LOGIN_ATTEMPTS
            return True

    def init_co(self, name: str, password: str) -> None:
        """Set the Crypto Officer's password; under policy 21 it must be changed at first use."""
        with self.lock:
            partition = self.partitions[name]
            partition.co = Role(password=password, pin_to_be_changed=self.policy21)

    def change_co_password(self, name: str, old: str, new: str) -> bool:
        """The Crypto Officer's own password change; False (and one attempt used) for a wrong ``old``."""
        with self.lock:
            co = self.partitions[name].co
            if co.password is None or co.locked_out:
                return False
            if old != co.password:
                co.attempts_left -= 1
                return False
            co.password, co.pin_to_be_changed, co.attempts_left = new, False, ROLE_LOGIN_ATTEMPTS
            return True

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
    def family(self) -> int:
        return self.dialect.family

    @property
    def initialized(self) -> bool:
        return not self.zeroized

    @property
    def space_in_use(self) -> int:
        return PARTITION_SIZE_BYTES * len(self.partitions)


def _partition_serial_7(hsm_serial: str, number: int) -> str:
    """A 13-digit 7.x partition serial, stable for (HSM, number), never starting with the HSM serial."""
    salt = 0
    while True:
        digest = hashlib.sha256(f"{hsm_serial}/{number}/{salt}".encode()).digest()
        serial = str(1_000_000_000_000 + int.from_bytes(digest[:8], "big") % 9_000_000_000_000)
        if not serial.startswith(hsm_serial):
            return serial
        salt += 1
