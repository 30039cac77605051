"""The kill matrix: the function's process dies (SIGKILL: no answer, no cleanup, locks not let go) at
every step of a Create, a rotation Update and a Delete; then what CloudFormation does next.

Lambda ends a run without warning when it times out or runs out of memory. Here the function runs
as Lambda runs it, in a process of its own (``luna_ha.app.handler`` on a CloudFormation-shaped
event, answering over HTTPS on 127.0.0.1, AWS through moto's server, real SSH to the simulated
appliances), and is killed:

* right before each of its AWS calls (Parameter Store, Secrets Manager, the coordination table),
  counted in a fault-free run first; and
* while each mutating step on the second appliance is in flight (the step hangs, the process is
  killed, the hang is let go).

Then, for every kill point: the same event is delivered again (a new execution environment) and
must converge; CloudFormation's Delete must then leave nothing of the resource anywhere. A Create
that never answered is also deleted the way CloudFormation does it, under an id it made up.

A Create on a pair of Luna 7 appliances (7.8: lunash initializes; 7.2: REST does) is killed the
same way, a mutating REST request in flight counting as a step; its redelivery must finish the
partition, having initialized it and its Crypto Officer exactly once. `make test` kills a 7.8
Create at each step Luna 7 adds and a 7.2 Create at its REST initializations (``LUNA7_SAMPLE``);
`make kill-matrix` kills both at every AWS call and every mutating step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import boto3
import pytest

from luna_ha import appliance as appliance_module
from luna_ha.certs import credential_matches, luna_fingerprint
from luna_ha.coordination import Coordinator
from luna_ha.ownership import ownership_token
from luna_ha.resource import physical_id_for
from luna_ha.secrets import first_co_password
from luna_ha.sim.faults import REST_CO_INIT, REST_CO_PASSWORD, REST_PARTITION_INIT
from luna_ha.sim.server import SimulatedAppliance
from luna_ha.sim.state import ROLE_LOGIN_ATTEMPTS
from luna_ha_lab.cloudformation import LocalCloudFormation
from luna_ha_lab.localaws import TABLE, LabSecrets, group_properties
from tests.functional.lab import parameters, served_lab

LOGICAL = "Group"
PATH = "/luna-ha/payments"
FAULTED = 1  # the second of two members
CHILD_TIMEOUT = 12.0  # the killed function's own timeout: its leases end with it
# `make test` kills at every mutating appliance step and at every third AWS call (a different third
# for each operation); `make kill-matrix` (LUNA_HA_KILL_MATRIX=full) kills at every AWS call too.
FULL = os.environ.get("LUNA_HA_KILL_MATRIX") == "full"
# The steps Luna 7 adds to a Create on the faulted appliance (lunash or REST, by software), and
# where `make test` kills: on 7.8 at each of them, on 7.2 at the REST initializations only 7.2 sends.
LUNA7_STEPS = {
    "7.8": frozenset({"partition create", "partition init", "partition init co", REST_CO_PASSWORD}),
    "7.2": frozenset({"partition create", REST_PARTITION_INIT, REST_CO_INIT, REST_CO_PASSWORD}),
}
ANY_LUNA7_STEP = LUNA7_STEPS["7.8"] | LUNA7_STEPS["7.2"]
LUNA7_SAMPLE = {"7.8": LUNA7_STEPS["7.8"], "7.2": frozenset({REST_PARTITION_INIT, REST_CO_INIT})}

# The function's process. Test harness only: it counts the AWS calls of every boto3 client the
# handler creates and SIGKILLs itself right before the KILL_AT_CALL-th one; step budgets are scaled
# to a function timeout of seconds (as the fault matrix does).
CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time
    import boto3
    kill_at, count, lock = int(os.environ.get("KILL_AT_CALL") or 0), [0], threading.Lock()
    def before_call(**_):
        with lock:
            count[0] += 1
            n = count[0]
        if n == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-call", before_call)
    import dataclasses
    from luna_ha import appliance
    for action, kind in appliance.STEPS.items():
        appliance.STEPS[action] = dataclasses.replace(kind, budget=0.2)
    from luna_ha import app
    from luna_ha_lab.cloudformation import FakeLambdaContext
    event = json.loads(sys.stdin.read())
    context = FakeLambdaContext(
        "luna-ha-provider", "$LATEST", "arn:aws:lambda:us-east-1:123456789012:function:luna-ha-provider",
        "1769", "kill-matrix", "/aws/lambda/luna-ha-provider", "kill-matrix",
        deadline=time.monotonic() + float(sys.argv[1]),
    )
    app.handler(event, context)
    print(f"AWS-CALLS {count[0]}", file=sys.stderr)
    """
)


