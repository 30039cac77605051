"""The secret scan (``tests/secret_scan.py``) finds what it is for: a planted secret in each channel.

A scanner that looks at nothing passes every test; these plant a secret value or a private key in
every channel the functional suites are scanned through, in a window of the live plugin, and
expect each to be found and reported with the secret masked.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from moto import mock_aws

from luna_ha.errors import ApplianceError
from luna_ha.sim.server import SimulatedAppliance
from luna_ha_lab.cfn_receiver import ReceivedResponse
from tests.secret_scan import PLUGIN_NAME, SecretScan, _Tee

PASSWORD = "Planted-Pa55-" + str(time.time_ns())


def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def scan(request: pytest.FixtureRequest) -> SecretScan:
    plugin = request.config.pluginmanager.get_plugin(PLUGIN_NAME)
    assert plugin is not None, "tests/conftest.py does not load tests/secret_scan.py"
    return plugin.scan  # type: ignore[no-any-return]


def test_a_secret_is_found_in_every_channel_and_never_shown(
    scan: SecretScan, aws_env: None, tmp_path: Path
) -> None:
    key = private_key_pem()
    body_line = key.splitlines()[1]
    (tmp_path / "left-behind.txt").write_text(f"config: {PASSWORD}\n")
    with mock_aws(), scan.open("self-test", [tmp_path]) as window:
        boto3.client("secretsmanager").create_secret(
            Name="luna/admin", SecretString=json.dumps({"password": PASSWORD, "domain": "Dom-planted-0001"})
        )
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name="/luna-ha/p/clients/web/g/key", Value=key, Type="SecureString")
        logging.getLogger("luna_ha.selftest").debug("connecting with %s", PASSWORD)
        ssm.put_parameter(Name="/luna-ha/p/group", Value=f'{{"x": "{body_line}"}}', Type="String")
        ApplianceError("10.0.0.1", "hsm login", f"failed with {PASSWORD}")
        ReceivedResponse(
            "u",
            "FAILED",
            f"reason {PASSWORD}",
            "id",
            "stack",
            "req",
            "Group",
            False,
            10,
            0.0,
            body={"Reason": "x"},
        )
        out = io.StringIO()
        _Tee(out, scan, "luna-ha apply").write(f"-----BEGIN RSA PRIVATE KEY-----\n{body_line}\n")
    leaks = scan.scan(window)

    channels = {leak.channel for leak in leaks}
    assert channels >= {"log", "parameter", "exception", "output", "file"}, leaks
    assert any("secret luna/admin key 'password'" in leak.what for leak in leaks)
    assert any("the private key of /luna-ha/p/clients/web/g/key" in leak.what for leak in leaks)
    assert any(leak.what == "a private key (PEM)" for leak in leaks)
    assert not any(leak.channel == "parameter" and "SecureString" in leak.where for leak in leaks)
    for leak in leaks:
        assert PASSWORD not in str(leak) and body_line not in str(leak)
        assert "<SECRET>" in leak.excerpt or "<PEM>" in leak.excerpt


def test_a_response_with_a_secret_is_found(scan: SecretScan) -> None:
    scan.learn(PASSWORD, "planted")
    with scan.open("self-test") as window:
        ReceivedResponse(
            "u", "FAILED", "r", "id", "stack", "req", "Group", False, 10, 0.0, body={"Data": {"A": PASSWORD}}
        )
    assert [leak.channel for leak in scan.scan(window)] == ["response"]


def test_simulated_appliance_passwords_are_learned(scan: SecretScan) -> None:
    appliance = SimulatedAppliance(password="Manager-planted-" + str(time.time_ns()))
    assert appliance in scan.appliances
    assert scan.secrets[appliance.password].startswith("the manager password of simulated appliance")


def test_a_key_file_may_hold_its_key_but_no_password(scan: SecretScan, tmp_path: Path) -> None:
    key, password = private_key_pem(), "Key-file-planted-" + str(time.time_ns())
    scan.learn(key, "the private key of planted")
    scan.learn(password, "planted password")
    key_file = tmp_path / "web-abc123-r0Key.pem"
    key_file.write_text(key)
    key_file.chmod(0o600)
    assert scan.scan_files(tmp_path) == []

    key_file.write_text(key + password)
    assert [leak.what for leak in scan.scan_files(tmp_path)] == ["planted password"]
    key_file.chmod(0o644)  # readable by others: a key there is a leak
    assert {leak.what for leak in scan.scan_files(tmp_path)} >= {"a private key (PEM)", "planted password"}


def test_short_values_are_not_taken_for_secrets(scan: SecretScan) -> None:
    before = dict(scan.secrets)
    scan.learn_document(json.dumps({"password": "-force", "domain": "x"}), "short")
    scan.learn_document("not json", "noise")
    assert scan.secrets == before
