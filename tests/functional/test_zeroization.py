"""Zeroization safety: three failed HSM Admin logins zeroize a Luna HSM (every partition and key gone).

What must hold on every code path:

* ``hsm login`` is sent only while ``hsm show`` reports all 3 attempts left, at most once per
  session, and never again after a login failed: not in the same run, not in a later one, not in
  a run of another event that was already under way;
* ``hsm init`` runs only on a zeroized HSM with ``Initialize: true``, and never on an initialized
  one (nor twice, when the answer to the first was lost).

The pure planner and step runner are checked over generated states and plans (hypothesis); the
engine against simulated appliances, whose HSM counts attempts and zeroizes like the real one.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from luna_ha import admin_guard
from luna_ha.appliance import GroupSecrets, apply_steps
from luna_ha.clock import Deadline
from luna_ha.coordination import AdminLease, CoordinationError, Coordinator
from luna_ha.engine import GroupRunError
from luna_ha.errors import ApplianceError, CommandFailed, ZeroizationGuard
from luna_ha.lunash.commands import Command
from luna_ha.ownership import ownership_token
from luna_ha.planner import (
    ALL_LOGIN_ATTEMPTS,
    Action,
    ApplianceGoal,
    ApplianceState,
    PartitionClaim,
    Registration,
    Step,
    plan_appliance,
)
from luna_ha.sim.server import SimulatedAppliance
from luna_ha.spec import parse_properties
from luna_ha_lab.localaws import fingerprints
from tests.functional.lab import Lab, running_lab

ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/zero/1|Group|payments"
TOKEN = ownership_token(ID)
OTHER_TOKEN = ownership_token("someone else")
PATH = "/luna-ha/payments"


# --------------------------------------------------------------------------------------------------
# The planner, over generated appliance states and goals

NAMES = [f"web-{TOKEN}-r{n}" for n in range(3)] + [f"web-{OTHER_TOKEN}-r0", "legacy-app"]
FINGERPRINTS = ["AA:01", "BB:02"]

registrations = st.dictionaries(
    st.sampled_from(NAMES),
    st.builds(
        lambda partitions, fingerprint: (partitions, fingerprint),
        st.lists(st.sampled_from(["payments", "orders"]), unique=True, max_size=2),
        st.sampled_from([*FINGERPRINTS, None]),
    ),
    max_size=4,
)


@st.composite
def observed_states(draw: st.DrawFn) -> ApplianceState:
    zeroized = draw(st.booleans())
    found = draw(registrations)
    return ApplianceState(
        hsm_serial="150001",
        hsm_label=draw(st.sampled_from(["no label", "hsm-a", "hsm-b", None])),
        zeroized=zeroized,
        attempts_left=draw(st.sampled_from([None, 0, 1, 2, 3])),
        partitions={}
        if zeroized
        else draw(st.dictionaries(st.sampled_from(["payments", "orders"]), st.just("1"))),
        clients=() if zeroized else tuple(found),
        registrations={} if zeroized else {n: Registration(n, n, p, f) for n, (p, f) in found.items()},
    )


goals = st.builds(
    ApplianceGoal,
    host=st.just("10.0.0.2"),
    partition=st.just("payments"),
    token=st.just(TOKEN),
    present=st.booleans(),
    initialize=st.booleans(),
    hsm_label=st.sampled_from([None, "hsm-a", "hsm-b"]),
    registrations=st.dictionaries(st.sampled_from(NAMES[:3]), st.sampled_from(FINGERPRINTS), max_size=2),
    delete_partition=st.booleans(),
    claim=st.sampled_from(list(PartitionClaim)),
    adopt=st.booleans(),
).filter(lambda goal: goal.hsm_label is not None or not goal.initialize)  # the spec requires HsmLabel


def _plan_or_refusal(goal: ApplianceGoal, observed: ApplianceState) -> tuple[Step, ...] | ApplianceError:
    try:
        return plan_appliance(goal, observed)
    except ApplianceError as refusal:
        return refusal


@settings(max_examples=1500, deadline=None)
@given(goal=goals, observed=observed_states())
def test_the_planner_logs_in_once_with_every_attempt_left_and_inits_only_a_zeroized_hsm(
    goal: ApplianceGoal, observed: ApplianceState
) -> None:
    planned = _plan_or_refusal(goal, observed)
    if isinstance(planned, ZeroizationGuard):
        assert observed.attempts_left != ALL_LOGIN_ATTEMPTS and planned.step == "hsm login"
        return
    if isinstance(planned, ApplianceError) and planned.step == "partition create":
        # a same-named partition this resource did not create, and no adoption: nothing may be done
        assert goal.present and goal.claim is PartitionClaim.NONE and not goal.adopt
        assert goal.partition in observed.partitions
        return
    if isinstance(planned, ApplianceError):  # a zeroized HSM without Initialize: nothing may be done
        assert observed.zeroized and goal.present and not goal.initialize and planned.step == "hsm init"
        return
    actions = [s.action for s in planned]
    assert actions.count(Action.HSM_LOGIN) <= 1
    assert actions.count(Action.HSM_INIT) <= 1
    if Action.HSM_INIT in actions:
        assert observed.zeroized and goal.initialize and goal.present and actions[0] is Action.HSM_INIT
    elif Action.HSM_LOGIN in actions:
        assert observed.attempts_left == ALL_LOGIN_ATTEMPTS and not observed.zeroized
    for needs_login in (Action.PARTITION_CREATE, Action.PARTITION_DELETE):
        if needs_login in actions:
            assert Action.HSM_LOGIN in actions[: actions.index(needs_login)]
    if observed.zeroized and Action.HSM_INIT not in actions:
        assert not set(actions) & {Action.HSM_LOGIN, Action.REGEN_CERT, Action.NTLS_BIND}


@settings(max_examples=500, deadline=None)
@given(goal=goals, observed=observed_states(), left=st.sampled_from([None, 0, 1, 2]))
def test_after_a_failed_login_no_plan_logs_in_again(
    goal: ApplianceGoal, observed: ApplianceState, left: int | None
) -> None:
    """A failed login costs an attempt: whatever the next run observes then, it does not log in."""
    after_failure = ApplianceState(
        observed.hsm_serial,
        observed.hsm_label,
        observed.zeroized,
        left,
        observed.partitions,
        observed.clients,
        observed.registrations,
    )
    planned = _plan_or_refusal(goal, after_failure)
    if not isinstance(planned, ApplianceError):
        logins = [s for s in planned if s.action is Action.HSM_LOGIN]
        inits = [s for s in planned if s.action is Action.HSM_INIT]
        assert not logins or inits, f"planned {[str(s) for s in planned]} with {left} attempts left"


class _Shell:
    """Records what would be sent; ``hsm login`` fails as a wrong password does."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def run(self, command: Command, *, step: str | None = None, tolerate: object = ()) -> Any:
        self.sent.append(command.name)
        if command.name == "hsm login":
            raise CommandFailed("10.0.0.2", step or "", "'hsm login' failed: LUNA_RET_UM_PIN_INCORRECT")
        return None

    def put_file(self, name: str, data: bytes, *, step: str = "") -> None:
        self.sent.append("scp upload")


