"""The engine against simulated appliances (real SSH) and moto (Secrets Manager, SSM)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from moto import mock_aws

from luna_ha.certs import certificate_common_name
from luna_ha.engine import GroupRunError
from luna_ha.ownership import ownership_token
from tests.functional.lab import Lab, running_lab

ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo/1|Group|payments"
TOKEN = ownership_token(ID)
WEB0 = f"web-{TOKEN}-r0"
WEB1 = f"web-{TOKEN}-r1"
WEB2 = f"web-{TOKEN}-r2"
PATH = "/luna-ha/payments"


@pytest.fixture
def lab(aws_env: None) -> Iterator[Lab]:
    with mock_aws(), running_lab(3) as started:
        yield started


def clients_on(lab: Lab, index: int) -> dict[str, tuple[str, ...]]:
    state = lab.appliances[index].state
    return {name: tuple(sorted(c.partitions)) for name, c in state.clients.items()}


def test_apply_on_fresh_appliances_creates_partition_registers_client_and_publishes(lab: Lab) -> None:
    spec = lab.spec()
    report = lab.engine(spec).apply(spec, ID)

    assert report.ok
    for i in (0, 1):
        assert "payments" in lab.appliances[i].state.partitions
        assert clients_on(lab, i) == {WEB0: ("payments",)}
    assert clients_on(lab, 2) == {}  # not a member
    params = lab.parameters()
    group = json.loads(params[f"{PATH}/group"])
    serials = [lab.appliances[i].state.partitions["payments"].serial for i in (0, 1)]
    assert [m["serial"] for m in group["members"]] == serials
    assert group["ha_group_serial"] == "1" + serials[0]
    assert group["owner"] == ID
    assert params[f"{PATH}/clients/web/current"] == WEB0
    assert certificate_common_name(params[f"{PATH}/clients/web/{WEB0}/cert"]) == WEB0
    assert "PRIVATE KEY" in params[f"{PATH}/clients/web/{WEB0}/key"]
    assert report.data["PartitionSerials"] == ",".join(serials)
    assert report.data["ClientRegistrations"] == f"web={WEB0}"
    assert all(a.connections == 1 for a in report.appliances)


def test_second_apply_sends_no_mutating_command_and_writes_no_parameter(lab: Lab) -> None:
    spec = lab.spec()
    first = lab.engine(spec).apply(spec, ID)
    marks = lab.mutating_marks()
    second = lab.engine(spec).apply(spec, ID)

    assert lab.mutating_since(marks) == []
    assert second.parameters_put == () and second.parameters_deleted == ()
    assert second.data == first.data
    assert all(a.mutating == 0 and not a.done for a in second.appliances)


def test_plan_changes_nothing_and_lists_the_steps(lab: Lab) -> None:
    spec = lab.spec()
    marks = lab.mutating_marks()
    report = lab.engine(spec).plan(spec, ID)

    assert lab.mutating_since(marks) == []
    assert lab.parameters() == {}
    assert [str(s) for s in report.appliances[0].planned] == [
        "hsm login",
        "partition create payments",
        f"upload certificate {WEB0}",
        f"client register {WEB0}",
        f"my file delete {WEB0}.pem",
        f"client assignPartition {WEB0} -partition payments",
    ]


def test_plan_after_apply_is_empty(lab: Lab) -> None:
    spec = lab.spec()
    lab.engine().apply(spec, ID)
    report = lab.engine().plan(spec, ID)
    assert [a.planned for a in report.appliances] == [(), ()]


def test_apply_on_half_configured_appliances_only_does_what_is_missing(lab: Lab) -> None:
    spec = lab.spec()
    lab.appliances[1].faults.drop(command="client assignPartition")
    with pytest.raises(GroupRunError, match=r"127\.0\.0\.2.*client assignPartition"):
        lab.engine(spec).apply(spec, ID)
    lab.appliances[1].faults.clear()
    marks = lab.mutating_marks()

    report = lab.engine(spec).apply(spec, ID)

    assert report.ok
    assert [str(s) for s in report.appliances[1].done] == [
        f"client assignPartition {WEB0} -partition payments"
    ]
    assert lab.mutating_since(marks) == [
        f"{lab.appliances[1].hostname}: client assignPartition -client {WEB0} -partition payments"
    ]


def test_rotation_keeps_previous_generation_and_drops_the_one_before(lab: Lab) -> None:
    engine = lab.engine()
    engine.apply(lab.spec(clients={"web": 0}), ID)
    engine.apply(lab.spec(clients={"web": 1}), ID)

    assert set(clients_on(lab, 0)) == {WEB0, WEB1}
    params = lab.parameters()
    assert params[f"{PATH}/clients/web/current"] == WEB1
    assert {f"{PATH}/clients/web/{WEB0}/key", f"{PATH}/clients/web/{WEB1}/key"} <= set(params)

    engine.apply(lab.spec(clients={"web": 2}), ID)

    assert set(clients_on(lab, 0)) == {WEB1, WEB2}
    params = lab.parameters()
    assert params[f"{PATH}/clients/web/current"] == WEB2
    assert not any(WEB0 in name for name in params)


def test_add_and_remove_an_appliance(lab: Lab) -> None:
    engine = lab.engine()
    engine.apply(lab.spec(members=[0, 1]), ID)
    engine.apply(lab.spec(members=[0, 1, 2]), ID)
    assert clients_on(lab, 2) == {WEB0: ("payments",)}

    report = engine.apply(lab.spec(members=[0, 2]), ID)

    assert clients_on(lab, 1) == {}
    assert "payments" in lab.appliances[1].state.partitions  # Retain: a partition holds keys
    leaving = [a for a in report.appliances if a.leaving]
    assert [a.host for a in leaving] == ["127.0.0.2"]
    group = json.loads(lab.parameters()[f"{PATH}/group"])
    assert [m["host"] for m in group["members"]] == ["127.0.0.1", "127.0.0.3"]
    assert not any("127.0.0.2" in name for name in lab.parameters())


def test_add_and_remove_a_client(lab: Lab) -> None:
    engine = lab.engine()
    engine.apply(lab.spec(clients={"web": 0}), ID)
    engine.apply(lab.spec(clients={"web": 0, "batch": 0}), ID)
    batch = f"batch-{TOKEN}-r0"
    assert set(clients_on(lab, 0)) == {WEB0, batch}

    engine.apply(lab.spec(clients={"batch": 0}), ID)

    assert set(clients_on(lab, 0)) == {batch}
    assert not any("/clients/web/" in name for name in lab.parameters())


def test_destroy_keeps_partitions_under_retain(lab: Lab) -> None:
    spec = lab.spec()
    engine = lab.engine()
    engine.apply(spec, ID)
    lab.appliances[0].state.clients  # noqa: B018 - touch: state readable
    report = engine.destroy(spec, ID)

    assert report.ok
    for i in (0, 1):
        assert clients_on(lab, i) == {}
        assert "payments" in lab.appliances[i].state.partitions
    assert lab.parameters() == {}


def uploaded(lab: Lab) -> dict[str, list[str]]:
    """The files each appliance's home directory holds besides its own server.pem."""
    return {a.host: sorted(set(a.state.files) - {"server.pem"}) for a in lab.appliances}


