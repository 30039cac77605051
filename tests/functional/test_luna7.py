"""Luna Network HSM 7 groups through the engine: real SSH and HTTPS to simulated 7.2 and 7.8
appliances, moto for AWS.

7.8 initializes partitions with lunash; 7.2 only over REST; both change the Crypto Officer's first
password over REST (HSM policy 21). A run killed between any two of these steps converges on the
next run without initializing anything twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from luna_ha.engine import GroupRunError
from luna_ha.ownership import ownership_token
from luna_ha.sim.faults import REST_CO_PASSWORD
from luna_ha.sim.lab import LabSecrets
from luna_ha.sim.server import SimulatedAppliance
from luna_ha.sim.state import Partition
from luna_ha.spec import parse_properties
from luna_ha_lab.cloudformation import LocalCloudFormation, LocalStack
from luna_ha_lab.localaws import group_properties
from tests.functional.lab import REGION, Lab, running_lab, served_lab
from tests.functional.test_handler import fresh_handler

ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo/1|Group|payments"
WEB0 = f"web-{ownership_token(ID)}-r0"


@pytest.fixture(params=["7.8", "7.2"])
def lab(aws_env: None, request: pytest.FixtureRequest) -> Iterator[Lab]:
    with mock_aws(), running_lab(2, dialect=request.param) as started:
        yield started


def partition(lab: Lab, index: int) -> Partition:
    return lab.appliances[index].state.partitions["payments"]


def assert_ready(lab: Lab) -> None:
    """Each member's partition: initialized, labelled, in the group's cloning domain, its Crypto
    Officer on the members' password and no longer to be changed, the shared client assigned."""
    for appliance in lab.appliances:
        p = appliance.state.partitions["payments"]
        assert (p.initialized, p.label, p.domain) == (True, "payments", lab.domain)
        assert p.so_password == lab.partition_so_password
        assert (p.co.password, p.co.pin_to_be_changed) == (lab.partition_password, False)
        assert appliance.state.clients[WEB0].partitions == ["payments"]


def test_create_makes_each_partition_ready_for_members(lab: Lab) -> None:
    spec = lab.spec()
    report = lab.engine(spec).apply(spec, ID)

    assert report.ok
    assert_ready(lab)
    serials = report.data["PartitionSerials"].split(",")
    assert [len(s) for s in serials] == [13, 13]
    assert not any(s.startswith(a.state.serial) for s, a in zip(serials, lab.appliances, strict=True))
    assert all(a.software and a.software.startswith("Luna Network HSM 7.") for a in report.appliances)


def test_initialization_goes_through_lunash_from_7_8_1_and_rest_before(lab: Lab) -> None:
    spec = lab.spec()
    planned = lab.engine(spec).plan(spec, ID).appliances[0].planned
    rest_init = lab.appliances[0].state.dialect.name == "7.2"

    assert [str(s) for s in planned][1:5] == [
        "partition create payments",
        "partition init payments" + (" (REST)" if rest_init else ""),
        "partition init co payments" + (" (REST)" if rest_init else ""),
        "change crypto officer password payments (REST)",
    ]


def test_a_second_run_changes_nothing(lab: Lab) -> None:
    spec = lab.spec()
    lab.engine(spec).apply(spec, ID)
    marks = lab.mutating_marks()

    assert lab.engine(spec).apply(spec, ID).ok
    assert lab.mutating_since(marks) == []


def test_a_run_killed_after_partition_create_converges_without_creating_or_initializing_twice(
    lab: Lab,
) -> None:
    spec = lab.spec()
    for a in lab.appliances:
        a.faults.drop(command="partition create", after_execute=True)
    with pytest.raises(GroupRunError):
        lab.engine(spec).apply(spec, ID)
    assert all(not partition(lab, i).initialized for i in (0, 1))

    assert lab.engine(spec).apply(spec, ID).ok
    assert_ready(lab)
    for a in lab.appliances:
        lines = [e.line for e in a.journal.since(0)]
        assert sum(line.startswith("partition create") for line in lines) == 1
        initializations = [
            line for line in lines if line.startswith("partition init -") or _rest_partition_init(line)
        ]
        assert len(initializations) == 1


