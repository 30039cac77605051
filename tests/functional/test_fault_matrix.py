"""The fault matrix: every step of Create, Update and Delete x every fault the simulator can inject.

Three appliances, the fault on the second (``127.0.0.2``). For every case:

* the operation answers: it returns (with an error) within a bound, never hangs;
* only the faulted appliance fails, and the Reason CloudFormation would show (``short_reason``)
  starts with ``Appliance 127.0.0.2, step '<the step>'``;
* nothing of another resource is touched: another group's partition, registrations and
  parameters and a hand-made registration are the same before, after the fault and after the
  re-run, and no mutating command names them;
* a re-run (the fault gone) succeeds and converges: a plan afterwards is empty and what is
  published matches the appliances (or, for Delete, nothing of this resource is left);
* the HSMs stay safe: every appliance ends with all 3 HSM Admin attempts and initialized, no
  shell session ever sent ``hsm login`` twice, and ``hsm init`` ran on the zeroized appliance only.

Steps are the commands an operation sends to the faulted appliance, in order (a guard test checks
the lists against what a fault-free run sends, so a new step cannot be left out of the matrix).
Faults: the connection faults (``refused``, ``wrong-host-key``, ``auth-failure``) act at
``connect``; the command faults (``drop`` before the command runs, ``drop-after`` it ran but
before its answer, ``error``, ``hang`` past the deadline, ``flood``: endless output instead of
the answer, read only up to the session's byte bounds) act on each command, through the
simulator's public ``Faults``: a lunash step by its place in the session (``nth``), an SCP
transfer (certificate upload, ``server.pem`` download) by its place among the transfers of its
direction (``occurrence``). For a transfer, ``drop-after`` is the upload stored but never
acknowledged, or the download's header sent but not its content.

Every case runs through the engine; a representative subset also runs through the real Lambda
handler (``LocalCloudFormation``: real events, crhelper's answer over HTTPS). Hangs end at the
run's real deadline, kept short: the per-step budgets (``appliance.STEPS``, "start no step
that cannot finish") are scaled down for those cases so that a deadline of about a second still
admits every step. The matrix size and result are printed in pytest's terminal summary.

The answer's own channel has its faults too: a response URL that trickles its reply one byte at a
time, or cuts it off mid-status-line, still gets exactly one answer, before the function's timeout.

Luna 7 rows: a Create on a pair of 7.8 appliances (lunash initializes the partition and its Crypto
Officer) and on a pair of 7.2 appliances (the REST API does, after REST logins as HSM Admin and
Partition SO), and the NTLS restart of an Initialize on each, every step Luna 7 adds (lunash line or
REST request, the Crypto Officer's first password change over REST on both) dropped before it runs,
dropped after it ran (``drop-after``), or refused (``error``). On top of what every case checks, the
re-run leaves each partition initialized with the group's label, Partition SO password and domain,
its Crypto Officer on the partition secret's password and no longer to be changed, and the journal
shows each partition and each Crypto Officer initialized exactly once (a second initialization
would erase them). A guard checks the rows against what a fault-free run sends.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import secrets as pysecrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from moto import mock_aws

import luna_ha.certs
from luna_ha import appliance as appliance_module
from luna_ha import compose
from luna_ha.certs import luna_fingerprint
from luna_ha.clock import Deadline
from luna_ha.coordination import create_table
from luna_ha.engine import Engine, GroupRunError, RunReport
from luna_ha.ownership import ownership_token, parse_registration
from luna_ha.resource import MAX_REASON, physical_id_for, short_reason
from luna_ha.sim.faults import (
    REST_CO_INIT,
    REST_CO_PASSWORD,
    REST_HSM_LOGIN,
    REST_PARTITION_INIT,
    REST_PARTITION_LOGIN,
    Faults,
    Hang,
)
from luna_ha.sim.journal import Journal, JournalEntry
from luna_ha.sim.rest import RestApi
from luna_ha.sim.server import SimulatedAppliance, start_appliances, stop_appliances
from luna_ha.sim.state import ROLE_LOGIN_ATTEMPTS, ApplianceModel, RegisteredClient
from luna_ha.spec import GroupSpec, parse_properties
from luna_ha_lab.cloudformation import LocalCloudFormation, Response
from luna_ha_lab.localaws import TABLE, LabSecrets, group_properties, local_aws, seed_secrets
from tests.functional.lab import Lab

ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/matrix/1|Group|payments"
OTHER_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/other/2|Group|orders"
PATH = "/luna-ha/payments"
OTHER_PATH = "/luna-ha/orders"
LEGACY = "legacy-app"  # registered by hand, by nobody's automation
FAULTED = 1  # the second of three appliances
INIT_LABEL = "hsm-b"
REGION = "us-east-1"

CONNECT_FAULTS = ("refused", "wrong-host-key", "auth-failure")
COMMAND_FAULTS = ("drop", "drop-after", "error", "hang", "flood")

# Hangs: the budgets are scaled so that every step may start under a deadline of about a second.
BUDGET_SCALE = 1 / 1000
HANG_DEADLINE = 1.2
HANDLER_HANG_TIMEOUT = 3.5  # the function timeout of handler cases with a hang
HANDLER_TIMEOUT = 10.0  # below 15 s crhelper does not sleep before answering a Delete
ANSWER_LIMIT = 60.0  # an operation that has not answered by then hangs


def generation(token: str, n: int) -> str:
    return f"web-{token}-r{n}"


# --------------------------------------------------------------------------------------------------
# Steps and operations


@dataclass(frozen=True)
class MatrixStep:
    """One command an operation sends to the faulted appliance.

    ``command`` is the canonical lunash command, or ``scp upload`` / ``scp download``; ``nth`` its
    position: the ordinal of the command line in the session (lunash) or of the transfer of that
    direction (SCP). ``reason`` is what the failure names as the step; ``{r0}``... stand for this
    resource's registration names.
    """

    command: str
    reason: str
    nth: int
    by_occurrence: bool = False  # ``nth`` counts the sends of ``command`` (Luna 7 rows), not lines

    @property
    def scp(self) -> bool:
        return self.command.startswith("scp ")

    def named(self, token: str) -> str:
        return self.reason.format(**{f"r{n}": generation(token, n) for n in range(3)})


CONNECT = MatrixStep("connect", "connect", 0)


def sequence(*items: tuple[str, str]) -> tuple[MatrixStep, ...]:
    steps, counts, ordinal = [], Counter[str](), 0
    for command, reason in items:
        if command.startswith("scp "):
            counts[command] += 1
            steps.append(MatrixStep(command, reason, counts[command]))
        else:
            ordinal += 1
            steps.append(MatrixStep(command, reason, ordinal))
    return tuple(steps)


OBSERVE = (
    ("hsm show", "observe: hsm show"),
    ("partition list", "observe: partition list"),
    ("client list", "observe: client list"),
)
REGISTER_R = (
    ("scp upload", "upload certificate {r%d}"),
    ("client register", "client register {r%d}"),
    ("my file delete", "my file delete {r%d}.pem"),
    ("client assignPartition", "client assignPartition {r%d} -partition payments"),
)


def register(n: int) -> tuple[tuple[str, str], ...]:
    return tuple((command, reason % n) for command, reason in REGISTER_R)


SHOW = (("client show", "observe: client show"), ("client fingerprint", "observe: client fingerprint"))


# Right before `hsm login` / `hsm init` the engine reads `hsm show` again (the zeroization guard).
LOGIN = (("hsm show", "hsm login: check hsm show"), ("hsm login", "hsm login"))

CREATE_STEPS = sequence(
    *OBSERVE,
    *LOGIN,
    ("partition create", "partition create payments"),
    *register(0),
    ("partition list", "read partition serial"),
    ("scp download", "download server.pem"),
)
CREATE_INIT_STEPS = sequence(
    ("hsm show", "observe: hsm show"),
    ("hsm show", f"hsm init {INIT_LABEL}: check hsm show"),
    ("hsm init", f"hsm init {INIT_LABEL}"),
    ("sysconf regenCert", "sysconf regenCert"),
    ("ntls bind", "ntls bind"),
    *LOGIN,
    ("partition create", "partition create payments"),
    *register(0),
    ("partition list", "read partition serial"),
    ("scp download", "download server.pem"),
)
UPDATE_STEPS = sequence(
    *OBSERVE,
    *SHOW,
    *SHOW,
    *register(2),
    ("client revokePartition", "client revokePartition {r0} -partition payments"),
    ("client delete", "client delete {r0}"),
    ("scp download", "download server.pem"),
)
DELETE_STEPS = sequence(
    *OBSERVE,
    *SHOW,
    ("client revokePartition", "client revokePartition {r0} -partition payments"),
    ("client delete", "client delete {r0}"),
    *LOGIN,
    ("partition delete", "partition delete payments"),
)


@dataclass(frozen=True)
class Operation:
    """An operation on a group of three, from a prepared state (``setup`` rotations applied first)."""

    name: str
    steps: tuple[MatrixStep, ...]
    rotation: int  # the client generation the operation asks for
    setup: tuple[int, ...] = ()  # rotations applied before it
    destroy: bool = False
    initialize: bool = False  # the faulted appliance starts zeroized, with Initialize: true
    connect: bool = True  # the connection faults apply (else they are another operation's cases)
    focus: int | None = None  # only the first ``focus`` steps are the operation's own
    dialect: str | None = None  # the appliances' software (None: the default Luna SA 5.x pair of three)

    @property
    def matrix_steps(self) -> tuple[MatrixStep, ...]:
        return self.steps[: self.focus]

    @property
    def extra(self) -> dict[str, Any]:
        return {"PartitionDeletionPolicy": "Delete"} if self.destroy else {}


OPERATIONS = {
    op.name: op
    for op in (
        Operation("create", CREATE_STEPS, rotation=0),
        # Initialize: its own steps are the ones up to the first login; from there on it sends what
        # Create sends, recovering the same way, and it connects as Create does.
        Operation("create-init", CREATE_INIT_STEPS, rotation=0, initialize=True, connect=False, focus=7),
        Operation("update", UPDATE_STEPS, rotation=2, setup=(0, 1)),
        Operation("delete", DELETE_STEPS, rotation=0, setup=(0,), destroy=True),
    )
}


@dataclass(frozen=True)
class Case:
    operation: str
    step: MatrixStep
    fault: str

    def __str__(self) -> str:
        """``update:10-client-revokePartition:drop-after``: the step's place in the operation."""
        if self.step is CONNECT:
            return f"{self.operation}:connect:{self.fault}"
        place = EVERY_OPERATION[self.operation].steps.index(self.step) + 1
        return f"{self.operation}:{place:02d}-{self.step.command.replace(' ', '-')}:{self.fault}"


