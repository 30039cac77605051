"""The planner as a specification: given a goal and an observed appliance, exactly these steps."""

from __future__ import annotations

import pytest

from luna_ha.errors import ApplianceError, ZeroizationGuard
from luna_ha.planner import (
    Action,
    ApplianceGoal,
    ApplianceState,
    PartitionClaim,
    PartitionRoles,
    Registration,
    Step,
    plan_appliance,
)
from luna_ha.software import Software

TOKEN = "3f2a1c"
WEB0 = f"web-{TOKEN}-r0"
WEB1 = f"web-{TOKEN}-r1"
FP0 = "AA:" * 15 + "00"
FP1 = "AA:" * 15 + "01"


def goal(**overrides: object) -> ApplianceGoal:
    values: dict[str, object] = {
        "host": "hsm-a",
        "partition": "payments",
        "token": TOKEN,
        "registrations": {WEB0: FP0},
        "claim": PartitionClaim.CREATED,  # the partition, where it exists, is this resource's
    }
    values.update(overrides)
    return ApplianceGoal(**values)  # type: ignore[arg-type]


def state(**overrides: object) -> ApplianceState:
    values: dict[str, object] = {
        "hsm_serial": "157541",
        "hsm_label": "hsm-a",
        "zeroized": False,
        "attempts_left": 3,
        "partitions": {},
        "clients": (),
        "registrations": {},
    }
    values.update(overrides)
    return ApplianceState(**values)  # type: ignore[arg-type]


def converged(**overrides: object) -> ApplianceState:
    values: dict[str, object] = {
        "partitions": {"payments": "157541008"},
        "clients": (WEB0,),
        "registrations": {WEB0: Registration(WEB0, WEB0, ("payments",), FP0)},
    }
    values.update(overrides)
    return state(**values)


def actions(steps: tuple[Step, ...]) -> list[str]:
    return [str(s) for s in steps]


def test_fresh_initialized_appliance_gets_partition_then_registration() -> None:
    assert actions(plan_appliance(goal(), state())) == [
        "hsm login",
        "partition create payments",
        f"upload certificate {WEB0}",
        f"client register {WEB0}",
        f"my file delete {WEB0}.pem",
        f"client assignPartition {WEB0} -partition payments",
    ]


def test_converged_appliance_needs_nothing() -> None:
    assert plan_appliance(goal(), converged()) == ()


def test_zeroized_hsm_with_initialize_is_initialized_first() -> None:
    steps = plan_appliance(goal(initialize=True, hsm_label="hsm-a"), state(zeroized=True, attempts_left=None))
    assert [s.action for s in steps[:5]] == [
        Action.HSM_INIT,
        Action.REGEN_CERT,
        Action.NTLS_BIND,
        Action.HSM_LOGIN,
        Action.PARTITION_CREATE,
    ]
    assert steps[0].target == "hsm-a"


def test_zeroized_hsm_without_initialize_is_an_error_naming_the_appliance() -> None:
    with pytest.raises(ApplianceError, match="hsm-a.*zeroized.*Initialize"):
        plan_appliance(goal(), state(zeroized=True, attempts_left=None))


def test_initialized_hsm_is_never_reinitialized_even_with_initialize() -> None:
    steps = plan_appliance(goal(initialize=True, hsm_label="hsm-a"), converged())
    assert steps == ()


def test_half_done_initialization_is_finished_before_the_partition() -> None:
    # hsm init ran, the run stopped before regenCert: the label matches and there is no partition yet.
    steps = plan_appliance(goal(initialize=True, hsm_label="hsm-a"), state())
    assert [s.action for s in steps[:3]] == [Action.REGEN_CERT, Action.NTLS_BIND, Action.HSM_LOGIN]


def test_initialize_on_a_foreign_label_does_not_regenerate_the_server_certificate() -> None:
    steps = plan_appliance(goal(initialize=True, hsm_label="hsm-a"), state(hsm_label="someone-else"))
    assert Action.REGEN_CERT not in [s.action for s in steps]


@pytest.mark.parametrize("attempts", [2, 1, 0, None])
def test_login_is_refused_unless_every_attempt_remains(attempts: int | None) -> None:
    with pytest.raises(ZeroizationGuard, match="hsm-a.*hsm login"):
        plan_appliance(goal(), state(attempts_left=attempts))


def test_no_login_needed_no_guard_even_with_attempts_used() -> None:
    observed = converged(attempts_left=1, clients=(), registrations={})
    assert [s.action for s in plan_appliance(goal(), observed)] == [
        Action.UPLOAD_CERT,
        Action.CLIENT_REGISTER,
        Action.FILE_DELETE,
        Action.CLIENT_ASSIGN,
    ]


def test_registered_but_unassigned_client_is_only_assigned() -> None:
    observed = converged(registrations={WEB0: Registration(WEB0, WEB0, (), FP0)})
    assert actions(plan_appliance(goal(), observed)) == [f"client assignPartition {WEB0} -partition payments"]


