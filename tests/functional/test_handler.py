"""``Custom::LunaHAGroup`` through the real Lambda handler: CloudFormation-shaped events, crhelper's
answer over real HTTPS on 127.0.0.1, simulated appliances over SSH, moto for Secrets Manager and SSM."""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from luna_ha.sim.server import SimulatedAppliance
from luna_ha_lab.cloudformation import LocalCloudFormation, LocalStack
from luna_ha_lab.localaws import TABLE, LabSecrets, group_properties
from tests.functional.lab import parameters, served_lab

LOGICAL = "Group"


@dataclass
class World:
    appliances: list[SimulatedAppliance]
    lab: LabSecrets
    cfn: LocalCloudFormation
    stack: LocalStack

    def props(self, members: int = 2, clients: dict[str, int] | None = None, **extra: Any) -> dict[str, Any]:
        props = group_properties(self.appliances[:members], clients=clients or {"web": 0})
        props.update(extra)
        return props

    def parameters(self, path: str = "/luna-ha/payments") -> dict[str, str]:
        return parameters(path)

    def clients_on(self, index: int) -> set[str]:
        return set(self.appliances[index].state.clients)

    def marks(self) -> list[int]:
        return [a.journal.mark() for a in self.appliances]

    def mutations_since(self, marks: list[int]) -> list[str]:
        return [
            e.line
            for a, m in zip(self.appliances, marks, strict=True)
            for e in a.journal.since(m)
            if e.mutating
        ]

    @property
    def secret_values(self) -> list[str]:
        values = [self.lab.admin_password, self.lab.domain, self.lab.partition_password]
        return values + [a.password for a in self.appliances]


def fresh_handler() -> Callable[[dict[str, Any], Any], None]:
    """A handler with its own crhelper instance, as a new Lambda execution environment has."""
    return importlib.import_module("luna_ha.app").build_handler()  # type: ignore[no-any-return]