def matrix() -> list[Case]:
    cases = []
    for op in OPERATIONS.values():
        cases += [Case(op.name, CONNECT, fault) for fault in CONNECT_FAULTS if op.connect]
        cases += [Case(op.name, step, fault) for step in op.matrix_steps for fault in COMMAND_FAULTS]
    return cases


def step_of(operation: str, command: str) -> MatrixStep:
    if command == "connect":
        return CONNECT
    return next(s for s in OPERATIONS[operation].steps if s.command == command)


ENGINE_CASES = matrix()
HANDLER_CASES = [
    Case(operation, step_of(operation, command), fault)
    for operation, command, fault in (
        ("create", "connect", "refused"),
        ("create", "partition create", "drop-after"),
        ("create", "client register", "hang"),
        ("update", "connect", "wrong-host-key"),
        ("update", "scp upload", "error"),
        ("update", "client revokePartition", "drop"),
        ("delete", "connect", "auth-failure"),
        ("delete", "client delete", "error"),
        ("delete", "partition delete", "hang"),
        ("delete", "client show", "flood"),
    )
]


# --------------------------------------------------------------------------------------------------
# Luna 7: what a Create adds on a 7.x pair (7.8 initializes with lunash, 7.2 over REST; both change
# the Crypto Officer's first password over REST), under the faults that leave a step undone or done
# without an answer. The engine must never initialize a partition or its Crypto Officer twice: on
# the appliance that erases the partition, or the password members log in with.