def test_rotation_registers_new_generation_and_keeps_the_previous() -> None:
    steps = plan_appliance(goal(registrations={WEB0: FP0, WEB1: FP1}), converged())
    assert [s.target for s in steps] == [WEB1, WEB1, f"{WEB1}.pem", WEB1]
    assert Action.CLIENT_DELETE not in [s.action for s in steps]


def test_generation_no_longer_wanted_is_revoked_then_deleted() -> None:
    web2 = f"web-{TOKEN}-r2"
    observed = converged(
        clients=(WEB0, WEB1),
        registrations={
            WEB0: Registration(WEB0, WEB0, ("payments",), FP0),
            WEB1: Registration(WEB1, WEB1, ("payments",), FP1),
        },
    )
    steps = plan_appliance(goal(registrations={WEB1: FP1, web2: FP0}), observed)
    assert actions(steps)[-2:] == [
        f"client revokePartition {WEB0} -partition payments",
        f"client delete {WEB0}",
    ]
    assert f"client register {web2}" in actions(steps)


def test_the_uploaded_certificate_is_deleted_once_registered() -> None:
    created = actions(plan_appliance(goal(), state()))
    assert created.index(f"my file delete {WEB0}.pem") == created.index(f"client register {WEB0}") + 1

    # removing a registration deletes no file: one left by a stopped run is in leftover_files
    removed = actions(plan_appliance(goal(present=False), converged()))
    assert not any(step.startswith("my file delete") for step in removed)


def test_registrations_of_others_are_never_touched() -> None:
    others = ("web-999999-r0", "app01", "web-3f2a1c-rX", "web-3F2A1C-r0", f"{WEB0}.example.com")
    observed = converged(clients=(WEB0, *others))
    assert plan_appliance(goal(), observed) == ()
    assert plan_appliance(goal(present=False, claim=PartitionClaim.NONE), observed) == (
        Step(Action.CLIENT_REVOKE, WEB0, "payments"),
        Step(Action.CLIENT_DELETE, WEB0),
    )


def test_registration_with_another_certificate_is_replaced() -> None:
    observed = converged(registrations={WEB0: Registration(WEB0, WEB0, ("payments",), FP1)})
    assert [s.action for s in plan_appliance(goal(), observed)] == [
        Action.CLIENT_REVOKE,
        Action.CLIENT_DELETE,
        Action.UPLOAD_CERT,
        Action.CLIENT_REGISTER,
        Action.FILE_DELETE,
        Action.CLIENT_ASSIGN,
    ]


def test_leaving_appliance_keeps_its_partition_under_retain() -> None:
    steps = plan_appliance(goal(present=False, delete_partition=False), converged())
    assert Action.PARTITION_DELETE not in [s.action for s in steps]
    assert Action.HSM_LOGIN not in [s.action for s in steps]


def test_leaving_appliance_deletes_its_partition_under_delete_after_clients() -> None:
    steps = plan_appliance(goal(present=False, delete_partition=True), converged())
    assert actions(steps) == [
        f"client revokePartition {WEB0} -partition payments",
        f"client delete {WEB0}",
        "hsm login",
        "partition delete payments",
        "forget partition payments",
    ]


def test_partition_delete_is_guarded_by_the_login_attempts_too() -> None:
    with pytest.raises(ZeroizationGuard):
        plan_appliance(goal(present=False, delete_partition=True), converged(attempts_left=2))


def test_destroy_on_an_appliance_with_nothing_of_ours_is_empty() -> None:
    observed = state(partitions={"payments": "157541008"}, clients=("someone",))
    assert plan_appliance(goal(present=False, claim=PartitionClaim.NONE), observed) == ()


# -- whose partition ------------------------------------------------------------------------------


def test_a_same_named_partition_this_resource_did_not_create_fails_the_plan() -> None:
    with pytest.raises(ApplianceError, match=r"payments \(serial 157541008\) already exists.*Adopt"):
        plan_appliance(goal(claim=PartitionClaim.NONE), converged())


def test_adopting_an_existing_partition_records_it_and_changes_nothing_on_the_appliance() -> None:
    assert actions(plan_appliance(goal(claim=PartitionClaim.NONE, adopt=True), converged())) == [
        "adopt partition payments"
    ]


def test_an_adopted_partition_is_used_without_a_new_record() -> None:
    assert plan_appliance(goal(claim=PartitionClaim.ADOPTED, adopt=True), converged()) == ()


def test_a_partition_of_someone_else_is_never_deleted_whatever_the_policy() -> None:
    steps = plan_appliance(goal(present=False, delete_partition=True, claim=PartitionClaim.NONE), converged())
    assert Action.PARTITION_DELETE not in [s.action for s in steps]
    assert Action.HSM_LOGIN not in [s.action for s in steps]


def test_an_adopted_partition_is_forgotten_not_deleted_under_delete() -> None:
    steps = plan_appliance(
        goal(present=False, delete_partition=True, claim=PartitionClaim.ADOPTED), converged()
    )
    assert actions(steps) == [
        f"client revokePartition {WEB0} -partition payments",
        f"client delete {WEB0}",
        "forget partition payments",
    ]


