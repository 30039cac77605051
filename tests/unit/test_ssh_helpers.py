"""The SSH session's pure helpers: host-key pins, echo/prompt stripping, masking, file names."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from luna_ha.handshake import (
    LEGACY_ALGORITHMS,
    HostKeyPin,
    SshTarget,
    client_transport,
    fingerprint_of,
    offered_algorithms,
)
from luna_ha.scp import _check_file_name
from luna_ha.sim.keys import make_ed25519_host_key
from luna_ha.ssh import _strip_echo_and_prompt


def test_pin_by_key_line_matches_only_that_key() -> None:
    key, other = make_ed25519_host_key(), make_ed25519_host_key()
    pin = HostKeyPin(key_line=f"{key.get_name()} {key.get_base64()}")
    assert pin.matches(key)
    assert not pin.matches(other)
    assert pin.algorithm == "ssh-ed25519"


def test_pin_by_fingerprint_matches_openssh_sha256_form() -> None:
    key = make_ed25519_host_key()
    fingerprint = fingerprint_of(key)
    assert fingerprint.startswith("SHA256:") and not fingerprint.endswith("=")
    assert HostKeyPin(fingerprint=fingerprint).matches(key)
    assert not HostKeyPin(fingerprint=fingerprint).matches(make_ed25519_host_key())


def test_a_pin_needs_exactly_one_form() -> None:
    with pytest.raises(ValueError):
        HostKeyPin()
    with pytest.raises(ValueError):
        HostKeyPin(key_line="ssh-ed25519 AAAA", fingerprint="SHA256:x")


def test_echo_and_prompt_are_stripped_from_command_output() -> None:
    raw = (
        "client list\r\n\r\nregistered client 1: web\r\n\r\n"
        "Command Result : 0 (Success)\r\n[luna-sa] lunash:>"
    )
    assert _strip_echo_and_prompt(raw) == "\nregistered client 1: web\n\nCommand Result : 0 (Success)"


@pytest.mark.parametrize("name", ["../etc/passwd", "-r", "a b.pem", "x;y", "", "a/b", "é.pem"])
def test_unsafe_file_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        _check_file_name(name)


def test_safe_file_names_pass() -> None:
    _check_file_name("web-3f2a1c-r0.pem")
    _check_file_name("server.pem")


def test_target_repr_never_shows_credentials() -> None:
    target = SshTarget(
        label="hsm-a",
        host="127.0.0.1",
        port=22,
        pin=HostKeyPin(fingerprint="SHA256:" + "A" * 43),
        username="manager",
        password="s3cret-pass",
        private_key="-----BEGIN KEY-----",
        passphrase="phrase-secret",
    )
    assert "s3cret-pass" not in repr(target)
    assert "BEGIN KEY" not in repr(target)
    assert "phrase-secret" not in repr(target)


WEAK = re.compile(r"sha1|md5|-cbc|3des|^ssh-rsa$")


def offered_by_a_client(*, legacy: bool, pinned: str | None = None) -> dict[str, tuple[str, ...]]:
    """What a client transport would put in its KEXINIT (a socket pair: nothing is sent)."""
    near, far = socket.socketpair()
    try:
        options = client_transport(near, legacy=legacy, pinned=pinned).get_security_options()
        return {
            "kex": options.kex,
            "keys": options.key_types,
            "ciphers": options.ciphers,
            "macs": options.digests,
        }
    finally:
        near.close()
        far.close()


def test_without_legacy_algorithms_the_client_offers_no_sha1_md5_cbc_or_ssh_rsa() -> None:
    offered = offered_by_a_client(legacy=False)

    assert all(offered.values())
    assert [name for names in offered.values() for name in names if WEAK.search(name)] == []
    assert {"hmac-md5", "hmac-md5-96", "hmac-sha1-96", "hmac-sha1"}.isdisjoint(offered["macs"])


def test_legacy_algorithms_add_exactly_the_documented_list_after_the_modern_ones() -> None:
    modern, legacy = offered_by_a_client(legacy=False), offered_by_a_client(legacy=True)

    for kind, names in legacy.items():
        assert names[: len(modern[kind])] == modern[kind]
        assert names[len(modern[kind]) :] == LEGACY_ALGORITHMS[kind]
    assert offered_algorithms(legacy=True) == legacy


def test_an_ssh_rsa_pin_asks_for_rsa_sha2_signatures_unless_legacy() -> None:
    assert offered_by_a_client(legacy=False, pinned="ssh-rsa")["keys"] == ("rsa-sha2-512", "rsa-sha2-256")
    assert offered_by_a_client(legacy=True, pinned="ssh-rsa")["keys"] == (
        "rsa-sha2-512",
        "rsa-sha2-256",
        "ssh-rsa",
    )


def test_the_readme_lists_every_algorithm_legacy_adds() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("`LegacyAlgorithms: true` adds") :][:1500]
    for names in LEGACY_ALGORITHMS.values():
        for name in names:
            assert f"`{name}`" in section
