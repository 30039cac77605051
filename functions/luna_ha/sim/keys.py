"""SSH host keys of the simulator (made with ``cryptography``; paramiko cannot generate ed25519)
and their OpenSSH presentations."""

from __future__ import annotations

import base64
import hashlib
import io

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


def make_ed25519_host_key() -> paramiko.PKey:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))


def make_rsa_host_key() -> paramiko.PKey:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return paramiko.RSAKey.from_private_key(io.StringIO(pem.decode()))


def key_line(key: paramiko.PKey) -> str:
    """The OpenSSH public key line, e.g. ``ssh-ed25519 AAAA…``."""
    return f"{key.get_name()} {key.get_base64()}"


def key_fingerprint(key: paramiko.PKey) -> str:
    """``SHA256:<unpadded base64>`` as ``ssh-keygen -l`` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
