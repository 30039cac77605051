"""Client credentials as the Luna client and the appliance expect them, and facts about server.pem."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from luna_ha.certs import (
    BACKDATE,
    CertificateError,
    ClientCredential,
    certificate_common_name,
    generate_client_credential,
    luna_fingerprint,
    server_certificate_info,
)
from luna_ha.errors import LunaHAError

NOW = datetime(2026, 3, 1, 12, 30, 15, 987654, tzinfo=UTC)
MD5_FINGERPRINT = re.compile(r"(?:[0-9A-F]{2}:){15}[0-9A-F]{2}")
SHA256_FINGERPRINT = re.compile(r"(?:[0-9A-F]{2}:){31}[0-9A-F]{2}")


@pytest.fixture(scope="module")
def credential() -> ClientCredential:
    return generate_client_credential("web-3f2a1c-r2", now=NOW)


def _certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _server_pem(common_name: str | None) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Thales")]
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    name = x509.Name(attributes)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


# --- generated client credentials ----------------------------------------------------------------------


def test_certificate_common_name_is_the_given_name(credential: ClientCredential) -> None:
    certificate = _certificate(credential.cert_pem)

    assert credential.common_name == "web-3f2a1c-r2"
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web-3f2a1c-r2"
    assert certificate_common_name(credential.cert_pem) == "web-3f2a1c-r2"


def test_certificate_is_self_signed_with_sha256(credential: ClientCredential) -> None:
    certificate = _certificate(credential.cert_pem)

    assert certificate.issuer == certificate.subject
    assert isinstance(certificate.signature_hash_algorithm, hashes.SHA256)
    certificate.verify_directly_issued_by(certificate)


def test_certificate_cannot_act_as_a_ca(credential: ClientCredential) -> None:
    constraints = _certificate(credential.cert_pem).extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is False


def test_key_is_unencrypted_pkcs1_rsa_2048_by_default(credential: ClientCredential) -> None:
    lines = credential.key_pem.strip().splitlines()

    assert lines[0] == "-----BEGIN RSA PRIVATE KEY-----"
    assert lines[-1] == "-----END RSA PRIVATE KEY-----"
    assert "ENCRYPTED" not in credential.key_pem
    assert _private_key(credential.key_pem).key_size == 2048


def test_key_belongs_to_the_certificate(credential: ClientCredential) -> None:
    public = _certificate(credential.cert_pem).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == _private_key(credential.key_pem).public_key().public_numbers()


def test_a_larger_key_size_is_honoured() -> None:
    credential = generate_client_credential("db", now=NOW, key_size=3072)
    assert _private_key(credential.key_pem).key_size == 3072


def test_validity_starts_a_day_early_and_lasts_valid_days(credential: ClientCredential) -> None:
    certificate = _certificate(credential.cert_pem)
    whole_second = NOW.replace(microsecond=0)

    assert certificate.not_valid_before_utc == whole_second - BACKDATE
    assert certificate.not_valid_after_utc == whole_second + timedelta(days=3650)
    assert credential.not_after == certificate.not_valid_after_utc


def test_now_in_another_time_zone_means_the_same_instant() -> None:
    tokyo = NOW.astimezone(timezone(timedelta(hours=9)))
    credential = generate_client_credential("web", now=tokyo, valid_days=30)
    assert credential.not_after == NOW.replace(microsecond=0) + timedelta(days=30)


def test_serial_numbers_are_random_and_positive() -> None:
    first = _certificate(generate_client_credential("web", now=NOW).cert_pem).serial_number
    second = _certificate(generate_client_credential("web", now=NOW).cert_pem).serial_number

    assert first != second
    assert first > 0 and second > 0


def test_private_key_never_appears_in_repr_or_str(credential: ClientCredential) -> None:
    key_body = "".join(credential.key_pem.strip().splitlines()[1:-1])
    for text in (repr(credential), str(credential), f"{credential}", f"{credential!r}"):
        assert "PRIVATE KEY" not in text
        assert key_body[:32] not in text
        assert "key_pem" not in text
    assert "web-3f2a1c-r2" in repr(credential)


def test_credentials_are_immutable(credential: ClientCredential) -> None:
    with pytest.raises(AttributeError):
        credential.key_pem = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"common_name": "web", "now": NOW.replace(tzinfo=None)}, "timezone-aware"),
        ({"common_name": "web", "now": NOW, "key_size": 1024}, "at least 2048"),
        ({"common_name": "web", "now": NOW, "valid_days": 0}, "at least 1"),
        ({"common_name": "", "now": NOW}, "common_name"),
        ({"common_name": "web; rm -rf /", "now": NOW}, "common_name"),
        ({"common_name": "-force", "now": NOW}, "common_name"),
        ({"common_name": "w" * 65, "now": NOW}, "common_name"),
        ({"common_name": "wéb", "now": NOW}, "common_name"),
    ],
)
def test_unsafe_arguments_are_refused(arguments: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        generate_client_credential(**arguments)  # type: ignore[arg-type]


# --- fingerprints and certificate facts ----------------------------------------------------------------


def test_luna_fingerprint_is_uppercase_colon_separated_md5_of_the_der(credential: ClientCredential) -> None:
    der = _certificate(credential.cert_pem).public_bytes(serialization.Encoding.DER)
    expected = ":".join(f"{b:02X}" for b in hashlib.md5(der, usedforsecurity=False).digest())

    fingerprint = luna_fingerprint(credential.cert_pem)

    assert MD5_FINGERPRINT.fullmatch(fingerprint)
    assert fingerprint == expected
    assert luna_fingerprint(credential.cert_pem.encode()) == fingerprint


def test_server_certificate_info_reports_cn_sha256_and_expiry() -> None:
    pem = _server_pem("hsm-a.example.com")
    der = _certificate(pem).public_bytes(serialization.Encoding.DER)

    common_name, fingerprint, not_after = server_certificate_info(pem)

    assert common_name == "hsm-a.example.com"
    assert SHA256_FINGERPRINT.fullmatch(fingerprint)
    assert fingerprint == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert not_after == NOW.replace(microsecond=0) + timedelta(days=30)
    assert not_after.tzinfo is not None


def test_server_certificate_without_cn_reports_an_empty_name() -> None:
    assert server_certificate_info(_server_pem(None)).common_name == ""


def test_certificate_common_name_requires_a_cn() -> None:
    with pytest.raises(CertificateError, match="no common name"):
        certificate_common_name(_server_pem(None))


def test_the_first_certificate_of_a_bundle_is_the_one_described() -> None:
    first, second = _server_pem("first"), _server_pem("second")
    assert certificate_common_name(first + second) == "first"


@pytest.mark.parametrize(
    "pem",
    [
        "",
        b"",
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIC7TCCAdWgAwIBAgIU",
        "\u00e9-----BEGIN CERTIFICATE-----\n",
    ],
    ids=["empty", "empty-bytes", "text", "not-der", "not-base64", "truncated", "non-ascii"],
)
@pytest.mark.parametrize("reader", [luna_fingerprint, certificate_common_name, server_certificate_info])
def test_invalid_pem_raises_a_certificate_error(pem: str | bytes, reader: object) -> None:
    with pytest.raises(CertificateError) as caught:
        reader(pem)  # type: ignore[operator]
    assert isinstance(caught.value, LunaHAError)
    assert "certificate" in str(caught.value).lower()


def test_a_private_key_is_not_mistaken_for_a_certificate(credential: ClientCredential) -> None:
    with pytest.raises(CertificateError) as caught:
        luna_fingerprint(credential.key_pem)
    assert "PRIVATE" not in str(caught.value)
    assert credential.key_pem[40:80] not in str(caught.value)