def test_uploaded_certificates_are_removed_after_create_rotation_and_delete(lab: Lab) -> None:
    nothing = {a.host: [] for a in lab.appliances}
    engine = lab.engine()
    assert engine.apply(lab.spec(), ID).ok
    assert uploaded(lab) == nothing
    assert engine.apply(lab.spec(clients={"web": 1}), ID).ok
    assert uploaded(lab) == nothing
    assert engine.destroy(lab.spec(clients={"web": 1}), ID).ok
    assert uploaded(lab) == nothing


def test_a_certificate_left_by_a_run_that_stopped_after_registering_is_deleted_by_the_next(lab: Lab) -> None:
    lab.appliances[0].faults.drop(command="my file delete")
    with pytest.raises(GroupRunError, match=r"127\.0\.0\.1.*my file delete"):
        lab.engine().apply(lab.spec(), ID)
    lab.appliances[0].faults.clear()
    assert uploaded(lab)[lab.appliances[0].host] == [f"{WEB0}.pem"]

    report = lab.engine().apply(lab.spec(), ID)  # the upload was recorded: this run deletes it

    assert report.ok and f"my file delete {WEB0}.pem" in [str(s) for s in report.appliances[0].done]
    assert uploaded(lab)[lab.appliances[0].host] == []
    assert lab.engine().apply(lab.spec(), ID).appliances[0].done == []  # and nothing after that