@dataclass
class World:
    appliances: list[SimulatedAppliance]
    secrets: LabSecrets
    cfn: LocalCloudFormation

    def props(self, rotation: int = 0) -> dict[str, Any]:
        return group_properties(self.appliances[:2], clients={"web": rotation})

    @property
    def luna7(self) -> bool:
        return self.appliances[0].rest_service is not None

    @property
    def secret_values(self) -> list[str]:
        s = self.secrets
        values = [s.admin_password, s.domain, s.partition_password, s.partition_so_password]
        values.append(first_co_password(s.partition_password, "payments"))  # a 7.x Crypto Officer's first
        return values + [a.password for a in self.appliances]


def fresh_handler() -> Callable[[dict[str, Any], Any], None]:
    from luna_ha import app

    return app.build_handler()


@contextmanager
def running_world(monkeypatch: pytest.MonkeyPatch, **options: Any) -> Iterator[World]:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("LUNA_HA_RESPONSE_MARGIN_SECONDS", "1")
    for action, kind in appliance_module.STEPS.items():
        monkeypatch.setitem(appliance_module.STEPS, action, replace(kind, budget=0.2))
    with (
        served_lab(2, **options) as (appliances, secrets),
        LocalCloudFormation(fresh_handler(), timeout_seconds=90, environment_factory=fresh_handler) as cfn,
    ):
        yield World(appliances, secrets, cfn)