@settings(max_examples=300, deadline=None)
@given(goal=goals, observed=observed_states())
def test_nothing_is_sent_after_a_failed_login(goal: ApplianceGoal, observed: ApplianceState) -> None:
    planned = _plan_or_refusal(goal, observed)
    if isinstance(planned, ApplianceError) or Action.HSM_LOGIN not in [s.action for s in planned]:
        return
    shell = _Shell()
    certificates = {name: "PEM" for name in NAMES}
    with pytest.raises(CommandFailed):
        apply_steps(
            shell,  # type: ignore[arg-type]
            planned,
            secrets=GroupSecrets("Adm1n-pw", "Dom-domain", "Part-pw"),
            certificates=certificates,
            deadline=Deadline.never(),
        )
    assert shell.sent.count("hsm login") == 1
    assert shell.sent[-1] == "hsm login"  # the run stopped there


# --------------------------------------------------------------------------------------------------
# The engine against simulated HSMs


@pytest.fixture
def lab(aws_env: None) -> Iterator[Lab]:
    with mock_aws(), running_lab(3, key_type="ec") as started:
        yield started


def logins(appliance: SimulatedAppliance) -> list[int | None]:
    """The result of every ``hsm login`` the appliance received."""
    return [e.result for e in appliance.journal.commands() if e.command == "hsm login"]


def inits(appliance: SimulatedAppliance) -> list[int | None]:
    return [e.result for e in appliance.journal.commands() if e.command == "hsm init"]


def wrong_admin_password(lab: Lab) -> None:
    boto3.client("secretsmanager", region_name="us-east-1").put_secret_value(
        SecretId="luna/admin",
        SecretString=json.dumps(
            {"password": "Adm1n-wrong-one", "domain": lab.domain, "appliances": fingerprints(lab.appliances)}
        ),
    )