LUNA7_FAULTS = ("drop", "drop-after", "error")
# What the 5.x/6.x rows cover already (the same commands on 7.x): left out of the 7.x rows.
COVERED_BY_LUNA_SA_ROWS = frozenset(
    {"hsm init", "sysconf regenCert", "ntls bind", *(command for command, _ in REGISTER_R)}
)


def luna7_sequence(*items: tuple[str, str]) -> tuple[MatrixStep, ...]:
    """The 7.x steps, each selected by its occurrence among the sends of its command (lunash line
    or REST request: a REST request has no place in a shell session)."""
    counts = Counter[str]()
    steps = []
    for command, reason in items:
        counts[command] += 1
        steps.append(MatrixStep(command, reason, counts[command], by_occurrence=True))
    return tuple(steps)


LUNASH_INIT_7_8 = (
    ("partition create", "partition create payments"),
    ("partition init", "partition init payments"),
    ("partition init co", "partition init co payments"),
    (REST_CO_PASSWORD, "change crypto officer password payments (REST)"),
)
REST_INIT_7_2 = (
    ("partition create", "partition create payments"),
    (REST_HSM_LOGIN, "partition init payments (REST): HSM Admin login"),
    (REST_PARTITION_INIT, "partition init payments (REST)"),
    (REST_PARTITION_LOGIN, "partition init co payments (REST): Partition SO login"),
    (REST_CO_INIT, "partition init co payments (REST)"),
    (REST_CO_PASSWORD, "change crypto officer password payments (REST)"),
)
NTLS_RESTART = (("service restart", "service restart ntls"),)

LUNA7_OPERATIONS = {
    op.name: op
    for op in (
        Operation("create-7.8", luna7_sequence(*LUNASH_INIT_7_8), rotation=0, dialect="7.8"),
        Operation("create-7.2", luna7_sequence(*REST_INIT_7_2), rotation=0, dialect="7.2"),
        # Initialize on 7.x: NTLS serves its new certificate only after a restart. From there on it
        # sends what Create sends (the rows above).
        Operation(
            "create-init-7.8",
            luna7_sequence(*NTLS_RESTART, *LUNASH_INIT_7_8),
            rotation=0,
            initialize=True,
            focus=1,
            dialect="7.8",
        ),
        Operation(
            "create-init-7.2",
            luna7_sequence(*NTLS_RESTART, *REST_INIT_7_2),
            rotation=0,
            initialize=True,
            focus=1,
            dialect="7.2",
        ),
    )
}
EVERY_OPERATION = {**OPERATIONS, **LUNA7_OPERATIONS}
LUNA7_CASES = [
    Case(op.name, step, fault)
    for op in LUNA7_OPERATIONS.values()
    for step in op.matrix_steps
    for fault in LUNA7_FAULTS
]


# --------------------------------------------------------------------------------------------------
# Injecting faults


@dataclass
class Injected:
    appliance: SimulatedAppliance
    password: str
    hang: Hang | None = None

    def remove(self) -> None:
        self.appliance.faults.clear()
        if self.hang is not None:
            self.hang.release()
        self.appliance.password = self.password


def inject(appliance: SimulatedAppliance, case: Case) -> Injected:
    """Put ``case``'s fault on ``appliance`` until ``remove()``.

    A lunash step is the ``nth`` command line of a session, faulted in every session that gets
    there; an SCP step (and a Luna 7 row's step, lunash or REST) is the ``nth`` use of its command
    from now on, faulted once.
    """
    injected = Injected(appliance, appliance.password)
    step, faults = case.step, appliance.faults
    where: dict[str, Any] = (
        {"occurrence": step.nth, "times": 1}
        if step.scp or step.by_occurrence
        else {"nth": step.nth, "times": None}
    )
    if case.fault == "refused":
        faults.refuse()
    elif case.fault == "wrong-host-key":
        faults.wrong_host_key()
    elif case.fault == "auth-failure":
        appliance.password = "not-" + appliance.password
    elif case.fault in ("drop", "drop-after"):
        faults.drop(command=step.command, after_execute=case.fault == "drop-after", **where)
    elif case.fault == "error":
        faults.fail(step.command, **where)
    elif case.fault == "hang":
        injected.hang = faults.hang(step.command, **where)
    elif case.fault == "flood":
        faults.flood(step.command, **where)
    else:
        raise AssertionError(f"unknown fault {case.fault!r}")
    return injected


# --------------------------------------------------------------------------------------------------
# What must hold


@dataclass
class Answer:
    result: Any = None
    error: BaseException | None = None
    seconds: float = 0.0