@pytest.fixture
def world(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("LUNA_HA_RESPONSE_MARGIN_SECONDS", "5")
    with (
        served_lab(3) as (appliances, lab),
        LocalCloudFormation(fresh_handler(), timeout_seconds=120, environment_factory=fresh_handler) as cfn,
    ):
        yield World(appliances, lab, cfn, LocalStack(cfn))


def test_create_configures_appliances_publishes_and_returns_data(world: World) -> None:
    operation = world.stack.create(LOGICAL, world.props())

    assert operation.succeeded, operation.describe()
    response = operation.exchanges[-1].response
    assert response is not None
    assert response.physical_resource_id.startswith("luna-ha/luna-ha-demo/Group/payments/")
    data = response.data
    serials = [world.appliances[i].state.partitions["payments"].serial for i in (0, 1)]
    assert data["PartitionSerials"] == ",".join(serials)
    assert data["HAGroupSerial"] == "1" + serials[0]
    assert data["ParameterPath"] == "/luna-ha/payments"
    assert data["Members"] == "127.0.0.1,127.0.0.2"
    assert data["ClientRegistrations"].startswith("web=web-")
    assert all(isinstance(v, str) for v in data.values()) and response.body_size < 4096
    assert json.loads(world.parameters()["/luna-ha/payments/group"])["owner"] == response.physical_resource_id


def test_update_with_nothing_changed_writes_nothing_and_returns_the_same_data(world: World) -> None:
    created = world.stack.create(LOGICAL, world.props())
    marks = world.marks()
    versions = {p: v for p, v in _versions().items()}

    updated = world.stack.update(LOGICAL, {**world.props(), "ServiceTimeout": "600"}, force=True)

    assert updated.succeeded, updated.describe()
    assert world.mutations_since(marks) == []
    assert _versions() == versions
    before, after = created.exchanges[-1].response, updated.exchanges[-1].response
    assert before is not None and after is not None
    assert after.data == before.data and after.physical_resource_id == before.physical_resource_id


def test_duplicate_event_is_harmless(world: World) -> None:
    world.stack.create(LOGICAL, world.props())
    marks = world.marks()
    duplicate = world.stack.duplicate_last()
    assert duplicate.succeeded
    assert world.mutations_since(marks) == []


def test_rotation_and_added_appliance_and_removed_client(world: World) -> None:
    world.stack.create(LOGICAL, world.props(clients={"web": 0, "batch": 0}))
    rotated = world.stack.update(LOGICAL, world.props(clients={"web": 1, "batch": 0}))
    assert rotated.succeeded, rotated.describe()
    web = {c for c in world.clients_on(0) if c.startswith("web-")}
    assert {c[-2:] for c in web} == {"r0", "r1"}

    grown = world.stack.update(LOGICAL, world.props(members=3, clients={"web": 1}))
    assert grown.succeeded, grown.describe()
    assert "payments" in world.appliances[2].state.partitions
    assert not any(c.startswith("batch-") for i in range(3) for c in world.clients_on(i))


def test_partition_name_change_replaces_and_cleanup_removes_the_old_registrations(world: World) -> None:
    created = world.stack.create(LOGICAL, world.props())
    old_id = created.exchanges[-1].response.physical_resource_id  # type: ignore[union-attr]
    replaced = world.stack.update(LOGICAL, world.props(PartitionName="orders"))

    assert replaced.succeeded, replaced.describe()
    assert [e.phase for e in replaced.exchanges] == ["update", "cleanup-delete"]
    new_id = replaced.exchanges[0].response.physical_resource_id  # type: ignore[union-attr]
    assert new_id != old_id
    for i in (0, 1):
        partitions = world.appliances[i].state.partitions
        assert {"payments", "orders"} <= set(partitions)  # Retain keeps the old partition
        assert len(world.clients_on(i)) == 1  # only the new resource's registration
    assert world.parameters() == {}  # the old path belonged to the old id
    assert _deleting(old_id) is not None  # its Delete's marker is in the coordination table
    assert "/luna-ha/orders/group" in world.parameters("/luna-ha/orders")


def test_bad_properties_fail_naming_the_property_without_contacting_any_appliance(world: World) -> None:
    props = world.props()
    props["Appliances"][1]["Port"] = "99999"
    operation = world.stack.create(LOGICAL, props)

    create, rollback = operation.exchanges
    assert create.response is not None and create.response.status == "FAILED"
    assert "Appliances[1].Port" in create.response.reason
    assert rollback.response is not None and rollback.response.status == "SUCCESS"
    assert all(a.connections == 0 for a in world.appliances)


def test_failed_create_is_cleaned_up_by_its_rollback_delete(world: World) -> None:
    world.appliances[1].faults.fail("client register", times=1)
    operation = world.stack.create(LOGICAL, world.props())

    create, rollback = operation.exchanges
    assert create.response is not None and create.response.status == "FAILED"
    assert "127.0.0.2" in create.response.reason and "client register" in create.response.reason
    assert create.response.physical_resource_id.startswith("luna-ha/")
    assert rollback.response is not None and rollback.response.status == "SUCCESS"
    assert world.clients_on(0) == set() and world.clients_on(1) == set()
    assert world.parameters() == {}


def test_failed_update_rolls_back_to_the_old_properties(world: World) -> None:
    world.stack.create(LOGICAL, world.props())
    world.appliances[2].faults.fail("partition create", times=1)
    operation = world.stack.update(LOGICAL, world.props(members=3))

    update, rollback = operation.exchanges[:2]
    assert update.response is not None and update.response.status == "FAILED"
    assert "127.0.0.3" in update.response.reason
    assert rollback.response is not None and rollback.response.status == "SUCCESS"
    assert world.clients_on(2) == set()
    group = json.loads(world.parameters()["/luna-ha/payments/group"])
    assert [m["host"] for m in group["members"]] == ["127.0.0.1", "127.0.0.2"]


def test_delete_removes_clients_and_parameters_and_keeps_partitions(world: World) -> None:
    world.stack.create(LOGICAL, world.props())
    deleted = world.stack.delete(LOGICAL)

    assert deleted.succeeded, deleted.describe()
    for i in (0, 1):
        assert world.clients_on(i) == set()
        assert "payments" in world.appliances[i].state.partitions
    assert world.parameters() == {}


def test_a_delete_whose_properties_no_longer_parse_removes_what_the_group_document_records(
    world: World,
) -> None:
    created = world.stack.create(LOGICAL, world.props())
    assert created.succeeded, created.describe()
    physical_id = created.exchanges[-1].response.physical_resource_id  # type: ignore[union-attr]
    older = {**world.props(), "HsmGroupPassword": "a property of another product version"}
    del older["AdminSecretArn"]

    response = world.cfn.invoke(world.cfn.delete_event(LOGICAL, physical_id, older))

    assert response.status == "SUCCESS", response.reason
    for i in (0, 1):
        assert world.clients_on(i) == set()
        assert "payments" in world.appliances[i].state.partitions  # kept: the safe side
    assert world.parameters() == {}


def test_a_delete_with_unparseable_properties_of_another_resource_touches_nothing(world: World) -> None:
    world.stack.create(LOGICAL, world.props())
    before = world.parameters()
    marks = world.marks()
    props = {**world.props(), "Unknown": "x"}

    response = world.cfn.invoke(world.cfn.delete_event(LOGICAL, "luna-ha/other/Group/payments/0", props))

    assert response.status == "SUCCESS"
    assert world.mutations_since(marks) == []
    assert world.parameters() == before


def test_a_create_whose_answer_was_lost_is_removed_by_a_delete_of_the_id_cloudformation_made_up(
    world: World,
) -> None:
    event = world.cfn.create_event(LOGICAL, world.props())
    world.cfn.invoke(event)  # CloudFormation never saw this answer (say the function was killed)
    physical_id = importlib.import_module("luna_ha.resource").physical_id_for(event)
    made_up = f"{world.cfn.stack_name}-{LOGICAL}-1XJ2K3L4M5N6"

    response = world.cfn.invoke(world.cfn.delete_event(LOGICAL, made_up, world.props()))

    assert response.status == "SUCCESS" and response.physical_resource_id == made_up
    assert world.parameters() == {}
    assert all(world.clients_on(i) == set() for i in range(3))
    assert _deleting(physical_id) is not None  # it was deleted as what its Create built


def test_delete_of_an_id_never_created_succeeds(world: World) -> None:
    event = world.cfn.delete_event(LOGICAL, "some-id-from-elsewhere", world.props())
    response = world.cfn.invoke(event)
    assert response.status == "SUCCESS"
    assert all(not a.journal.mutating() for a in world.appliances)


def test_delete_during_a_running_create_leaves_nothing(world: World) -> None:
    hang = world.appliances[1].faults.hang("client register")
    create_event = world.cfn.create_event(LOGICAL, world.props())
    creating = world.cfn.invoke_async(create_event)
    assert hang.wait_started(20)
    physical_id = importlib.import_module("luna_ha.resource").physical_id_for(create_event)
    deleting = world.cfn.invoke_async(world.cfn.delete_event(LOGICAL, physical_id, world.props()))
    assert _wait(lambda: _deleting(physical_id) is not None)
    hang.release()

    created, deleted = creating.result(timeout=60), deleting.result(timeout=60)
    assert created.status == "FAILED" and "Delete" in created.reason
    assert deleted.status == "SUCCESS"
    assert all(world.clients_on(i) == set() for i in range(3))
    assert world.cfn.receiver.counts()[create_event["RequestId"]] == 1


def test_nothing_the_function_printed_or_answered_carries_a_secret(
    world: World, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    world.appliances[1].faults.fail("partition create", times=1)
    world.stack.create(LOGICAL, world.props())
    world.stack.create(LOGICAL, world.props())
    world.stack.update(LOGICAL, world.props(clients={"web": 1}))
    world.stack.delete(LOGICAL)

    captured = capfd.readouterr()
    answers = [json.dumps(r.body) for r in world.cfn.receiver.responses()]
    strings = [v for k, v in world.parameters().items() if not k.endswith("/key")]
    everything = "\n".join([captured.out, captured.err, caplog.text, *answers, *strings])
    assert "lunash" in everything or "operation" in everything  # the capture did capture the function
    for secret in world.secret_values:
        assert secret not in everything
    assert "X-Amz-Signature" not in captured.out + captured.err + caplog.text


def _deleting(physical_id: str) -> dict[str, Any] | None:
    """The deletion marker of ``physical_id`` in the coordination table, if one was written."""
    item = boto3.client("dynamodb").get_item(TableName=TABLE, Key={"pk": {"S": f"deleting#{physical_id}"}})
    return item.get("Item")


def _versions() -> dict[str, int]:
    ssm = boto3.client("ssm")
    found: dict[str, int] = {}
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path="/luna-ha", Recursive=True):
        found.update({p["Name"]: p["Version"] for p in page["Parameters"]})
    return found


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_hanging_appliance_is_answered_failed_before_the_function_times_out(world: World) -> None:
    with LocalCloudFormation(fresh_handler(), timeout_seconds=15, environment_factory=fresh_handler) as short:
        world.appliances[0].faults.hang("client list")
        event = short.create_event(LOGICAL, world.props())
        response = short.invoke(event)
        time.sleep(max(0.0, 15.5 - response.seconds))  # past the function's timeout: still one answer
        answers = short.receiver.counts()[event["RequestId"]]

    assert answers == 1
    assert response.status == "FAILED"
    assert response.reason.startswith("Appliance 127.0.0.1, step 'observe: client list'")
    assert response.seconds < 15  # answered by the engine's deadline, not crhelper's last-moment timer


def test_removing_an_appliance_and_a_client_revokes_only_there(world: World) -> None:
    world.stack.create(LOGICAL, world.props(members=3, clients={"web": 0, "batch": 0}))
    operation = world.stack.update(LOGICAL, world.props(members=2, clients={"web": 0}))

    assert operation.succeeded, operation.describe()
    assert world.clients_on(2) == set()
    assert "payments" in world.appliances[2].state.partitions  # Retain
    assert all(not c.startswith("batch-") for i in (0, 1) for c in world.clients_on(i))
    assert not any("/clients/batch/" in name for name in world.parameters())
    assert not any("127.0.0.3" in name for name in world.parameters())


def test_label_path_and_kms_changes_republish_and_clean_up(world: World) -> None:
    key_id = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    world.stack.create(LOGICAL, world.props())
    marks = world.marks()

    relabelled = world.stack.update(LOGICAL, world.props(GroupLabel="payments-2"))
    assert relabelled.succeeded, relabelled.describe()
    assert json.loads(world.parameters()["/luna-ha/payments/group"])["label"] == "payments-2"

    moved = world.stack.update(LOGICAL, world.props(GroupLabel="payments-2", ParameterPath="/luna-ha/pay2"))
    assert moved.succeeded, moved.describe()
    assert world.parameters() == {}
    assert "/luna-ha/pay2/group" in world.parameters("/luna-ha/pay2")

    rekeyed = world.stack.update(
        LOGICAL, world.props(GroupLabel="payments-2", ParameterPath="/luna-ha/pay2", KmsKeyId=key_id)
    )
    assert rekeyed.succeeded, rekeyed.describe()
    keys = boto3.client("ssm").describe_parameters(
        ParameterFilters=[{"Key": "Path", "Option": "Recursive", "Values": ["/luna-ha/pay2"]}]
    )["Parameters"]
    assert {p["KeyId"] for p in keys if p["Type"] == "SecureString"} == {key_id}
    assert world.mutations_since(marks) == []  # none of these touch an appliance
