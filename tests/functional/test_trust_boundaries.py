"""Trust boundaries: two resources share one provider and the same appliances; neither can take,
delete or reach what belongs to the other, and a secret goes only to the appliances it names.

Through the real handler (two stacks, CloudFormation-shaped events, HTTPS answers), through the
engine (races on the HSM Admin login, crashes around ``partition create``), and through the CLI.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from luna_ha.cli import main
from luna_ha.coordination import Coordinator
from luna_ha.engine import GroupRunError
from luna_ha.sim.server import SimulatedAppliance
from luna_ha_lab.cloudformation import LocalCloudFormation, LocalStack, Response
from luna_ha_lab.localaws import TABLE, LabSecrets, fingerprints, group_properties, manager_secret_name
from tests.functional.lab import Lab, parameters, running_lab, served_lab

LOGICAL = "Group"
PATH = "/luna-ha/payments"


# --------------------------------------------------------------------------------------------------
# Two stacks on one provider, through the handler


@dataclass
class Tenants:
    appliances: list[SimulatedAppliance]
    lab: LabSecrets
    a: LocalStack
    b: LocalStack

    def props(self, **extra: Any) -> dict[str, Any]:
        props = group_properties(self.appliances[:2], clients={"web": 0})
        props.update(extra)
        return props

    def journal_marks(self) -> list[int]:
        return [a.journal.mark() for a in self.appliances]

    def commands_since(self, marks: list[int]) -> list[str]:
        return [e.line for a, m in zip(self.appliances, marks, strict=True) for e in a.journal.since(m)]

    def serials(self, partition: str = "payments") -> list[str]:
        return [a.state.partitions[partition].serial for a in self.appliances[:2]]

    @property
    def secret_values(self) -> list[str]:
        values = [self.lab.admin_password, self.lab.domain, self.lab.partition_password]
        return values + [a.password for a in self.appliances]


def fresh_handler() -> Callable[[dict[str, Any], Any], None]:
    from luna_ha import app

    return app.build_handler()


@pytest.fixture
def tenants(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tenants]:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("LUNA_HA_RESPONSE_MARGIN_SECONDS", "5")
    with (
        served_lab(3) as (appliances, lab),
        LocalCloudFormation(
            fresh_handler(), stack_name="payments-a", timeout_seconds=120, environment_factory=fresh_handler
        ) as first,
        LocalCloudFormation(
            fresh_handler(), stack_name="payments-b", timeout_seconds=120, environment_factory=fresh_handler
        ) as second,
    ):
        yield Tenants(appliances, lab, LocalStack(first), LocalStack(second))


def reason_of(response: Response | None) -> str:
    assert response is not None
    return response.reason


def test_a_copied_template_in_another_stack_can_neither_take_nor_delete_the_partition(
    tenants: Tenants,
) -> None:
    assert tenants.a.create(LOGICAL, tenants.props()).succeeded
    serials, owner_params = tenants.serials(), parameters(PATH)

    copied = tenants.b.create(
        LOGICAL, tenants.props(ParameterPath="/luna-ha/copy", PartitionDeletionPolicy="Delete")
    )

    assert copied.outcome == "ROLLBACK_COMPLETE", copied.describe()
    reason = reason_of(copied.exchanges[0].response)
    assert reason.startswith("Appliance 127.0.0.1, step 'partition create': a partition named payments")
    assert "not created by this resource" in reason
    adopting = tenants.b.create(
        LOGICAL,
        tenants.props(
            ParameterPath="/luna-ha/copy", ExistingPartition="Adopt", PartitionDeletionPolicy="Delete"
        ),
    )
    assert adopting.outcome == "ROLLBACK_COMPLETE", adopting.describe()
    assert "another resource has recorded this partition" in reason_of(adopting.exchanges[0].response)
    # the rollback Deletes (under PartitionDeletionPolicy: Delete) left the partition and its keys alone
    assert tenants.serials() == serials
    assert all("partition delete" not in e.line for a in tenants.appliances for e in a.journal.entries())
    assert parameters(PATH) == owner_params
    assert parameters("/luna-ha/copy") == {}


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        (PATH, "belongs to another resource"),
        (f"{PATH}/orders", f"is below {PATH}, the path of another group"),
        ("/luna-ha/team", "is above the path of another group"),
        ("/luna-ha", "must be below the provider's prefix /luna-ha"),
    ],
)
def test_a_path_of_another_group_is_refused_before_any_appliance_or_parameter_is_touched(
    tenants: Tenants, path: str, problem: str
) -> None:
    assert tenants.a.create(LOGICAL, tenants.props()).succeeded
    assert tenants.a.create(
        "Team", tenants.props(PartitionName="team", ParameterPath="/luna-ha/team/x")
    ).succeeded
    before = {**parameters(PATH), **parameters("/luna-ha/team")}
    marks = tenants.journal_marks()

    other = tenants.b.create(LOGICAL, tenants.props(PartitionName="orders", ParameterPath=path))

    assert other.outcome == "ROLLBACK_COMPLETE", other.describe()
    reason = reason_of(other.exchanges[0].response)
    assert reason.startswith("Property ParameterPath:") and problem in reason, reason
    assert tenants.commands_since(marks) == []  # not one command, not even a read
    assert {**parameters(PATH), **parameters("/luna-ha/team")} == before


def test_a_replacement_in_the_same_stack_takes_its_own_path_over_and_nothing_else_does(
    tenants: Tenants,
) -> None:
    assert tenants.a.create(LOGICAL, tenants.props(ParameterPath=PATH)).succeeded
    old_id = tenants.a.resource(LOGICAL).physical_resource_id  # type: ignore[union-attr]

    replaced = tenants.a.update(LOGICAL, tenants.props(PartitionName="payments2", ParameterPath=PATH))

    assert replaced.outcome == "UPDATE_COMPLETE", replaced.describe()
    new_id = tenants.a.resource(LOGICAL).physical_resource_id  # type: ignore[union-attr]
    assert new_id != old_id
    # the old id's Delete (cleanup) removed its own registrations, not the new group's parameters
    assert json.loads(parameters(PATH)[f"{PATH}/group"])["owner"] == new_id
    assert tenants.b.create(LOGICAL, tenants.props(PartitionName="other", ParameterPath=PATH)).outcome == (
        "ROLLBACK_COMPLETE"
    )


def test_a_rogue_host_pinned_by_another_stack_receives_no_secret(tenants: Tenants) -> None:
    rogue = tenants.appliances[2]  # its own host key: the secrets name only appliances 0 and 1
    sm = boto3.client("secretsmanager")
    for name in ("luna/admin", "luna/partition"):
        value = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
        value["appliances"] = fingerprints(tenants.appliances[:2])
        sm.put_secret_value(SecretId=name, SecretString=json.dumps(value))
    victim_manager = manager_secret_name(tenants.appliances[0])
    steal_login = group_properties([rogue], PartitionName="loot", ParameterPath="/luna-ha/loot")
    steal_login["Appliances"][0]["ManagerSecretArn"] = victim_manager

    stolen = tenants.b.create(LOGICAL, steal_login)

    assert stolen.outcome == "ROLLBACK_COMPLETE"
    reason = reason_of(stolen.exchanges[0].response)
    assert reason.startswith(f"Appliance {rogue.host}, step 'check secrets': Secret {victim_manager} may not")
    assert rogue.connections == 0  # no SSH authentication was even attempted

    # its own manager secret gets it connected, but the admin secret still goes nowhere unnamed
    steal_admin = group_properties([rogue], PartitionName="loot", ParameterPath="/luna-ha/loot")
    stolen = tenants.b.create(LOGICAL, steal_admin)
    assert stolen.outcome == "ROLLBACK_COMPLETE"
    assert "Secret luna/admin may not be sent here" in reason_of(stolen.exchanges[0].response)
    # (the rollback Delete may read the rogue with the rogue's own manager secret: that one names it)
    assert [
        e.command for e in rogue.journal.entries() if e.command in ("hsm login", "partition create")
    ] == []


def test_a_member_appended_to_the_group_document_gets_no_secret(tenants: Tenants) -> None:
    assert tenants.a.create(LOGICAL, tenants.props()).succeeded
    rogue = tenants.appliances[2]
    ssm = boto3.client("ssm")
    document = json.loads(parameters(PATH)[f"{PATH}/group"])
    forged = dict(document["members"][0])
    forged["host"] = rogue.host
    forged["connection"] = {
        **forged["connection"],
        "Host": rogue.host,
        "Port": rogue.port,
        "HostKey": rogue.host_key_line,
    }
    document["members"].append(forged)
    ssm.put_parameter(Name=f"{PATH}/group", Value=json.dumps(document), Type="String", Overwrite=True)

    rotated = tenants.a.update(LOGICAL, tenants.props(Clients=[{"Name": "web", "Rotation": 1}]))

    assert rotated.outcome == "UPDATE_COMPLETE", rotated.describe()
    assert rogue.connections == 0
    assert [m["host"] for m in json.loads(parameters(PATH)[f"{PATH}/group"])["members"]] == [
        "127.0.0.1",
        "127.0.0.2",
    ]


def test_a_finished_delete_leaves_nothing_under_its_path_and_no_live_record(tenants: Tenants) -> None:
    created = tenants.a.create(LOGICAL, tenants.props(PartitionDeletionPolicy="Delete"))
    assert created.succeeded
    physical_id = tenants.a.resource(LOGICAL).physical_resource_id  # type: ignore[union-attr]

    deleted = tenants.a.delete(LOGICAL)

    assert deleted.succeeded, deleted.describe()
    assert parameters(PATH) == {}
    records = {item["pk"]["S"]: item for item in _table_items()}
    # what remains is the deletion marker, read for two hours; no claim, lease or partition record
    assert set(records) == {f"deleting#{physical_id}"}
    assert float(records[f"deleting#{physical_id}"]["expires"]["N"]) <= time.time() + 2 * 3600 + 5
    assert all("payments" not in a.state.partitions for a in tenants.appliances)


def _table_items() -> list[dict[str, Any]]:
    return list(Coordinator(boto3.client("dynamodb"), TABLE).records())


# --------------------------------------------------------------------------------------------------
# The engine: ownership records, one HSM Admin at a time


@pytest.fixture
def lab(aws_env: None) -> Iterator[Lab]:
    with mock_aws(), running_lab(2) as started:
        yield started


ID = "luna-ha/stack-a/Group/payments/0000aaaa"
OTHER = "luna-ha/stack-b/Group/orders/0000bbbb"


def test_two_groups_with_a_wrong_admin_password_send_one_hsm_login_between_them(lab: Lab) -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    value = json.loads(sm.get_secret_value(SecretId="luna/admin")["SecretString"])
    sm.put_secret_value(SecretId="luna/admin", SecretString=json.dumps({**value, "password": "Wrong-1"}))
    lab.appliances[0].faults.set_latency(0.5, "hsm login")  # both runs reach the login together
    first = lab.spec(members=[0])
    second = lab.spec(members=[0], PartitionName="orders", GroupLabel="orders-ha")

    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(lab.engine().apply, first, ID), pool.submit(lab.engine().apply, second, OTHER)]
        errors = [run.exception(timeout=120) for run in runs]

    assert all(isinstance(e, GroupRunError) for e in errors)
    logins = [e for e in lab.appliances[0].journal.entries() if e.command == "hsm login"]
    assert len(logins) == 1
    assert lab.appliances[0].state.attempts_left == 2  # one wrong attempt, not two
    assert any("attempts left" in str(e) for e in errors)  # the second run's guard refused


def test_a_stale_hsm_admin_lease_is_taken_over_by_one_run_and_then_refused_to_the_next(lab: Lab) -> None:
    # One conditional write decides (DynamoDB's guarantee), not a read followed by an overwrite:
    # once a run has taken the dead run's lease over, the next contender finds a live lease.
    dead = lab.coordinator()
    assert dead.acquire_admin("SHA256:x", holder="dead", until=time.time() - 1, group="/g") is None
    first, second = lab.coordinator(), lab.coordinator()

    assert first.acquire_admin("SHA256:x", holder="run-1", until=time.time() + 60, group="/g") is None
    refused = second.acquire_admin("SHA256:x", holder="run-2", until=time.time() + 60, group="/g")

    assert refused is not None and refused.holder == "run-1" and refused.group == "/g"


def test_a_dead_runs_lease_stops_blocking_at_its_own_deadline(lab: Lab) -> None:
    coordinator = lab.coordinator()
    assert coordinator.acquire_admin("SHA256:y", holder="dead", until=time.time() + 1.0, group="/g") is None
    blocked = coordinator.acquire_admin("SHA256:y", holder="next", until=time.time() + 60, group="/g")
    assert blocked is not None and blocked.holder == "dead"
    time.sleep(1.1)
    assert coordinator.acquire_admin("SHA256:y", holder="next", until=time.time() + 60, group="/g") is None


@pytest.mark.parametrize("after_execute", [False, True], ids=["before-create", "after-create"])
def test_a_run_killed_around_partition_create_still_owns_what_it_created(
    lab: Lab, after_execute: bool
) -> None:
    spec = lab.spec(PartitionDeletionPolicy="Delete")
    lab.appliances[1].faults.drop(command="partition create", after_execute=after_execute)
    with pytest.raises(GroupRunError, match=r"127\.0\.0\.2.*partition create"):
        lab.engine().apply(spec, ID)
    lab.appliances[1].faults.clear()
    hsm = lab.appliances[1].state.serial
    recorded = lab.coordinator().partition_record(hsm, "payments")
    assert recorded is not None and recorded.owner == ID  # recorded before the command was sent

    assert lab.engine().apply(spec, ID).ok
    recorded = lab.coordinator().partition_record(hsm, "payments")
    assert recorded is not None and recorded.serial == lab.appliances[1].state.partitions["payments"].serial

    assert lab.engine().destroy(spec, ID).ok
    assert all("payments" not in a.state.partitions for a in lab.appliances)
    assert lab.coordinator().partition_record(hsm, "payments") is None


def test_an_adopted_partition_is_used_and_never_deleted(lab: Lab) -> None:
    for appliance in lab.appliances:
        appliance.state.add_partition("payments", lab.partition_password, lab.domain)
    spec = lab.spec(ExistingPartition="Adopt", PartitionDeletionPolicy="Delete")

    planned = lab.engine().plan(spec, ID)
    assert [str(s) for s in planned.appliances[0].planned][:1] == ["adopt partition payments"]
    assert lab.engine().apply(spec, ID).ok
    assert lab.engine().plan(spec, ID).appliances[0].planned == ()

    assert lab.engine().destroy(spec, ID).ok
    assert all("payments" in a.state.partitions for a in lab.appliances)
    assert all(not e.line.startswith("partition delete") for a in lab.appliances for e in a.journal.entries())
    assert lab.coordinator().partition_record(lab.appliances[0].state.serial, "payments") is None


def test_a_retained_partition_serves_the_same_resource_again_and_may_be_adopted_by_another(lab: Lab) -> None:
    spec = lab.spec()
    assert lab.engine().apply(spec, ID).ok
    assert lab.engine().destroy(spec, ID).ok  # Retain: the partition stays, recorded as retained
    assert lab.engine().apply(spec, ID).ok  # a retried Create after its rollback: the same id

    assert lab.engine().destroy(spec, ID).ok
    other = lab.spec(ExistingPartition="Adopt", ParameterPath="/luna-ha/other")
    with pytest.raises(GroupRunError, match="not created by this resource"):
        lab.engine().apply(lab.spec(ParameterPath="/luna-ha/other"), OTHER)
    assert lab.engine().apply(other, OTHER).ok


# --------------------------------------------------------------------------------------------------
# The CLI keeps the same rules


@pytest.fixture
def cli_lab(aws_env: None) -> Iterator[tuple[list[SimulatedAppliance], LabSecrets]]:
    with served_lab(2) as started:
        yield started


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_the_cli_refuses_another_groups_partition_and_path(
    cli_lab: tuple[list[SimulatedAppliance], LabSecrets], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    appliances, _ = cli_lab
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(yaml.safe_dump(group_properties(appliances)))
    assert run_cli("apply", "-c", str(first))[0] == 0
    serials = [a.state.partitions["payments"].serial for a in appliances]

    copy = group_properties(appliances, ParameterPath="/luna-ha/copy", PartitionDeletionPolicy="Delete")
    second.write_text(yaml.safe_dump(copy))
    code, output = run_cli("apply", "-c", str(second), "--id", "someone-else")
    assert code == 1 and "not created by this resource" in output
    assert run_cli("destroy", "-c", str(second), "--id", "someone-else", "--yes")[0] == 0

    same_path = group_properties(appliances, PartitionName="orders", ParameterPath=PATH)
    second.write_text(yaml.safe_dump(same_path))
    code, _ = run_cli("apply", "-c", str(second))
    assert code == 1 and "Property ParameterPath: /luna-ha/payments belongs to another resource" in (
        capsys.readouterr().err
    )
    assert [a.state.partitions["payments"].serial for a in appliances] == serials


def test_the_cli_says_which_table_it_needs(
    cli_lab: tuple[list[SimulatedAppliance], LabSecrets],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    appliances, _ = cli_lab
    group = tmp_path / "group.yaml"
    group.write_text(yaml.safe_dump(group_properties(appliances)))
    monkeypatch.delenv("LUNA_HA_TABLE")

    code, _ = run_cli("plan", "-c", str(group))

    assert code == 1
    assert "no coordination table: give --table or set LUNA_HA_TABLE" in capsys.readouterr().err
    assert run_cli("plan", "-c", str(group), "--table", TABLE)[0] == 3  # ran: changes are pending


def test_duplicated_events_claiming_the_same_path_at_once_all_get_it(lab: Lab) -> None:
    # Their transactions touch the same items (the path and its ancestors) at the same moment:
    # a conflict is tried again, never reported as another group's path.
    def claim(_: int) -> None:
        lab.coordinator().claim_path("/luna-ha/team/payments", owner="luna-ha/s/Group/0001", holder=ID)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(claim, range(8)))

    claimed = lab.coordinator().path_claim("/luna-ha/team/payments")
    assert claimed is not None and claimed.holder == ID