def test_destroy_deletes_partitions_under_delete_policy(lab: Lab) -> None:
    spec = lab.spec(PartitionDeletionPolicy="Delete")
    engine = lab.engine()
    engine.apply(spec, ID)
    engine.destroy(spec, ID)

    for i in (0, 1):
        assert "payments" not in lab.appliances[i].state.partitions


def test_destroy_leaves_registrations_of_others_alone(lab: Lab) -> None:
    engine = lab.engine()
    first = "luna-ha/demo/Group/payments/0badcafe"
    engine.apply(lab.spec(), first)
    # a replacement of the same logical resource (a new PartitionName) takes the path over
    other = "luna-ha/demo/Group/payments2/0badcafe"
    engine.apply(lab.spec(PartitionName="payments2", ParameterPath=PATH), other)
    engine.destroy(lab.spec(), first)

    other_web = f"web-{ownership_token(other)}-r0"
    assert set(clients_on(lab, 0)) == {other_web}
    assert json.loads(lab.parameters()[f"{PATH}/group"])["owner"] == other


def test_unreachable_appliance_fails_naming_it_while_others_converge(lab: Lab) -> None:
    lab.appliances[1].faults.refuse()
    spec = lab.spec()
    with pytest.raises(GroupRunError) as caught:
        lab.engine().apply(spec, ID)

    message = str(caught.value)
    assert "127.0.0.2" in message and "connect" in message
    assert clients_on(lab, 0) == {WEB0: ("payments",)}
    lab.appliances[1].faults.clear()
    assert lab.engine().apply(spec, ID).ok


def test_wrong_host_key_is_refused_before_credentials_are_sent(lab: Lab) -> None:
    lab.appliances[0].faults.wrong_host_key()
    with pytest.raises(GroupRunError, match=r"127\.0\.0\.1.*not the pinned host key"):
        lab.engine().apply(lab.spec(), ID)
    assert lab.appliances[0].journal.commands() == []


def test_zeroization_guard_refuses_login_with_attempts_used(lab: Lab) -> None:
    lab.appliances[0].state.attempts_left = 2
    with pytest.raises(GroupRunError, match=r"127\.0\.0\.1.*hsm login.*2 of 3 attempts"):
        lab.engine().apply(lab.spec(), ID)
    assert not any(e.command == "hsm login" for e in lab.appliances[0].journal.entries())


def test_secrets_never_reach_progress_errors_or_string_parameters(lab: Lab) -> None:
    lab.appliances[1].faults.fail("partition create")
    with pytest.raises(GroupRunError) as caught:
        lab.engine().apply(lab.spec(), ID)
    lab.appliances[1].faults.clear()
    lab.engine().apply(lab.spec(), ID)

    journal = "\n".join(e.line for a in lab.appliances for e in a.journal.entries())
    strings = "\n".join(v for k, v in lab.parameters().items() if not k.endswith("/key"))
    for secret in lab.secret_values:
        assert secret not in str(caught.value)
        assert secret not in "\n".join(lab.progress)
        assert secret not in strings
        assert secret not in journal