@pytest.fixture
def world(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with running_world(monkeypatch) as started:
        yield started


@pytest.fixture(params=["7.8", "7.2"])
def luna7_world(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[World]:
    """A pair of Luna 7 appliances (with their REST API) of the software ``request.param``."""
    with running_world(monkeypatch, dialect=request.param) as started:
        yield started


# -- the function's process -----------------------------------------------------------------------


def start_function(event: dict[str, Any], *, kill_at_call: int = 0) -> subprocess.Popen[str]:
    env = {**os.environ, "KILL_AT_CALL": str(kill_at_call)}
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(CHILD_TIMEOUT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(event))
    process.stdin.close()
    process.stdin = None  # written and closed: communicate() has nothing more to send
    return process


def finish(process: subprocess.Popen[str], world: World) -> tuple[int, str]:
    out, err = process.communicate(timeout=60)
    for secret in world.secret_values:
        assert secret not in out and secret not in err, "a secret reached the function's output"
    return process.returncode, err


def aws_calls(world: World, event: dict[str, Any]) -> int:
    """The AWS calls a fault-free run of ``event`` makes (it is answered, so nothing to undo)."""
    code, err = finish(start_function(event), world)
    assert code == 0, err[-2000:]
    counted = [line for line in err.splitlines() if line.startswith("AWS-CALLS ")]
    return int(counted[-1].split()[1])


def kill_at_call(world: World, event: dict[str, Any], call: int) -> None:
    code, err = finish(start_function(event, kill_at_call=call), world)
    assert code == -9, f"the function was not killed at call {call}: {err[-2000:]}"


def kill_during(world: World, event: dict[str, Any], command: str, occurrence: int) -> None:
    faulted = world.appliances[FAULTED]
    hang = faulted.faults.hang(command, occurrence=occurrence, times=1)
    process = start_function(event)
    try:
        assert hang.wait_started(60), f"{command} #{occurrence} never started"
        process.kill()
        code, _ = finish(process, world)
        assert code == -9
    finally:
        hang.release()
        faulted.faults.clear()


# -- what must hold afterwards --------------------------------------------------------------------


def assert_converged(world: World, physical_id: str, rotation: int) -> None:
    token = ownership_token(physical_id)
    published = parameters(PATH)
    document = json.loads(published[f"{PATH}/group"])
    assert document["owner"] == physical_id
    current = f"web-{token}-r{rotation}"
    assert published[f"{PATH}/clients/web/current"] == current
    cert = published[f"{PATH}/clients/web/{current}/cert"]
    assert credential_matches(cert, published[f"{PATH}/clients/web/{current}/key"])
    for appliance in world.appliances[:2]:
        registered = appliance.state.clients[current]
        assert registered.partitions == ["payments"]
        assert registered.fingerprint == luna_fingerprint(cert)
        assert appliance.state.attempts_left == 3
        assert not any(name.endswith(".pem") and name != "server.pem" for name in appliance.state.files)
        if world.luna7:
            assert_partition_ready(world, appliance)


def assert_partition_ready(world: World, appliance: SimulatedAppliance) -> None:
    """A 7.x partition members can use: initialized with the group's label, Partition SO password and
    domain, its Crypto Officer on the partition secret's password, no longer to be changed, no role
    attempt used. (Secrets compared, never shown.)"""
    p, s = appliance.state.partitions["payments"], world.secrets
    assert (p.initialized, p.label) == (True, "payments"), f"{appliance.host}: partition not initialized"
    same = (p.so_password, p.domain, p.co.password) == (
        s.partition_so_password,
        s.domain,
        s.partition_password,
    )
    assert same, (
        f"{appliance.host}: not the secrets' Partition SO password, domain or Crypto Officer password"
    )
    assert not p.co.pin_to_be_changed, (
        f"{appliance.host}: the Crypto Officer's password is still to be changed"
    )
    assert (p.so_attempts_left, p.co.attempts_left) == (ROLE_LOGIN_ATTEMPTS, ROLE_LOGIN_ATTEMPTS)


def assert_initialized_once(appliance: SimulatedAppliance, mark: int) -> None:
    """Since ``mark`` the partition and its Crypto Officer were each initialized once (a lunash
    `Command Result` 0 or an HTTP 204), by the last such command or request sent: a killed run
    that sent one, and the redelivery, never initialized them again (that would erase them)."""
    entries = appliance.journal.since(mark)
    for what, names in (
        ("partition", ("partition init", REST_PARTITION_INIT)),
        ("Crypto Officer", ("partition init co", REST_CO_INIT)),
    ):
        sent = [e for e in entries if e.command in names]
        succeeded = [i for i, e in enumerate(sent) if e.result in (0, 204)]
        assert len(succeeded) == 1, f"{appliance.host}: the {what} was initialized {len(succeeded)} times"
        assert succeeded[0] == len(sent) - 1, (
            f"{appliance.host}: '{sent[-1].line}' after the {what} was initialized"
        )


def assert_nothing_left(world: World, physical_id: str) -> None:
    token = ownership_token(physical_id)
    assert parameters(PATH) == {}
    for appliance in world.appliances:
        assert [c for c in appliance.state.clients if f"-{token}-" in c] == []
        assert [f for f in appliance.state.files if f != "server.pem"] == []
        assert appliance.state.attempts_left == 3
    records = list(Coordinator(boto3.client("dynamodb"), TABLE).records())
    keys = {item["pk"]["S"]: item for item in records}
    assert f"path#{PATH}" not in keys
    for key, item in keys.items():
        if key.startswith("partition#"):
            assert item["state"]["S"] == "retained"  # PartitionDeletionPolicy Retain: kept, let go
        if key.startswith("hsm-admin#"):  # a dead run's lease ends at its own deadline
            assert float(item["expires"]["N"]) <= time.time() + CHILD_TIMEOUT


# -- the operations --------------------------------------------------------------------------------


def create_event(world: World) -> dict[str, Any]:
    return world.cfn.create_event(LOGICAL, world.props(0))


def setup_created(world: World) -> str:
    event = create_event(world)
    assert world.cfn.invoke(event).status == "SUCCESS"
    return physical_id_for(event)


def rotation_event(world: World, physical_id: str) -> dict[str, Any]:
    return world.cfn.update_event(LOGICAL, physical_id, world.props(1), world.props(0))


def delete_event(world: World, physical_id: str, rotation: int = 0) -> dict[str, Any]:
    return world.cfn.delete_event(LOGICAL, physical_id, world.props(rotation))


def reset(world: World) -> None:
    """Back to fresh appliances and empty AWS (the secrets and the table stay as seeded)."""
    for appliance in world.appliances:
        with appliance.state.lock:
            appliance.state.clients.clear()
            appliance.state.partitions.clear()
            for name in [f for f in appliance.state.files if f != "server.pem"]:
                del appliance.state.files[name]
        appliance.faults.clear()
    ssm = boto3.client("ssm")
    names = [
        p["Name"] for page in ssm.get_paginator("describe_parameters").paginate() for p in page["Parameters"]
    ]
    for start in range(0, len(names), 10):
        ssm.delete_parameters(Names=names[start : start + 10])
    dynamodb = boto3.client("dynamodb")
    for item in Coordinator(dynamodb, TABLE).records():
        dynamodb.delete_item(TableName=TABLE, Key={"pk": item["pk"]})


def mutating_steps(world: World, mark: int) -> list[tuple[str, int]]:
    """The mutating commands, uploads and REST requests the faulted appliance received since
    ``mark``, as (command or request, its occurrence among those of that name)."""
    seen: dict[str, int] = {}
    steps = []
    for entry in world.appliances[FAULTED].journal.since(mark):
        if entry.kind in ("command", "rest"):  # a lunash line, or a REST request (7.x) by its name
            name = entry.command or ""
        else:
            name = "scp upload" if "scp -t" in entry.line else ""
        if not name:
            continue
        seen[name] = seen.get(name, 0) + 1
        if entry.mutating:
            steps.append((name, seen[name]))
    return steps


@dataclass(frozen=True)
class KillPoint:
    kind: str  # "call" or "step"
    call: int = 0
    command: str = ""
    occurrence: int = 0

    def __str__(self) -> str:
        return f"AWS call {self.call}" if self.kind == "call" else f"{self.command} #{self.occurrence}"


def kill_points(
    world: World, event_after_setup: Callable[[], dict[str, Any]], *, sample: frozenset[str] | None = None
) -> list[KillPoint]:
    """Every AWS call and every mutating step on the faulted appliance of a fault-free run of the
    event ``event_after_setup`` returns (once it has set up what the operation starts from).

    Unless ``FULL``: every third AWS call and every mutating step, or, given a ``sample``, only the
    steps it names."""
    event = event_after_setup()
    mark = world.appliances[FAULTED].journal.mark()
    calls = aws_calls(world, event)
    steps = mutating_steps(world, mark)
    if sample is not None and not FULL:
        return [KillPoint("step", command=c, occurrence=o) for c, o in steps if c in sample]
    offset = len(event["RequestType"]) % 3  # which third of the calls: not the same for each operation
    chosen = [n for n in range(1, calls + 1) if FULL or n % 3 == offset or n in (1, calls)]
    return [KillPoint("call", call=n) for n in chosen] + [
        KillPoint("step", command=c, occurrence=o) for c, o in steps
    ]


def kill(world: World, event: dict[str, Any], point: KillPoint) -> None:
    if point.kind == "call":
        kill_at_call(world, event, point.call)
    else:
        kill_during(world, event, point.command, point.occurrence)


def redeliver(world: World, event: dict[str, Any]) -> None:
    response = world.cfn.invoke(event)
    assert response.status == "SUCCESS", response.reason


# -- the matrix ------------------------------------------------------------------------------------


def run_matrix(world: World, title: str, points: list[KillPoint], case: Callable[[KillPoint], None]) -> None:
    """``case`` at every kill point, each from a fresh world; every failing point is reported."""
    failures = []
    for point in points:
        reset(world)
        try:
            case(point)
        except AssertionError as exc:
            failures.append(f"{point}: {exc}")
    print(f"\nkill matrix, {title}: {len(points) - len(failures)} of {len(points)} kill points converged")
    assert failures == []


@pytest.mark.timeout(1500)
def test_a_create_killed_at_any_step_is_finished_by_its_redelivery_and_removed_by_its_delete(
    world: World,
) -> None:
    def case(point: KillPoint) -> None:
        event = create_event(world)
        physical_id = physical_id_for(event)
        kill(world, event, point)
        redeliver(world, event)
        assert_converged(world, physical_id, 0)
        redeliver(world, delete_event(world, physical_id))
        assert_nothing_left(world, physical_id)

    points = kill_points(world, lambda: create_event(world))
    assert len(points) > 10
    run_matrix(world, "Create", points, case)


@pytest.mark.timeout(1500)
def test_a_create_killed_at_any_step_and_never_answered_is_removed_by_a_delete_of_a_made_up_id(
    world: World,
) -> None:
    def case(point: KillPoint) -> None:
        event = create_event(world)
        kill(world, event, point)
        made_up = f"{world.cfn.stack_name}-{LOGICAL}-KILLED{point.call or point.occurrence}"
        response = world.cfn.invoke(delete_event(world, made_up))
        assert response.status == "SUCCESS", response.reason
        assert response.physical_resource_id == made_up
        assert_nothing_left(world, physical_id_for(event))

    run_matrix(world, "Create never answered", kill_points(world, lambda: create_event(world)), case)


@pytest.mark.timeout(1500)
def test_a_rotation_killed_at_any_step_is_finished_by_its_redelivery(world: World) -> None:
    def case(point: KillPoint) -> None:
        physical_id = setup_created(world)
        event = rotation_event(world, physical_id)
        kill(world, event, point)
        redeliver(world, event)
        assert_converged(world, physical_id, 1)
        previous = f"web-{ownership_token(physical_id)}-r0"
        assert all(previous in a.state.clients for a in world.appliances[:2])  # members keep working
        redeliver(world, delete_event(world, physical_id, 1))
        assert_nothing_left(world, physical_id)

    run_matrix(
        world, "rotation", kill_points(world, lambda: rotation_event(world, setup_created(world))), case
    )


@pytest.mark.timeout(1500)
def test_a_delete_killed_at_any_step_is_finished_by_its_redelivery(world: World) -> None:
    def case(point: KillPoint) -> None:
        physical_id = setup_created(world)
        event = delete_event(world, physical_id)
        kill(world, event, point)
        redeliver(world, event)
        assert_nothing_left(world, physical_id)

    points = kill_points(world, lambda: delete_event(world, setup_created(world)))
    run_matrix(world, "Delete", points, case)


@pytest.mark.timeout(1500)
def test_a_luna7_create_killed_at_any_step_initializes_once_and_is_finished_by_its_redelivery(
    luna7_world: World,
) -> None:
    world = luna7_world

    def case(point: KillPoint) -> None:
        event = create_event(world)
        physical_id = physical_id_for(event)
        mark = world.appliances[FAULTED].journal.mark()
        kill(world, event, point)
        redeliver(world, event)
        assert_converged(world, physical_id, 0)
        assert_initialized_once(world.appliances[FAULTED], mark)
        redeliver(world, delete_event(world, physical_id))
        assert_nothing_left(world, physical_id)

    dialect = world.appliances[0].state.dialect.name
    mark = world.appliances[FAULTED].journal.mark()
    points = kill_points(world, lambda: create_event(world), sample=LUNA7_SAMPLE[dialect])
    # Guard: the fault-free run sent the steps Luna 7 adds, its mutating REST requests among them.
    sent = {command for command, _ in mutating_steps(world, mark)}
    assert sent & ANY_LUNA7_STEP == LUNA7_STEPS[dialect], sent
    run_matrix(world, f"Luna {dialect} Create", points, case)