def test_a_created_partition_kept_under_retain_stays_recorded_as_retained() -> None:
    steps = plan_appliance(goal(present=False, delete_partition=False), converged())
    assert actions(steps)[-1] == "retain partition payments"
    assert Action.FORGET_PARTITION not in [s.action for s in steps]
    assert Action.PARTITION_DELETE not in [s.action for s in steps]


def test_a_missing_partition_is_created_even_when_adoption_is_allowed() -> None:
    assert actions(plan_appliance(goal(claim=PartitionClaim.NONE, adopt=True), state()))[:2] == [
        "hsm login",
        "partition create payments",
    ]


def test_replanning_after_each_partial_run_gives_the_remaining_steps() -> None:
    full = plan_appliance(goal(), state())
    # after login + partition create, only the client steps remain
    partway = state(partitions={"payments": "157541008"})
    assert plan_appliance(goal(), partway) == full[2:]


def test_a_file_a_stopped_run_uploaded_and_never_deleted_is_deleted() -> None:
    leftover = f"{WEB0}.pem"
    assert actions(plan_appliance(goal(leftover_files=frozenset({leftover})), converged())) == [
        f"my file delete {leftover}"
    ]


def test_a_leftover_file_about_to_be_uploaded_again_is_deleted_once_after_the_registration() -> None:
    steps = actions(plan_appliance(goal(leftover_files=frozenset({f"{WEB0}.pem"})), state()))
    assert steps.count(f"my file delete {WEB0}.pem") == 1
    assert steps.index(f"my file delete {WEB0}.pem") > steps.index(f"client register {WEB0}")


def test_the_record_of_a_partition_that_was_never_made_is_forgotten() -> None:
    # a run recorded `partition create`, then died before sending it
    steps = plan_appliance(goal(present=False), converged(partitions={}))
    assert actions(steps)[-1] == "forget partition payments"


# --- Luna Network HSM 7 --------------------------------------------------------------------------

LUNA_78 = Software.parse("7.8.5-20")
LUNA_72 = Software.parse("7.2.0-220")
READY = PartitionRoles(initialized=True, co_initialized=True)


def state7(software: Software | None = LUNA_78, **overrides: object) -> ApplianceState:
    return state(software=software, **overrides)


def converged7(**overrides: object) -> ApplianceState:
    values: dict[str, object] = {"roles": {"payments": READY}}
    values.update(overrides)
    return converged(software=LUNA_78, partitions={"payments": "1582775433934"}, **values)


def test_luna7_partition_is_created_initialized_and_its_crypto_officer_made_ready_by_lunash() -> None:
    assert actions(plan_appliance(goal(), state7()))[:5] == [
        "hsm login",
        "partition create payments",
        "partition init payments",
        "partition init co payments",
        "change crypto officer password payments (REST)",
    ]


def test_before_7_8_1_the_partition_is_initialized_over_rest() -> None:
    assert actions(plan_appliance(goal(), state7(LUNA_72)))[:5] == [
        "hsm login",
        "partition create payments",
        "partition init payments (REST)",
        "partition init co payments (REST)",
        "change crypto officer password payments (REST)",
    ]


def test_luna7_converged_appliance_needs_nothing() -> None:
    assert plan_appliance(goal(), converged7()) == ()


def test_a_run_killed_after_partition_create_initializes_without_creating_again() -> None:
    observed = converged7(roles={"payments": PartitionRoles(initialized=False)})
    assert actions(plan_appliance(goal(), observed)) == [
        "hsm login",
        "partition init payments",
        "partition init co payments",
        "change crypto officer password payments (REST)",
    ]


def test_a_run_killed_between_crypto_officer_init_and_its_password_change_only_changes_it() -> None:
    expired = PartitionRoles(initialized=True, co_initialized=True, co_password_expired=True)
    assert actions(plan_appliance(goal(), converged7(roles={"payments": expired}))) == [
        "change crypto officer password payments (REST)"
    ]


def test_an_initialized_partition_is_never_initialized_again() -> None:
    no_co = PartitionRoles(initialized=True)
    steps = plan_appliance(goal(), converged7(roles={"payments": no_co}))
    assert Action.PARTITION_INIT not in {s.action for s in steps}
    assert actions(steps) == ["partition init co payments", "change crypto officer password payments (REST)"]


def test_an_adopted_luna7_partition_must_be_ready_already() -> None:
    observed = converged7(roles={"payments": PartitionRoles(initialized=False)})
    with pytest.raises(ApplianceError, match="not created by this resource and is not ready"):
        plan_appliance(goal(claim=PartitionClaim.ADOPTED), observed)


def test_a_locked_out_crypto_officer_fails_the_appliance() -> None:
    locked = PartitionRoles(initialized=True, co_initialized=True, co_locked_out=True)
    with pytest.raises(ApplianceError, match="locked out"):
        plan_appliance(goal(), converged7(roles={"payments": locked}))


def test_luna7_initialization_restarts_ntls_after_the_new_certificate() -> None:
    steps = actions(plan_appliance(goal(initialize=True, hsm_label="hsm-a"), state7(zeroized=True)))
    assert steps[:4] == ["hsm init hsm-a", "sysconf regenCert", "ntls bind", "service restart ntls"]
