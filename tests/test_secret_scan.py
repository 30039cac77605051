"""The secret scan (``tests/secret_scan.py``) finds what it is for: a planted secret in each channel.

A scanner that looks at nothing passes every test; these plant a secret value or a private key in
every channel the functional suites are scanned through, in a window of the live plugin, and
expect each to be found and reported with the secret masked.
"""

from __future__ import annotations

import base64
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

from luna_ha.appliance import GroupSecrets
from luna_ha.errors import ApplianceError, RestRequestFailed
from luna_ha.rest import LunaRest
from luna_ha.sim.faults import REST_CO_INIT
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


def test_luna7_secrets_are_learned_and_one_leaked_through_rest_traffic_is_found(
    scan: SecretScan, aws_env: None
) -> None:
    """The Partition SO password (admin secret), the Crypto Officer's temporary password (as the
    product derives it), the REST Basic credentials and session cookie are learned; a REST request
    that carries one where the simulator does not mask it (a label), and a REST error text that
    carries another, are caught in the appliance's journal and in the error the client raised.
    The passwords sent where they belong (masked by the simulator) are no leak."""
    planted = str(time.time_ns())
    admin, domain, pso = "Adm1n-planted-" + planted, "Dom-planted-" + planted, "Pso-planted-" + planted
    with mock_aws():
        boto3.client("secretsmanager").create_secret(
            Name="luna/admin",
            SecretString=json.dumps({"password": admin, "domain": domain, "partitionSoPassword": pso}),
        )
    temporary = GroupSecrets(admin, domain, "Part-planted-" + planted, pso).first_co_password("payments")
    assert scan.secrets[pso] == "secret luna/admin key 'partitionSoPassword'"
    assert "temporary password" in scan.secrets[temporary]

    appliance = SimulatedAppliance(
        dialect="7.2", initialized=True, admin_password=admin, domain=domain
    ).start()
    try:
        basic = base64.b64encode(f"{appliance.username}:{appliance.password}".encode()).decode()
        assert "REST Basic credentials" in scan.secrets[basic]
        pid, hsm = appliance.state.add_uninitialized_partition("payments").serial, appliance.serial
        rest = LunaRest(
            appliance.hostname,
            appliance.host,
            appliance.rest_port,
            fingerprint=appliance.rest_certificate_fingerprint,
        )
        with scan.open("self-test") as window, rest:
            rest.open_session(appliance.username, appliance.password)
            assert [
                s for s in appliance.rest.api.sessions if scan.secrets.get(s, "").startswith("a REST session")
            ]
            rest.hsm_login(hsm, admin)
            rest.init_partition(hsm, pid, temporary, pso, domain)  # the label: a leak
            rest.partition_so_login(hsm, pid, pso)
            appliance.faults.fail(REST_CO_INIT, f"no such Partition SO password {pso}")
            with pytest.raises(RestRequestFailed):
                rest.init_co(hsm, pid, temporary)  # its own password is masked; the other is not
        leaks = scan.scan(window)
    finally:
        appliance.stop()
        appliance.journal.clear()  # the planted leak must not reach another test's scan
        scan.appliances.discard(appliance)

    found = {(leak.channel, leak.what) for leak in leaks}
    assert found == {
        ("journal", scan.secrets[temporary]),
        ("exception", "secret luna/admin key 'partitionSoPassword'"),
    }, leaks
    for leak in leaks:
        assert pso not in str(leak) and temporary not in str(leak) and "<SECRET>" in leak.excerpt
