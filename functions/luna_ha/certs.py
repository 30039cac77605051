"""Client certificates and keys for NTLS registration, and facts about server certificates (pure).

A Luna client authenticates to the appliance's NTLS service with a self-signed certificate that the
appliance holds as the client's registration (``client register``). What ``vtl createCert`` would make,
made here instead (REFERENCE §10.2): RSA, a self-signed X.509 certificate whose CN is the name used for
``-hostname``, and the private key as unencrypted PKCS#1 (``BEGIN RSA PRIVATE KEY``), the form the
Luna client reads. Time is an argument: nothing here reads the clock.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from luna_ha.errors import LunaHAError

MIN_KEY_SIZE: Final = 2048
DEFAULT_VALID_DAYS: Final = 3650
#: ``notBefore`` is set this far before ``now``, so an appliance whose clock runs behind still accepts it.
BACKDATE: Final = timedelta(days=1)

# The CN becomes ``client register -hostname`` and the certificate file name on the appliance.
_COMMON_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)


class CertificateError(LunaHAError):
    """A certificate (PEM) cannot be read, or lacks something it must have."""


@dataclass(frozen=True)
class ClientCredential:
    """A client's certificate and private key (both PEM). The key never shows in ``repr``."""

    common_name: str
    cert_pem: str
    key_pem: str = field(repr=False)
    not_after: datetime


class ServerCertificateInfo(NamedTuple):
    """What is worth knowing about an appliance's ``server.pem``."""

    common_name: str
    """The subject's CN, or ``""`` when the subject has none."""
    sha256_fingerprint: str
    """SHA-256 of the DER, uppercase colon-separated hex (``openssl x509 -fingerprint -sha256``)."""
    not_after: datetime
    """End of validity, timezone-aware UTC."""


def generate_client_credential(
    common_name: str,
    *,
    now: datetime,
    valid_days: int = DEFAULT_VALID_DAYS,
    key_size: int = MIN_KEY_SIZE,
) -> ClientCredential:
    """Make a new RSA key and a self-signed certificate for it with CN ``common_name``.

    The certificate: X.509 v3, random serial, SHA-256 signature, valid from ``now`` minus
    :data:`BACKDATE` to ``now`` plus ``valid_days``, ``BasicConstraints CA:FALSE`` (a client key can
    never vouch for another certificate) and a subject key identifier; no key usage restrictions.
    ``now`` must be timezone-aware.
    """
    if not isinstance(common_name, str) or _COMMON_NAME.fullmatch(common_name) is None:
        raise ValueError(
            "common_name must be 1-64 ASCII letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    if key_size < MIN_KEY_SIZE:
        raise ValueError(f"key_size must be at least {MIN_KEY_SIZE} bits, got {key_size}")
    if valid_days < 1:
        raise ValueError(f"valid_days must be at least 1, got {valid_days}")

    start = now.astimezone(UTC).replace(microsecond=0)
    not_before = start - BACKDATE
    not_after = start + timedelta(days=valid_days)

    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1: BEGIN RSA PRIVATE KEY
        serialization.NoEncryption(),
    ).decode("ascii")
    return ClientCredential(
        common_name=common_name,
        cert_pem=cert_pem,
        key_pem=key_pem,
        not_after=certificate.not_valid_after_utc,
    )


def credential_matches(cert_pem: str, key_pem: str) -> bool:
    """Whether ``key_pem`` is the private key of ``cert_pem``'s public key (False for anything that
    does not load). A pair written half by one run and half by another fails here."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return certificate.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


def luna_fingerprint(cert_pem: str | bytes) -> str:
    """The fingerprint lunash 5.x prints for ``client fingerprint``: MD5 of the DER, ``AB:CD:...``.

    MD5 here is a format to compare against, not a security decision.
    """
    der = load_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return _colon_hex(hashlib.md5(der, usedforsecurity=False).digest())


def certificate_common_name(pem: str | bytes) -> str:
    """The subject CN of the (first) certificate in ``pem``; :class:`CertificateError` if it has none."""
    common_name = _common_name(load_certificate(pem))
    if common_name is None:
        raise CertificateError("the certificate's subject has no common name (CN)")
    return common_name


def server_certificate_info(pem: str | bytes) -> ServerCertificateInfo:
    """CN, SHA-256 fingerprint and end of validity of a fetched ``server.pem``."""
    certificate = load_certificate(pem)
    der = certificate.public_bytes(serialization.Encoding.DER)
    return ServerCertificateInfo(
        common_name=_common_name(certificate) or "",
        sha256_fingerprint=_colon_hex(hashlib.sha256(der).digest()),
        not_after=certificate.not_valid_after_utc,
    )


def load_certificate(pem: str | bytes) -> x509.Certificate:
    """The first certificate in a PEM text; :class:`CertificateError` if there is none or it is corrupt."""
    if isinstance(pem, str):
        data = pem.encode("utf-8", errors="replace")
    elif isinstance(pem, bytes | bytearray):
        data = bytes(pem)
    else:
        raise CertificateError(f"expected PEM text, got {type(pem).__name__}")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertificateError("not a PEM certificate: no '-----BEGIN CERTIFICATE-----' line")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertificateError(
            "the PEM certificate is damaged: its body is not valid base64 of an X.509 certificate"
        ) from None


def _common_name(certificate: x509.Certificate) -> str | None:
    attributes = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        return None
    value = attributes[0].value
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{byte:02X}" for byte in digest)