def answered(run: Callable[[], Any], limit: float = ANSWER_LIMIT) -> Answer:
    """Run ``run`` in a thread of its own; fail the test when it has not answered within ``limit``."""
    answer = Answer()

    def target() -> None:
        try:
            answer.result = run()
        except BaseException as exc:  # the operation's failure is the result here
            answer.error = exc

    started = time.monotonic()
    thread = threading.Thread(target=target, name="matrix-operation", daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the operation did not answer within {limit:.0f} s"
    answer.seconds = time.monotonic() - started
    return answer


def parameters(path: str) -> dict[str, tuple[str, int]]:
    ssm = boto3.client("ssm", region_name=REGION)
    found: dict[str, tuple[str, int]] = {}
    for page in ssm.get_paginator("get_parameters_by_path").paginate(
        Path=path, Recursive=True, WithDecryption=True
    ):
        found.update({p["Name"]: (p["Value"], p["Version"]) for p in page["Parameters"]})
    return found


def others(appliances: list[SimulatedAppliance], token: str) -> dict[str, Any]:
    """Everything on the appliances and in SSM that is not this resource's (a 7.x partition with its
    initialization and its Crypto Officer's state: re-initializing either would show; no secret
    value is kept, as this may be printed)."""
    seen: dict[str, Any] = {"parameters": parameters(OTHER_PATH)}
    for a in appliances:
        with a.state.lock:
            seen[a.host] = (
                {
                    name: (c.hostname, tuple(c.partitions), c.fingerprint)
                    for name, c in a.state.clients.items()
                    if parse_registration(name, token) is None
                },
                {
                    p.name: (p.serial, p.initialized, p.label, p.co.initialized, p.co.pin_to_be_changed)
                    for p in a.state.partitions.values()
                    if p.name != "payments"
                },
            )
    return seen


def foreign_names(snapshot: dict[str, Any]) -> set[str]:
    """The names (and, for REST paths, the serials) of what is not this resource's."""
    names = {"orders", OTHER_PATH}
    for key, value in snapshot.items():
        if key != "parameters":
            names |= set(value[0]) | {serial for serial, *_ in value[1].values()}
    return names


def assert_untouched_by_mutations(
    appliances: list[SimulatedAppliance], marks: list[int], names: set[str]
) -> None:
    for a, mark in zip(appliances, marks, strict=True):
        for entry in a.journal.since(mark):
            if entry.mutating:  # a lunash line, an upload, or a REST request (path and body)
                words = set(re.split(r"[^\w-]+", entry.line.replace(".pem", " ")))
                assert not words & names, f"{a.host}: '{entry.line}' touches another resource"


def assert_hsms_safe(appliances: list[SimulatedAppliance], init_target: int | None) -> None:
    for i, a in enumerate(appliances):
        assert a.state.attempts_left == 3, f"{a.host}: {a.state.attempts_left} HSM Admin attempts left"
        assert not a.state.zeroized, f"{a.host} is zeroized"
        logins = Counter(e.session for e in a.journal.entries() if e.command in ("hsm login", REST_HSM_LOGIN))
        assert max(logins.values(), default=0) <= 1, f"{a.host}: a session logged in as HSM Admin twice"
        inits = [e for e in a.journal.commands() if e.command == "hsm init"]
        if i == init_target:
            assert [e.result for e in inits].count(0) == 1, f"{a.host}: hsm init did not run exactly once"
        else:
            assert inits == [], f"{a.host}: hsm init sent to an initialized HSM"


def assert_converged(
    appliances: list[SimulatedAppliance],
    engine: Engine | None,
    spec: GroupSpec,
    physical_id: str,
    op: Operation,
) -> None:
    """Converged: what the appliances and Parameter Store hold is what ``spec`` asks for, and (with
    ``engine``) a plan finds nothing left to do."""
    token = ownership_token(physical_id)
    if op.destroy:
        for a in appliances:
            assert not [n for n in a.state.clients if parse_registration(n, token)], f"{a.host} keeps ours"
            assert "payments" not in a.state.partitions, f"{a.host} keeps the partition (Delete policy)"
        assert set(parameters(PATH)) <= {f"{PATH}/deleting"}
        return
    if engine is not None:
        plan = engine.plan(spec, physical_id, deadline=Deadline.after(120))
        assert plan.ok and [a.planned for a in plan.appliances] == [()] * len(appliances), [
            a.planned for a in plan.appliances
        ]
    published = {name: value for name, (value, _) in parameters(PATH).items()}
    group = json.loads(published[f"{PATH}/group"])
    assert group["owner"] == physical_id
    current = generation(token, op.rotation)
    assert published[f"{PATH}/clients/web/current"] == current
    fingerprint = luna_fingerprint(published[f"{PATH}/clients/web/{current}/cert"])
    wanted = {current} | ({generation(token, op.rotation - 1)} if op.rotation else set())
    for a, member in zip(appliances, group["members"], strict=True):
        partition = a.state.partitions["payments"]
        assert (member["host"], member["serial"]) == (a.host, partition.serial)
        assert published[f"{PATH}/servers/{a.host}/cert"] == a.state.files["server.pem"].decode()
        ours = {n: c for n, c in a.state.clients.items() if parse_registration(n, token)}
        assert set(ours) == wanted, f"{a.host}: {sorted(ours)}"
        assert ours[current].fingerprint == fingerprint and ours[current].partitions == ["payments"]
    if op.initialize:
        state = appliances[FAULTED].state
        assert state.label == INIT_LABEL and state.ntls_bound and not state.ntls_restart_pending


def assert_failed_on_the_faulted_appliance(error: BaseException | None, host: str, step: str) -> str:
    assert isinstance(error, GroupRunError), f"expected the run to fail on {host}, got {error!r}"
    assert [r.host for r in error.report.failures] == [host], str(error)
    reason = short_reason(error)
    assert reason.startswith(f"Appliance {host}, step '{step}"), reason
    assert len(reason) <= MAX_REASON
    return reason


PARTITION_INITS = ("partition init", REST_PARTITION_INIT)
CO_INITS = ("partition init co", REST_CO_INIT)
SUCCEEDED = (0, 204)  # a lunash `Command Result`, an HTTP status


def assert_partitions_ready(lab: Lab) -> None:
    """Each member's 7.x partition as members need it: initialized, labelled, with the admin
    secret's Partition SO password and cloning domain, its Crypto Officer on the partition secret's
    password and not to be changed, no role attempt used. (Secrets compared, never shown.)"""
    for a in lab.appliances:
        p = a.state.partitions["payments"]
        assert (p.initialized, p.label) == (True, "payments"), f"{a.host}: partition not initialized"
        same_pso, same_domain = p.so_password == lab.partition_so_password, p.domain == lab.domain
        assert same_pso and same_domain, f"{a.host}: not the admin secret's Partition SO password or domain"
        same_co = p.co.password == lab.partition_password
        assert same_co, f"{a.host}: the Crypto Officer's password is not the partition secret's"
        assert not p.co.pin_to_be_changed, f"{a.host}: the Crypto Officer's password is still to be changed"
        assert (p.so_attempts_left, p.co.attempts_left) == (ROLE_LOGIN_ATTEMPTS, ROLE_LOGIN_ATTEMPTS)


def assert_initialized_once(appliance: SimulatedAppliance, mark: int, ran_unanswered: str | None) -> None:
    """The journal since ``mark``: the partition and its Crypto Officer were each initialized once,
    by the last such command or request sent (nothing re-initialized them). One that succeeded, or
    ``ran_unanswered`` (what a fault cut off after it ran), took effect; a dropped or refused one
    did not."""
    entries = appliance.journal.since(mark)
    for what, names in (("partition", PARTITION_INITS), ("Crypto Officer", CO_INITS)):
        sent = [e for e in entries if e.command in names]
        took_effect = [
            i
            for i, e in enumerate(sent)
            if e.result in SUCCEEDED or (e.result is None and e.command == ran_unanswered)
        ]
        assert len(took_effect) == 1, f"{appliance.host}: the {what} was initialized {len(took_effect)} times"
        assert took_effect[0] == len(sent) - 1, (
            f"{appliance.host}: '{sent[-1].line}' after the {what} was initialized"
        )


# --------------------------------------------------------------------------------------------------
# The summary printed at the end of the session


class MatrixSummary:
    name = "luna-ha-fault-matrix"

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not re.search(
            r"test_fault_matrix\.py::test_(luna7_)?fault(_through_the_handler)?\[", report.nodeid
        ):
            return
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.skipped:
            self.outcomes.setdefault(report.nodeid, "xfailed" if hasattr(report, "wasxfail") else "skipped")
        elif report.when == "call":
            self.outcomes.setdefault(report.nodeid, "passed")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        per_op = Counter(c.operation for c in ENGINE_CASES)
        size = " + ".join(
            f"{name} {len(op.matrix_steps)} steps x {len(COMMAND_FAULTS)}"
            + (f" + connect x {len(CONNECT_FAULTS)}" if op.connect else "")
            for name, op in OPERATIONS.items()
        )
        counts = Counter(self.outcomes.values())
        ran = ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "none ran"
        terminalreporter.write_sep("-", "fault matrix")
        per_luna7 = Counter(c.operation for c in LUNA7_CASES)
        terminalreporter.write_line(
            f"{len(ENGINE_CASES) + len(HANDLER_CASES)} cases: engine {len(ENGINE_CASES)} "
            f"({size}; {dict(per_op)}), real handler {len(HANDLER_CASES)}; "
            f"3 appliances, fault on the second"
        )
        terminalreporter.write_line(
            f"Luna 7: {len(LUNA7_CASES)} cases ({dict(per_luna7)}; x {', '.join(LUNA7_FAULTS)}); "
            "a pair of 7.x appliances, fault on the second"
        )
        terminalreporter.write_line(f"result: {ran} of {len(self.outcomes)} run")


@pytest.fixture(scope="module", autouse=True)
def matrix_summary(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    if manager.get_plugin(MatrixSummary.name) is None:
        manager.register(MatrixSummary(), MatrixSummary.name)


# --------------------------------------------------------------------------------------------------
# Fixtures


@cache
def _client_keys() -> tuple[rsa.RSAPrivateKey, ...]:
    return tuple(rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(6))


@pytest.fixture(autouse=True)
def pooled_client_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Client certificates are made as always, from a pool of RSA keys made once (speed only)."""
    keys = itertools.cycle(_client_keys())
    monkeypatch.setattr(luna_ha.certs.rsa, "generate_private_key", lambda **_: next(keys))


def scale_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    scaled = {
        action: replace(kind, budget=kind.budget * BUDGET_SCALE)
        for action, kind in appliance_module.STEPS.items()
    }
    monkeypatch.setattr(appliance_module, "STEPS", scaled)


class Bench:
    """Appliances for the whole module (three Luna SA, or a 7.x pair); each case starts from its
    operation's baseline.

    A baseline (the other resource, a hand-made registration, the rotations an operation starts
    from) is built once per operation through the engine, then kept: the appliances' states and
    the parameters. Each case gets copies back on the running appliances, in a fresh moto.
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.pristine = [clone(a.state) for a in lab.appliances]
        self.baselines: dict[
            str, tuple[list[ApplianceModel], list[dict[str, str]], list[dict[str, Any]]]
        ] = {}

    def reset(self, states: list[ApplianceModel]) -> None:
        for a, state in zip(self.lab.appliances, states, strict=True):
            serve(a, clone(state), Journal(), Faults())
            a.connections = a.refused = 0
        self.lab.progress.clear()
        lab = self.lab
        lab_secrets = LabSecrets(
            lab.admin_password, lab.domain, lab.partition_password, lab.partition_so_password
        )
        seed_secrets(self.lab.appliances, lab_secrets, boto3.client("secretsmanager", region_name=REGION))
        create_table(boto3.client("dynamodb", region_name=REGION), TABLE)

    def prepare(self, op: Operation) -> GroupSpec:
        """The appliances and parameters as ``op`` starts from (moto must be active)."""
        if op.name in self.baselines:
            states, params, records = self.baselines[op.name]
            self.reset(states)
            ssm = boto3.client("ssm", region_name=REGION)
            for request in params:
                ssm.put_parameter(**request)
            dynamodb = boto3.client("dynamodb", region_name=REGION)
            for item in records:
                dynamodb.put_item(TableName=TABLE, Item=item)
        else:
            self.reset(self.pristine)
            prepare_engine_case(self.lab, op)
            ssm = boto3.client("ssm", region_name=REGION)
            params = [
                {"Name": p["Name"], "Value": p["Value"], "Type": p["Type"]}
                for page in ssm.get_paginator("get_parameters_by_path").paginate(
                    Path="/", Recursive=True, WithDecryption=True
                )
                for p in page["Parameters"]
            ]
            records = list(self.lab.coordinator().records())
            self.baselines[op.name] = ([clone(a.state) for a in self.lab.appliances], params, records)
            # the baseline's own commands are no part of the case
            for a in self.lab.appliances:
                serve(a, a.state, Journal(), a.faults)
        return parse_properties(engine_props(self.lab, op, op.rotation))


def clone(state: ApplianceModel) -> ApplianceModel:
    return copy.deepcopy(state, {id(state.lock): threading.RLock()})


def serve(appliance: SimulatedAppliance, state: ApplianceModel, journal: Journal, faults: Faults) -> None:
    """From now on ``appliance`` serves ``state``, records to ``journal`` and injects ``faults``,
    over SSH and (a 7.x appliance) its REST API alike, with no REST session open."""
    appliance.state, appliance.journal, appliance.faults = state, journal, faults
    rest = appliance.rest_service
    if rest is not None:
        rest.state, rest.journal, rest.faults = state, journal, faults
        rest.api = RestApi(state, rest.api.credentials)


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    admin_password, domain, partition_password = (
        prefix + pysecrets.token_urlsafe(10) for prefix in ("Adm1n-", "Dom-", "Part-")
    )
    appliances = start_appliances(
        3, distinct_hosts=True, initialized=True, admin_password=admin_password, domain=domain, key_type="ec"
    )
    try:
        yield Bench(Lab(appliances, admin_password, domain, partition_password))
    finally:
        stop_appliances(appliances)


class Luna7Benches:
    """A pair of 7.x appliances per dialect, started when a case first needs it."""

    def __init__(self) -> None:
        self.benches: dict[str, Bench] = {}

    def bench(self, op: Operation) -> Bench:
        assert op.dialect is not None
        if op.dialect not in self.benches:
            self.benches[op.dialect] = Bench(start_lab(2, dialect=op.dialect))
        return self.benches[op.dialect]

    def stop(self) -> None:
        for bench in self.benches.values():
            stop_appliances(bench.lab.appliances)


def start_lab(n: int, **options: Any) -> Lab:
    admin_password, domain, partition_password, partition_so_password = (
        prefix + pysecrets.token_urlsafe(10) for prefix in ("Adm1n-", "Dom-", "Part-", "Pso-")
    )
    appliances = start_appliances(
        n,
        distinct_hosts=True,
        initialized=True,
        admin_password=admin_password,
        domain=domain,
        key_type="ec",
        **options,
    )
    return Lab(appliances, admin_password, domain, partition_password, partition_so_password)


@pytest.fixture(scope="module")
def luna7_benches() -> Iterator[Luna7Benches]:
    benches = Luna7Benches()
    try:
        yield benches
    finally:
        benches.stop()


def add_legacy_registration(appliances: list[SimulatedAppliance]) -> None:
    for a in appliances:
        with a.state.lock:
            assigned = ["orders"] if "orders" in a.state.partitions else []
            a.state.clients[LEGACY] = RegisteredClient(LEGACY, "10.9.9.9", True, b"legacy-cert", assigned)


# --------------------------------------------------------------------------------------------------
# The matrix through the engine


def engine_props(lab: Lab, op: Operation, rotation: int) -> dict[str, Any]:
    props = lab.props(members=list(range(len(lab.appliances))), clients={"web": rotation}, **op.extra)
    if op.initialize:
        props["Appliances"][FAULTED].update(Initialize="true", HsmLabel=INIT_LABEL)
    return props


def engine_run(lab: Lab, op: Operation, spec: GroupSpec, deadline: Deadline) -> RunReport:
    engine = lab.engine(spec)
    return (
        engine.destroy(spec, ID, deadline=deadline)
        if op.destroy
        else engine.apply(spec, ID, deadline=deadline)
    )


def prepare_engine_case(lab: Lab, op: Operation) -> None:
    other_members = [i for i in range(len(lab.appliances)) if not (op.initialize and i == FAULTED)]
    other = lab.spec(members=other_members, PartitionName="orders", GroupLabel="orders-ha")
    assert lab.engine(other).apply(other, OTHER_ID).ok
    add_legacy_registration(lab.appliances)
    if op.initialize:
        lab.appliances[FAULTED].state.zeroize()
    for rotation in op.setup:
        spec = parse_properties(engine_props(lab, op, rotation))
        assert lab.engine(spec).apply(spec, ID).ok


@pytest.mark.parametrize("case", ENGINE_CASES, ids=str)
def test_fault(case: Case, bench: Bench, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    op = OPERATIONS[case.operation]
    with mock_aws():
        engine_case(case, op, bench.prepare(op), bench.lab, monkeypatch)


def engine_case(
    case: Case, op: Operation, spec: GroupSpec, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = others(lab.appliances, ownership_token(ID))
    marks = [a.journal.mark() for a in lab.appliances]
    faulted = lab.appliances[FAULTED]
    deadline = Deadline.after(300)
    if case.fault == "hang":
        scale_budgets(monkeypatch)
        deadline = Deadline.after(HANG_DEADLINE)

    injected = inject(faulted, case)
    try:
        answer = answered(lambda: engine_run(lab, op, spec, deadline))
    finally:
        injected.remove()

    reason = assert_failed_on_the_faulted_appliance(
        answer.error, faulted.host, case.step.named(ownership_token(ID))
    )
    if case.fault == "hang":
        assert answer.seconds < HANG_DEADLINE + 5, f"answered after {answer.seconds:.1f} s"
    if case.fault == "flood":
        assert answer.seconds < 10, f"the flood was read for {answer.seconds:.1f} s"
    for secret in lab.secret_values:
        assert secret not in reason and secret not in "\n".join(lab.progress)
    assert others(lab.appliances, ownership_token(ID)) == before

    rerun = answered(lambda: engine_run(lab, op, spec, Deadline.after(300)))
    assert rerun.error is None, f"the re-run failed: {rerun.error}"
    assert rerun.result.ok
    assert_converged(lab.appliances, lab.engine(spec) if op.dialect else None, spec, ID, op)
    assert others(lab.appliances, ownership_token(ID)) == before
    assert_untouched_by_mutations(lab.appliances, marks, foreign_names(before))
    assert_hsms_safe(lab.appliances, FAULTED if op.initialize else None)
    if op.dialect:
        assert_partitions_ready(lab)
        ran_unanswered = case.step.command if case.fault == "drop-after" else None
        for i, (a, mark) in enumerate(zip(lab.appliances, marks, strict=True)):
            assert_initialized_once(a, mark, ran_unanswered if i == FAULTED else None)


@pytest.mark.parametrize("case", LUNA7_CASES, ids=str)
def test_luna7_fault(
    case: Case, luna7_benches: Luna7Benches, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Luna 7 step dropped before it runs, dropped after it ran, or refused: only the faulted
    appliance fails, naming the step; the re-run converges, and initialized each partition and its
    Crypto Officer exactly once."""
    op = LUNA7_OPERATIONS[case.operation]
    bench = luna7_benches.bench(op)
    with mock_aws():
        engine_case(case, op, bench.prepare(op), bench.lab, monkeypatch)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_the_matrix_has_every_step_the_operation_sends(name: str, bench: Bench, aws_env: None) -> None:
    """Guard: the step lists are exactly what a fault-free run sends to the second appliance."""
    op = OPERATIONS[name]
    with mock_aws():
        guard_case(op, bench.prepare(op), bench.lab)


def guard_case(op: Operation, spec: GroupSpec, lab: Lab) -> None:
    faulted = lab.appliances[FAULTED]
    mark = faulted.journal.mark()
    assert engine_run(lab, op, spec, Deadline.after(300)).ok
    sent = [
        e.command if e.kind == "command" else f"scp {'upload' if 'scp -t' in e.line else 'download'}"
        for e in faulted.journal.since(mark)
    ]
    assert sent == [s.command for s in op.steps]
    assert len({str(c) for c in ENGINE_CASES}) == len(ENGINE_CASES)


@pytest.mark.parametrize("name", sorted(LUNA7_OPERATIONS))
def test_the_luna7_rows_have_every_luna7_step_the_operation_sends(
    name: str, luna7_benches: Luna7Benches, aws_env: None
) -> None:
    """Guard: the 7.x rows are exactly the REST logins and the mutating steps (lunash or REST) a
    fault-free run sends to the second appliance, but for those the Luna SA rows cover."""
    op = LUNA7_OPERATIONS[name]
    bench = luna7_benches.bench(op)
    with mock_aws():
        spec = bench.prepare(op)
        faulted = bench.lab.appliances[FAULTED]
        mark = faulted.journal.mark()
        assert engine_run(bench.lab, op, spec, Deadline.after(300)).ok
    sent = [e.command for e in faulted.journal.since(mark) if is_luna7_step(e)]
    assert sent == [s.command for s in op.steps]
    assert len({str(c) for c in LUNA7_CASES}) == len(LUNA7_CASES)


def is_luna7_step(entry: JournalEntry) -> bool:
    if entry.command in (REST_HSM_LOGIN, REST_PARTITION_LOGIN):
        return True
    return entry.mutating and entry.command not in COVERED_BY_LUNA_SA_ROWS


# --------------------------------------------------------------------------------------------------
# A representative subset through the real handler


@dataclass
class World:
    appliances: list[SimulatedAppliance]
    secrets: LabSecrets
    cfn: LocalCloudFormation

    def props(self, op: Operation, rotation: int) -> dict[str, Any]:
        return group_properties(self.appliances, clients={"web": rotation}, **op.extra)

    def invoke(self, event: dict[str, Any]) -> Response:
        response = self.cfn.invoke(event)
        assert self.cfn.receiver.counts()[event["RequestId"]] == 1, "answered more than once"
        return response


def fresh_handler() -> Any:
    from luna_ha import app

    return app.build_handler()


@contextmanager
def handler_world(timeout: float, wrap: Callable[[Any], Any] = lambda handler: handler) -> Iterator[World]:
    secrets = LabSecrets.generate()
    appliances = start_appliances(
        3,
        distinct_hosts=True,
        initialized=True,
        admin_password=secrets.admin_password,
        domain=secrets.domain,
        key_type="ec",
    )
    try:
        with local_aws():
            seed_secrets(appliances, secrets)
            with LocalCloudFormation(
                wrap(fresh_handler()),
                timeout_seconds=timeout,
                environment_factory=lambda: wrap(fresh_handler()),
            ) as cfn:
                yield World(appliances, secrets, cfn)
    finally:
        stop_appliances(appliances)


@pytest.mark.parametrize("case", HANDLER_CASES, ids=str)
def test_fault_through_the_handler(case: Case, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("LUNA_HA_RESPONSE_MARGIN_SECONDS", "1.5")
    scale_budgets(monkeypatch)  # a function timeout of seconds, not the 900 s of a deployment
    op = OPERATIONS[case.operation]
    timeout = HANDLER_HANG_TIMEOUT if case.fault == "hang" else HANDLER_TIMEOUT
    with handler_world(timeout) as world:
        other = parse_properties(
            group_properties(world.appliances, PartitionName="orders", GroupLabel="orders-ha")
        )
        assert compose.build_engine().apply(other, OTHER_ID).ok
        add_legacy_registration(world.appliances)
        cfn, logical = world.cfn, "Group"
        create = cfn.create_event(logical, world.props(op, op.setup[0] if op.setup else op.rotation))
        physical_id = physical_id_for(create)
        token = ownership_token(physical_id)
        current = world.props(op, op.rotation)
        previous = current
        if op.setup:
            assert world.invoke(create).status == "SUCCESS"
            for old, new in itertools.pairwise(op.setup):
                previous = world.props(op, new)
                update = cfn.update_event(logical, physical_id, previous, world.props(op, old))
                assert world.invoke(update).status == "SUCCESS"

        def event() -> dict[str, Any]:
            if op.destroy:
                return cfn.delete_event(logical, physical_id, current)
            if op.setup:
                return cfn.update_event(logical, physical_id, current, previous)
            return cfn.create_event(logical, current)

        before = others(world.appliances, token)
        marks = [a.journal.mark() for a in world.appliances]
        faulted = world.appliances[FAULTED]
        injected = inject(faulted, case)
        try:
            answer = answered(lambda: world.invoke(event()), limit=timeout + 10)
        finally:
            injected.remove()

        assert answer.error is None, f"no answer: {answer.error!r}"
        response = answer.result
        assert response.status == "FAILED", response.describe()
        assert response.reason.startswith(f"Appliance {faulted.host}, step '{case.step.named(token)}"), (
            response.reason
        )
        assert response.physical_resource_id == physical_id
        assert others(world.appliances, token) == before

        # What CloudFormation does next: roll back a failed Create or Update; then the user re-runs.
        if not op.setup:
            assert world.invoke(cfn.delete_event(logical, physical_id, current)).status == "SUCCESS"
        elif not op.destroy:
            rollback = cfn.update_event(logical, physical_id, previous, current)
            assert world.invoke(rollback).status == "SUCCESS"
        rerun = world.invoke(event())
        assert rerun.status == "SUCCESS", rerun.describe()

        spec = parse_properties(current)
        assert_converged(world.appliances, compose.build_engine(), spec, physical_id, op)
        assert others(world.appliances, token) == before
        assert_untouched_by_mutations(world.appliances, marks, foreign_names(before))
        assert_hsms_safe(world.appliances, None)
        answers = [json.dumps(r.body) for r in cfn.receiver.responses()]
        for secret in (world.secrets.admin_password, world.secrets.domain, world.secrets.partition_password):
            assert not any(secret in answer for answer in answers)


# --------------------------------------------------------------------------------------------------
# A hostile response URL: the fault is on CloudFormation's side of the answer


@pytest.mark.parametrize("reply", ["trickle", "cut"])
def test_a_response_url_that_trickles_or_cuts_its_reply_gets_one_answer_before_the_timeout(
    reply: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply trickles one byte a second (38 s for all of it) or stops after ``HTT``: the Create
    is answered once, and the function returns before its timeout (a run still sending then would
    be killed, and crhelper's timer would send a second answer)."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("LUNA_HA_RESPONSE_MARGIN_SECONDS", "1.5")
    scale_budgets(monkeypatch)  # a function timeout of seconds, not the 900 s of a deployment
    left_at_return: dict[str, float] = {}

    def timed(handler: Any) -> Any:
        def run(event: dict[str, Any], context: Any) -> None:
            try:
                handler(event, context)
            finally:
                left_at_return[event["RequestId"]] = context.get_remaining_time_in_millis() / 1000

        return run

    with handler_world(HANDLER_TIMEOUT, wrap=timed) as world:
        world.cfn.receiver.misbehave(reply, interval=1.0)
        create = world.cfn.create_event("Group", world.props(OPERATIONS["create"], 0))

        response = world.invoke(create)  # exactly one answer so far
        assert response.status == "SUCCESS", response.describe()
        until = time.monotonic() + HANDLER_TIMEOUT + 5
        while create["RequestId"] not in left_at_return and time.monotonic() < until:
            time.sleep(0.1)

        assert left_at_return.get(create["RequestId"], 0) > 0, "the function ran into its timeout"
        assert world.cfn.receiver.counts()[create["RequestId"]] == 1