def test_a_rejected_login_is_never_retried_by_this_or_any_later_run(lab: Lab) -> None:
    wrong_admin_password(lab)
    spec = lab.spec(members=[0, 1, 2], PartitionDeletionPolicy="Delete")

    with pytest.raises(GroupRunError, match=r"step 'hsm login'.*LUNA_RET_UM_PIN_INCORRECT"):
        lab.engine(spec).apply(spec, ID)
    assert [logins(a) for a in lab.appliances] == [[65535]] * 3
    assert [a.state.attempts_left for a in lab.appliances] == [2, 2, 2]

    for _ in range(3):
        with pytest.raises(GroupRunError, match=r"refusing to log in as HSM Admin with 2 of 3 attempts left"):
            lab.engine(spec).apply(spec, ID)
    assert lab.engine(spec).destroy(spec, ID).ok  # no partition was made: nothing needs a login
    assert [logins(a) for a in lab.appliances] == [[65535]] * 3  # not one more
    assert all(a.state.attempts_left == 2 and not a.state.zeroized for a in lab.appliances)


@pytest.mark.parametrize("left", [1, 2])
@pytest.mark.parametrize("operation", ["create", "add appliance", "delete partition"])
def test_no_login_with_fewer_than_all_attempts_left(lab: Lab, left: int, operation: str) -> None:
    spec = lab.spec(members=[0, 1], PartitionDeletionPolicy="Delete")
    if operation != "create":
        assert lab.engine(spec).apply(spec, ID).ok
    target = lab.appliances[2 if operation == "add appliance" else 1]
    target.state.attempts_left = left
    if operation == "add appliance":
        spec = lab.spec(members=[0, 1, 2], PartitionDeletionPolicy="Delete")
    before = logins(target)

    with pytest.raises(GroupRunError) as caught:
        if operation == "delete partition":
            lab.engine(spec).destroy(spec, ID)
        else:
            lab.engine(spec).apply(spec, ID)

    assert f"Appliance {target.host}, step 'hsm login'" in str(caught.value)
    assert f"{left} of 3 attempts left" in str(caught.value)
    assert logins(target) == before
    assert target.state.attempts_left == left and not target.state.zeroized


def test_hsm_show_that_cannot_be_read_means_no_login(lab: Lab) -> None:
    target = lab.appliances[1]
    target.faults.fail("hsm show", "Unable to communicate with HSM.")
    spec = lab.spec(members=[0, 1, 2])
    with pytest.raises(GroupRunError, match=r"127\.0\.0\.2, step 'observe: hsm show'"):
        lab.engine(spec).apply(spec, ID)
    assert logins(target) == []


@pytest.mark.parametrize(
    ("label", "with_partition"),
    [("luna-sim-02", False), ("luna-sim-02", True), ("another-label", False), ("another-label", True)],
)
def test_hsm_init_never_runs_on_an_initialized_hsm(lab: Lab, label: str, with_partition: bool) -> None:
    """``Initialize: true`` on an HSM that is initialized already: never ``hsm init`` (a soft re-init
    would destroy every partition); at most the unfinished part of an initialization is finished."""
    target = lab.appliances[1]
    if with_partition:
        target.state.add_partition("keys", "Part-xxxxxxxx", lab.domain)
    props = lab.props(members=[0, 1, 2], PartitionDeletionPolicy="Delete")
    props["Appliances"][1].update(Initialize="true", HsmLabel=label)
    spec = parse_properties(props)

    for run in ("apply", "apply", "plan", "destroy", "apply"):
        getattr(lab.engine(spec), run)(spec, ID)

    assert all(inits(a) == [] for a in lab.appliances)
    assert target.state.label == "luna-sim-02"
    assert ("keys" in target.state.partitions) is with_partition


def test_an_hsm_labelled_hsm_is_zeroized_is_not_initialized_again(lab: Lab) -> None:
    """A label is free text: "HSM IS ZEROIZED" in it is not the attempts-left field saying so."""
    target = lab.appliances[1]
    target.state.label = "HSM IS ZEROIZED !!!!"
    props = lab.props(members=[0, 1, 2])
    props["Appliances"][1].update(Initialize="true", HsmLabel="hsm-b")
    spec = parse_properties(props)

    assert lab.engine(spec).apply(spec, ID).ok

    assert inits(target) == []
    assert target.state.label == "HSM IS ZEROIZED !!!!"
    assert "payments" in target.state.partitions