def test_a_run_killed_before_the_crypto_officer_password_change_finishes_it(lab: Lab) -> None:
    spec = lab.spec()
    for a in lab.appliances:
        a.faults.drop(command=REST_CO_PASSWORD)
    with pytest.raises(GroupRunError, match="change crypto officer password"):
        lab.engine(spec).apply(spec, ID)
    assert all(partition(lab, i).co.pin_to_be_changed for i in (0, 1))

    second = lab.engine(spec).apply(spec, ID)

    assert second.ok
    assert [str(s) for s in second.appliances[0].planned][:1] == [
        "change crypto officer password payments (REST)"
    ]
    assert_ready(lab)


def _rest_partition_init(line: str) -> bool:
    return line.startswith("PUT /api/lunasa/hsms/") and "/roles/" not in line


def test_an_appliance_without_a_rest_pin_fails_naming_the_property_and_is_left_alone(lab: Lab) -> None:
    props = lab.props()
    del props["Appliances"][1]["RestCertificateFingerprint"]
    del props["Appliances"][1]["RestPort"]
    spec = parse_properties(props)
    marks = lab.mutating_marks()

    with pytest.raises(GroupRunError, match="RestCertificateFingerprint"):
        lab.engine(spec).apply(spec, ID)
    assert not [line for line in lab.mutating_since(marks) if line.startswith("luna-sim-02")]


def test_a_group_mixing_luna_sa_and_luna_7_fails_before_any_change(aws_env: None) -> None:
    with mock_aws(), running_lab(2, dialects=["7.8", "5.4"]) as lab:
        spec = lab.spec()
        marks = lab.mutating_marks()

        with pytest.raises(GroupRunError, match="cannot mix") as raised:
            lab.engine(spec).apply(spec, ID)

        assert "Luna SA 5.4.9" in str(raised.value) and "Luna Network HSM 7.8.5" in str(raised.value)
        assert lab.mutating_since(marks) == []


# --- through the Lambda handler (CloudFormation-shaped events, the answer over HTTPS) ------------


@pytest.fixture
def stack(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LocalStack, list[SimulatedAppliance], LabSecrets]]:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("LUNA_HA_RESPONSE_MARGIN_SECONDS", "5")
    with (
        served_lab(2, dialect="7.8") as (appliances, secrets),
        LocalCloudFormation(fresh_handler(), timeout_seconds=120, environment_factory=fresh_handler) as cfn,
    ):
        yield LocalStack(cfn), appliances, secrets


def test_a_luna7_stack_creates_rotates_and_deletes_its_partition_under_the_delete_policy(
    stack: tuple[LocalStack, list[SimulatedAppliance], LabSecrets],
) -> None:
    local, appliances, secrets = stack
    props = group_properties(appliances, clients={"web": 0}, PartitionDeletionPolicy="Delete")

    created = local.create("Group", props)
    assert created.succeeded, created.describe()
    for a in appliances:
        p = a.state.partitions["payments"]
        assert (p.initialized, p.co.password, p.co.pin_to_be_changed) == (
            True,
            secrets.partition_password,
            False,
        )

    rotated = local.update("Group", {**props, "Clients": [{"Name": "web", "Rotation": "1"}]})
    assert rotated.succeeded, rotated.describe()
    assert all(len(a.state.clients) == 2 for a in appliances)  # the old generation stays for running members

    deleted = local.delete("Group")
    assert deleted.succeeded, deleted.describe()
    assert all("payments" not in a.state.partitions and not a.state.clients for a in appliances)


def test_an_admin_secret_without_a_partition_so_password_fails_before_any_change(lab: Lab) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    admin = json.loads(client.get_secret_value(SecretId="luna/admin")["SecretString"])
    del admin["partitionSoPassword"]
    client.put_secret_value(SecretId="luna/admin", SecretString=json.dumps(admin))
    spec = lab.spec()
    marks = lab.mutating_marks()

    with pytest.raises(GroupRunError, match="partitionSoPassword") as raised:
        lab.engine(spec).apply(spec, ID)
    assert "step 'partition init payments" in str(raised.value)
    assert lab.mutating_since(marks) == []
