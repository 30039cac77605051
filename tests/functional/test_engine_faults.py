"""Faults during a run: the engine always answers, names the appliance and step, and a re-run converges."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from moto import mock_aws

from luna_ha.certs import credential_matches, generate_client_credential, luna_fingerprint
from luna_ha.clock import Deadline
from luna_ha.engine import GroupRunError, ResourceDeleted
from luna_ha.errors import LunaHAError
from luna_ha.ownership import ownership_token
from luna_ha.sim.server import wait_for
from luna_ha.spec import parse_properties
from luna_ha_lab.localaws import TABLE, fingerprints
from tests.functional.lab import Lab, running_lab

ID = "faults|Group|payments"
PATH = "/luna-ha/payments"


@pytest.fixture
def lab(aws_env: None) -> Iterator[Lab]:
    with mock_aws(), running_lab(2) as started:
        yield started


def test_a_hanging_command_ends_at_the_deadline_naming_appliance_and_step(lab: Lab) -> None:
    hang = lab.appliances[1].faults.hang("client list")
    started = time.monotonic()
    with pytest.raises(GroupRunError) as caught:
        lab.engine().apply(lab.spec(), ID, deadline=Deadline.after(3))
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "127.0.0.2" in message and "client list" in message and "no lunash prompt" in message
    hang.release()
    lab.appliances[1].faults.clear()
    assert lab.engine().apply(lab.spec(), ID).ok


def test_a_flooding_appliance_fails_fast_naming_appliance_and_step_and_memory_stays_flat(lab: Lab) -> None:
    lab.appliances[1].faults.flood("hsm show")
    baseline = resident_bytes()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], resident_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        with pytest.raises(GroupRunError) as caught:
            lab.engine().apply(lab.spec(), ID, deadline=Deadline.after(8))
    finally:
        seconds = time.monotonic() - started
        done.set()
        sampler.join()

    assert peak[0] - baseline < 64 * 1024 * 1024, f"memory grew by {(peak[0] - baseline) >> 20} MiB"
    assert seconds < 5, f"the flood was read for {seconds:.1f} s"
    message = str(caught.value)
    assert "Appliance 127.0.0.2, step 'observe: hsm show': the appliance sent more than" in message
    lab.appliances[1].faults.clear()
    assert lab.engine().apply(lab.spec(), ID).ok


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_no_step_starts_that_the_deadline_cannot_fit(lab: Lab) -> None:
    with pytest.raises(GroupRunError, match=r"not enough time left to start 'hsm login'.*re-run"):
        lab.engine().apply(lab.spec(), ID, deadline=Deadline.after(15))
    assert all(a.journal.mutating() == [] for a in lab.appliances)


def test_connection_dropped_mid_command_then_rerun_converges(lab: Lab) -> None:
    lab.appliances[0].faults.drop(command="partition create", after_execute=True)
    with pytest.raises(GroupRunError, match=r"127\.0\.0\.1.*partition create"):
        lab.engine().apply(lab.spec(), ID)
    lab.appliances[0].faults.clear()

    report = lab.engine().apply(lab.spec(), ID)

    assert report.ok
    # the partition was created before the drop: the re-run does not create it again
    assert "partition create payments" not in [str(s) for s in report.appliances[0].done]


def test_authentication_failure_names_the_appliance(lab: Lab) -> None:
    lab.appliances[0].password = "not-the-password"
    with pytest.raises(GroupRunError, match=r"127\.0\.0\.1.*rejected the credentials"):
        lab.engine().apply(lab.spec(), ID)


def test_rsa_pinned_appliance_with_several_host_keys_presents_the_pinned_one(aws_env: None) -> None:
    with mock_aws(), running_lab(2, rsa_host_key=True) as lab:
        props = lab.props()
        props["Appliances"][0]["HostKey"] = lab.appliances[0].host_key_lines[1]  # the RSA one
        spec = parse_properties(props)
        assert spec.appliances[0].host_key is not None and spec.appliances[0].host_key.startswith("ssh-rsa ")
        assert lab.engine().apply(spec, ID).ok


def deleting_record(lab: Lab, physical_id: str = ID) -> dict[str, Any] | None:
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=TABLE, Key={"pk": {"S": f"deleting#{physical_id}"}}
    )
    return item.get("Item")


def test_delete_arriving_while_create_runs_leaves_nothing_behind(lab: Lab) -> None:
    spec = lab.spec()
    hang = lab.appliances[1].faults.hang("client register")
    creating = lab.engine()
    creating.deletion_markers = True
    with ThreadPoolExecutor(2) as pool:
        create = pool.submit(creating.apply, spec, ID)
        assert hang.wait_started(10)
        deleting = lab.engine()
        deleting.deletion_markers = True
        delete = pool.submit(deleting.destroy, spec, ID)
        # the Delete marks the resource first; then let the Create's hanging command finish
        assert wait_for(lambda: deleting_record(lab) is not None, 10)
        hang.release()
        with pytest.raises(ResourceDeleted):
            create.result(timeout=60)
        delete.result(timeout=60)
    lab.appliances[1].faults.clear()

    for appliance in lab.appliances:
        assert appliance.state.clients == {}
    assert lab.parameters() == {}  # nothing under the path: the marker lives in the coordination table
    # a later Create of the same id (CloudFormation retrying after a rollback) builds it again
    assert creating.apply(spec, ID).ok


def test_the_deletion_marker_is_read_for_two_hours_after_the_delete_and_then_ignored(lab: Lab) -> None:
    spec = lab.spec()
    engine = lab.engine()
    engine.deletion_markers = True
    assert engine.apply(spec, ID).ok
    before = time.time()

    engine.destroy(spec, ID)

    assert lab.parameters() == {}
    record = deleting_record(lab)
    assert record is not None
    expires, ttl = float(record["expires"]["N"]), float(record["ttl"]["N"])
    assert before + 2 * 3600 - 0.001 <= expires <= time.time() + 2 * 3600
    assert ttl > expires  # DynamoDB's TTL only collects it afterwards
    later = lab.coordinator()
    later.now = lambda: expires + 1
    assert later.deleting_since(ID) is None


def test_a_delete_retried_after_a_failure_marks_again(lab: Lab) -> None:
    spec = lab.spec()
    engine = lab.engine()
    engine.deletion_markers = True
    assert engine.apply(spec, ID).ok
    lab.appliances[1].faults.fail("client delete", times=1)
    with pytest.raises(GroupRunError):
        engine.destroy(spec, ID)  # marked, then failed: the group's parameters are still there
    first = deleting_record(lab)
    assert first is not None and lab.parameters()
    time.sleep(0.01)

    engine.destroy(spec, ID)

    assert lab.parameters() == {}
    again = deleting_record(lab)
    assert again is not None and float(again["at"]["N"]) > float(first["at"]["N"])


def test_duplicate_events_running_at_once_agree_on_one_certificate(lab: Lab) -> None:
    spec = lab.spec()
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(lab.engine().apply, spec, ID) for _ in range(2)]
        for run in runs:
            run.exception(timeout=60)  # one may lose a race on an appliance; a re-run converges
    assert lab.engine().apply(spec, ID).ok

    web0 = f"web-{ownership_token(ID)}-r0"
    published = luna_fingerprint(lab.parameters()[f"{PATH}/clients/web/{web0}/cert"])
    for appliance in lab.appliances[:2]:
        assert appliance.state.clients[web0].fingerprint == published


def test_a_secret_lunash_cannot_take_fails_before_any_appliance_naming_the_secret(lab: Lab) -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    sm.put_secret_value(SecretId="luna/partition", SecretString=json.dumps({"password": "-force"}))
    with pytest.raises(LunaHAError, match=r"Secret luna/partition: key password: must not start with '-'"):
        lab.engine().apply(lab.spec(), ID)
    assert all(a.connections == 0 for a in lab.appliances)


def _openssh_key_pair(passphrase: bytes | None = None) -> tuple[str, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    encryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private.decode(), public.decode()


def test_manager_secret_with_a_private_key_and_passphrase(lab: Lab) -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    for appliance in lab.appliances[:2]:
        private, public = _openssh_key_pair(b"pass-phrase-1")
        appliance.authorized_key = public
        secret = {
            "username": appliance.username,
            "private_key": private,
            "passphrase": "pass-phrase-1",
            "appliances": fingerprints([appliance]),
        }
        sm.put_secret_value(SecretId=f"luna/manager/{appliance.hostname}", SecretString=json.dumps(secret))
    assert lab.engine().apply(lab.spec(), ID).ok


def test_a_private_key_that_cannot_be_loaded_is_named_as_such(lab: Lab) -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    private, public = _openssh_key_pair(b"right")
    lab.appliances[0].authorized_key = public
    secret = {
        "username": "manager",
        "private_key": private,
        "passphrase": "wrong",
        "appliances": fingerprints(lab.appliances[:1]),
    }
    sm.put_secret_value(
        SecretId=f"luna/manager/{lab.appliances[0].hostname}", SecretString=json.dumps(secret)
    )
    with pytest.raises(
        GroupRunError, match=r"127\.0\.0\.1.*private key of the manager secret cannot be loaded"
    ):
        lab.engine().apply(lab.spec(), ID)


def test_a_client_key_published_without_its_certificate_is_replaced_not_a_permanent_failure(
    lab: Lab,
) -> None:
    spec = lab.spec()
    ssm = boto3.client("ssm", region_name="us-east-1")
    web0 = f"web-{ownership_token(ID)}-r0"
    orphan = generate_client_credential(
        web0, now=datetime.now(UTC)
    )  # a run wrote this key, then died before the certificate
    ssm.put_parameter(
        Name=f"{PATH}/clients/web/{web0}/key", Value=orphan.key_pem, Type="SecureString", Overwrite=True
    )

    assert lab.engine().apply(spec, ID).ok

    published = lab.parameters()
    cert, key = published[f"{PATH}/clients/web/{web0}/cert"], published[f"{PATH}/clients/web/{web0}/key"]
    assert credential_matches(cert, key)
    assert all(a.state.clients[web0].fingerprint == luna_fingerprint(cert) for a in lab.appliances[:2])


def test_a_certificate_write_that_fails_on_every_retry_is_finished_by_the_next_run(lab: Lab) -> None:
    spec = lab.spec()
    engine = lab.engine()

    def refuse_certificates(params: dict[str, Any], **_: Any) -> None:
        if params["Name"].endswith("/cert"):
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "PutParameter")

    engine.store._client.meta.events.register("before-parameter-build.ssm.PutParameter", refuse_certificates)
    with pytest.raises(LunaHAError, match=r"Cannot write parameter .*/cert: ThrottlingException"):
        engine.apply(spec, ID)

    assert lab.engine().apply(spec, ID).ok
    web0 = f"web-{ownership_token(ID)}-r0"
    published = lab.parameters()
    assert credential_matches(
        published[f"{PATH}/clients/web/{web0}/cert"], published[f"{PATH}/clients/web/{web0}/key"]
    )


def test_a_key_and_certificate_that_are_not_a_pair_are_replaced_and_registered_again(lab: Lab) -> None:
    spec = lab.spec()
    assert lab.engine().apply(spec, ID).ok
    web0 = f"web-{ownership_token(ID)}-r0"
    stranger = generate_client_credential(web0, now=datetime.now(UTC))  # half of another run's pair
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=f"{PATH}/clients/web/{web0}/key", Value=stranger.key_pem, Type="SecureString", Overwrite=True
    )

    assert lab.engine().apply(spec, ID).ok

    published = lab.parameters()
    cert = published[f"{PATH}/clients/web/{web0}/cert"]
    assert credential_matches(cert, published[f"{PATH}/clients/web/{web0}/key"])
    assert all(a.state.clients[web0].fingerprint == luna_fingerprint(cert) for a in lab.appliances[:2])