def test_hsm_show_that_says_zeroized_and_lists_partitions_fails_the_step_without_init(lab: Lab) -> None:
    spec = lab.spec(members=[0, 1, 2])
    assert lab.engine(spec).apply(spec, ID).ok
    target = lab.appliances[1]
    with target.state.lock:
        target.state.zeroized = True  # what no HSM prints: the marker, and a partition listed
    props = lab.props(members=[0, 1, 2])
    props["Appliances"][1].update(Initialize="true", HsmLabel="hsm-b")
    spec = parse_properties(props)
    mark = target.journal.mark()

    with pytest.raises(GroupRunError) as caught:
        lab.engine(spec).apply(spec, ID)

    assert "Appliance 127.0.0.2, step 'observe': Cannot read 'hsm show' output" in str(caught.value)
    assert "not deciding between zeroized and initialized" in str(caught.value)
    assert [e.command for e in target.journal.since(mark)] == ["hsm show"]
    assert "payments" in target.state.partitions


def test_a_zeroized_hsm_without_initialize_is_refused_naming_the_step(lab: Lab) -> None:
    target = lab.appliances[1]
    target.state.zeroize()
    spec = lab.spec(members=[0, 1, 2])
    with pytest.raises(GroupRunError, match=r"Appliance 127\.0\.0\.2, step 'hsm init': the HSM is zeroized"):
        lab.engine(spec).apply(spec, ID)
    assert [e.command for e in target.journal.commands()] == ["hsm show"]


@pytest.mark.parametrize("fault", ["drop-after", "drop", "error"])
def test_an_initialization_whose_answer_was_lost_is_not_repeated(lab: Lab, fault: str) -> None:
    target = lab.appliances[1]
    target.state.zeroize()
    props = lab.props(members=[0, 1, 2])
    props["Appliances"][1].update(Initialize="true", HsmLabel="hsm-b")
    spec = parse_properties(props)
    if fault == "error":
        target.faults.fail("hsm init", times=1)
    else:
        target.faults.drop(command="hsm init", after_execute=fault == "drop-after")

    with pytest.raises(GroupRunError, match=r"127\.0\.0\.2, step 'hsm init hsm-b'"):
        lab.engine(spec).apply(spec, ID)
    for _ in range(2):
        assert lab.engine(spec).apply(spec, ID).ok

    assert Counter(inits(target))[0] == 1  # exactly one hsm init ran
    assert target.state.label == "hsm-b" and "payments" in target.state.partitions
    assert target.state.attempts_left == 3


# --------------------------------------------------------------------------------------------------
# Runs of two events at once (CloudFormation may deliver an event twice)


def _concurrently(lab: Lab, runs: int, spec: Any) -> list[BaseException | None]:
    barrier = threading.Barrier(runs)

    def one() -> None:
        barrier.wait(10)
        lab.engine(spec).apply(spec, ID, deadline=Deadline.after(120))

    with ThreadPoolExecutor(runs) as pool:
        futures = [pool.submit(one) for _ in range(runs)]
        return [f.exception(timeout=120) for f in futures]


def test_duplicate_runs_with_a_wrong_password_never_send_a_second_login(lab: Lab) -> None:
    wrong_admin_password(lab)
    target = lab.appliances[1]
    target.faults.set_latency(0.3, "client list")  # every run observes before any logs in
    spec = lab.spec(members=[1])

    errors = _concurrently(lab, 3, spec)

    assert all(isinstance(e, GroupRunError) for e in errors)
    assert len(logins(target)) == 1, (
        f"{len(logins(target))} logins sent; attempts left {target.state.attempts_left}"
    )
    assert target.state.attempts_left == 2 and not target.state.zeroized


def test_duplicate_runs_initialize_a_zeroized_hsm_once(lab: Lab) -> None:
    target = lab.appliances[1]
    target.state.zeroize()
    target.faults.set_latency(0.3, "hsm show")  # both runs see it zeroized
    props = lab.props(members=[1])
    props["Appliances"][0].update(Initialize="true", HsmLabel="hsm-b")
    spec = parse_properties(props)

    _concurrently(lab, 2, spec)
    target.faults.set_latency(0.0, "hsm show")
    assert lab.engine(spec).apply(spec, ID).ok

    # the second `hsm init` found the HSM initialized by the first and was refused by it
    assert Counter(inits(target))[0] == 1
    assert target.state.label == "hsm-b" and target.state.attempts_left == 3
    assert "payments" in target.state.partitions


