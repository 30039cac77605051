"""Reaching one appliance over SSH: the allow-listed algorithms, the pinned host key, authentication.

:func:`connect` returns an authenticated transport, or raises naming the appliance and the step. The
host key is checked before any credential is sent: an appliance that presents another key gets no
password and no key signature. What runs on the transport (the lunash shell, SCP) is elsewhere
(:mod:`luna_ha.ssh`, :mod:`luna_ha.scp`).
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from io import StringIO

import paramiko

from luna_ha.clock import Deadline
from luna_ha.errors import AuthenticationFailed, ConnectFailed, ConnectionLost, HostKeyMismatch
from luna_ha.spec import sha256_fingerprint

# What a session offers. An allow-list, not a deny-list: an algorithm a newer paramiko adds is not
# offered until it is listed here. SHA-1 and MD5 (in kex, host-key signatures and MACs), CBC and
# 3DES are never offered unless the appliance's `LegacyAlgorithms` is true.
MODERN_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "kex": (
        "curve25519-sha256@libssh.org",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group14-sha256",
    ),
    "keys": (
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "rsa-sha2-512",
        "rsa-sha2-256",
    ),
    "ciphers": (
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
    ),
    "macs": (
        "hmac-sha2-256",
        "hmac-sha2-512",
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
    ),
}

# What `LegacyAlgorithms: true` adds, for old Luna SA 5.x/6.x sshd (README lists the same).
# "keys" are host-key algorithms; ssh-rsa is also allowed for the manager's own RSA key then.
LEGACY_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "kex": (
        "diffie-hellman-group-exchange-sha1",
        "diffie-hellman-group14-sha1",
        "diffie-hellman-group1-sha1",
    ),
    "keys": ("ssh-rsa",),
    "ciphers": ("aes128-cbc", "aes192-cbc", "aes256-cbc", "3des-cbc"),
    "macs": ("hmac-sha1", "hmac-sha1-96", "hmac-md5", "hmac-md5-96"),
}


def offered_algorithms(legacy: bool) -> dict[str, tuple[str, ...]]:
    """The algorithms a session may offer, per kind; legacy ones after the modern ones."""
    return {
        kind: modern + (LEGACY_ALGORITHMS[kind] if legacy else ())
        for kind, modern in MODERN_ALGORITHMS.items()
    }


# Host-key signature algorithms that can prove a key of each type.
_SIGNATURES: dict[str, tuple[str, ...]] = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


@dataclass(frozen=True)
class HostKeyPin:
    """The appliance's expected host key: a full OpenSSH public key line or a SHA256 fingerprint."""

    key_line: str | None = None
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        if (self.key_line is None) == (self.fingerprint is None):
            raise ValueError("a host key pin needs exactly one of key_line or fingerprint")

    @property
    def algorithm(self) -> str | None:
        return self.key_line.split()[0] if self.key_line else None

    def matches(self, key: paramiko.PKey) -> bool:
        if self.key_line is not None:
            parts = self.key_line.split()
            return parts[0] == key.get_name() and base64.b64decode(parts[1]) == key.asbytes()
        return fingerprint_of(key) == self.fingerprint


def fingerprint_of(key: paramiko.PKey) -> str:
    """The OpenSSH form of a key's SHA256 fingerprint (``SHA256:`` + unpadded base64)."""
    return sha256_fingerprint(key.asbytes())


@dataclass(frozen=True)
class SshTarget:
    """Where and how to reach one appliance. Secret fields never show in a repr."""

    label: str  # the Host as the user wrote it; names the appliance in every message
    host: str
    port: int
    pin: HostKeyPin
    username: str
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
    legacy_algorithms: bool = False
    connect_timeout: float = 10.0


def connect(target: SshTarget, deadline: Deadline, step: str = "connect") -> paramiko.Transport:
    """An authenticated transport to ``target``, its host key checked against the pin first."""
    t = target
    timeout = deadline.cap(t.connect_timeout)
    try:
        sock = socket.create_connection((t.host, t.port), timeout=timeout)
    except OSError as exc:
        raise ConnectFailed(
            t.label, step, f"cannot reach {t.host}:{t.port} ({exc.strerror or exc})"
        ) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = client_transport(sock, legacy=t.legacy_algorithms, pinned=t.pin.algorithm)
    try:
        transport.start_client(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise ConnectFailed(t.label, step, f"SSH handshake with {t.host}:{t.port} failed ({exc})") from None
    key = transport.get_remote_server_key()
    if not t.pin.matches(key):
        transport.close()
        raise HostKeyMismatch(
            t.label,
            step,
            f"the appliance presented {key.get_name()} {fingerprint_of(key)}, which is not the pinned "
            "host key; no credentials were sent. Check HostKey/HostKeyFingerprint.",
        )
    _authenticate(transport, t, step)
    return transport


def _authenticate(transport: paramiko.Transport, t: SshTarget, step: str) -> None:
    """Log in as ``t.username`` (key or password); the transport is closed when it fails."""
    if not transport.is_active():
        transport.close()
        raise ConnectionLost(t.label, step, "the SSH connection is not open")
    try:
        if t.private_key:
            pkey = _load_private_key(t.private_key, t.passphrase)
            if pkey is None:
                transport.close()
                raise AuthenticationFailed(
                    t.label,
                    step,
                    "the private key of the manager secret cannot be loaded "
                    "(wrong passphrase, or not an OpenSSH/PEM ed25519, ECDSA or RSA key)",
                )
            transport.auth_publickey(t.username, pkey)
        else:
            transport.auth_password(t.username, t.password or "")
    except paramiko.AuthenticationException:
        transport.close()
        raise AuthenticationFailed(
            t.label, step, f"the appliance rejected the credentials of user '{t.username}'"
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise ConnectFailed(
            t.label, step, f"authentication did not complete ({type(exc).__name__})"
        ) from None


def client_transport(sock: socket.socket, *, legacy: bool, pinned: str | None) -> paramiko.Transport:
    """A client transport on ``sock`` that offers only :func:`offered_algorithms` (not started)."""
    allowed = offered_algorithms(legacy)
    # Client public-key algorithms are not in the security options: ssh-rsa (SHA-1) is disabled here.
    transport = paramiko.Transport(sock, disabled_algorithms={} if legacy else {"pubkeys": ["ssh-rsa"]})
    options = transport.get_security_options()
    options.kex = _allowed(allowed["kex"], options.kex)
    options.key_types = _allowed(allowed["keys"], options.key_types)
    options.ciphers = _allowed(allowed["ciphers"], options.ciphers)
    options.digests = _allowed(allowed["macs"], options.digests)
    if pinned is not None:
        # Ask for the pinned key's type only, so an appliance with several host keys presents
        # the pinned one. An `ssh-rsa` key is signed with rsa-sha2-* unless legacy is enabled.
        wanted = _allowed(_SIGNATURES.get(pinned, (pinned,)), options.key_types)
        if wanted:
            options.key_types = wanted
    return transport


def _allowed(preferred: Sequence[str], available: Collection[str]) -> tuple[str, ...]:
    """``preferred``, in its order, without what paramiko does not have."""
    return tuple(name for name in preferred if name in available)


def _load_private_key(text: str, passphrase: str | None) -> paramiko.PKey | None:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            key: paramiko.PKey = cls.from_private_key(StringIO(text), password=passphrase)
            return key
        except (paramiko.SSHException, ValueError):
            continue
    return None