# --------------------------------------------------------------------------------------------------
# The HSM Admin lease: one per appliance across every run, group and stack, until the holder's deadline


class RecordingCoordinator(Coordinator):
    """The lab's coordinator, remembering which leases it took and let go."""

    def __init__(self, lab: Lab, *, release_fails: bool = False) -> None:
        base = lab.coordinator()
        super().__init__(base._client, base.table)
        self.acquired: list[str] = []
        self.released: list[str] = []
        self.release_fails = release_fails

    def acquire_admin(self, appliance: str, **kwargs: Any) -> AdminLease | None:
        lease = super().acquire_admin(appliance, **kwargs)
        if lease is None:
            self.acquired.append(appliance)
        return lease

    def release_admin(self, appliance: str, **kwargs: Any) -> None:
        if self.release_fails:
            raise CoordinationError("Cannot use the coordination table: AccessDeniedException")
        super().release_admin(appliance, **kwargs)
        self.released.append(appliance)


def leases(lab: Lab) -> list[str]:
    return [i["pk"]["S"] for i in lab.coordinator().records() if i["pk"]["S"].startswith("hsm-admin#")]


def fingerprint(appliance: SimulatedAppliance) -> str:
    return fingerprints([appliance])[0]


def test_each_appliance_lease_is_taken_right_before_its_login_and_let_go_after(lab: Lab) -> None:
    spec = lab.spec(members=[0, 1, 2])
    engine = lab.engine(spec)
    engine.coordinator = recording = RecordingCoordinator(lab)

    assert engine.apply(spec, ID).ok

    assert [len(logins(a)) for a in lab.appliances] == [1, 1, 1]
    every = sorted(fingerprint(a) for a in lab.appliances)
    assert sorted(recording.acquired) == every and sorted(recording.released) == every
    assert leases(lab) == []
    assert engine.apply(spec, ID).ok
    assert len(recording.acquired) == 3  # a run with nothing to log in for takes no lease


def test_while_another_run_holds_an_appliances_lease_nothing_logs_in_there(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin_guard, "WAIT_SECONDS", 0.5)
    busy = lab.appliances[1]
    lab.coordinator().acquire_admin(
        fingerprint(busy), holder="another-run", until=time.time() + 600, group="/luna-ha/orders"
    )
    spec = lab.spec(members=[0, 1, 2])

    with pytest.raises(GroupRunError) as caught:
        lab.engine(spec).apply(spec, ID)

    assert [len(logins(a)) for a in lab.appliances] == [1, 0, 1]  # the others are not held up
    assert f"{busy.host}, step 'hsm login'" in str(caught.value)
    assert "another run (group /luna-ha/orders) is working as HSM Admin on this appliance" in str(
        caught.value
    )
    assert leases(lab) == [f"hsm-admin#{fingerprint(busy)}"]  # the other run's lease is not ours to remove


def test_a_run_waits_for_a_lease_that_ends_soon(lab: Lab) -> None:
    busy = lab.appliances[1]
    lab.coordinator().acquire_admin(fingerprint(busy), holder="short", until=time.time() + 1.5, group="/g")
    spec = lab.spec(members=[1])

    assert lab.engine(spec).apply(spec, ID).ok
    assert len(logins(busy)) == 1


def test_the_lease_of_a_run_whose_deadline_passed_is_taken_over_at_once(lab: Lab) -> None:
    for a in lab.appliances:
        lab.coordinator().acquire_admin(fingerprint(a), holder="killed", until=time.time() - 1, group="/g")
    spec = lab.spec(members=[0, 1, 2])
    started = time.monotonic()

    assert lab.engine(spec).apply(spec, ID).ok

    assert time.monotonic() - started < 30  # no fixed staleness period to sit out
    assert [len(logins(a)) for a in lab.appliances] == [1, 1, 1]
    assert leases(lab) == []


def test_a_lease_that_cannot_be_let_go_does_not_fail_a_run_whose_work_is_done(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    spec = lab.spec(members=[0, 1, 2])
    engine = lab.engine(spec)
    engine.coordinator = RecordingCoordinator(lab, release_fails=True)

    assert engine.apply(spec, ID).ok

    assert len(leases(lab)) == 3  # they end at this run's deadline
    assert "the HSM Admin lease stays until this run's deadline" in caplog.text
