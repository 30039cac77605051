"""Pure planning: what one appliance needs, given what it has. No I/O here.

``plan_appliance(desired, observed)`` returns the ordered steps that converge one appliance; the
engine runs them over one SSH session, the CLI prints them for ``plan``. Re-planning after any
partial run gives exactly the steps still missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from luna_ha.errors import ApplianceError, ZeroizationGuard
from luna_ha.ownership import RegistrationName, parse_registration
from luna_ha.software import Channel, Software

ALL_LOGIN_ATTEMPTS = 3


class Action(StrEnum):
    HSM_INIT = "hsm init"
    REGEN_CERT = "sysconf regenCert"
    NTLS_BIND = "ntls bind"
    NTLS_RESTART = "service restart ntls"  # 7.x: a new certificate or binding is served after it
    HSM_LOGIN = "hsm login"
    PARTITION_CREATE = "partition create"
    # 7.x: a partition is created uninitialized; then its label, Partition SO and cloning domain,
    # then its Crypto Officer, whose first password expires at once (HSM policy 21) and is changed.
    PARTITION_INIT = "partition init"
    CO_INIT = "partition init co"
    CO_CHANGE = "change crypto officer password"
    UPLOAD_CERT = "upload certificate"
    CLIENT_REGISTER = "client register"
    FILE_DELETE = "my file delete"  # target: a file name in the appliance's home directory
    CLIENT_ASSIGN = "client assignPartition"
    CLIENT_REVOKE = "client revokePartition"
    CLIENT_DELETE = "client delete"
    PARTITION_DELETE = "partition delete"
    # Records in the coordination table, not lunash commands: shown in plans, run by the engine.
    ADOPT_PARTITION = "adopt partition"
    RETAIN_PARTITION = "retain partition"
    FORGET_PARTITION = "forget partition"


RECORDS = frozenset({Action.ADOPT_PARTITION, Action.RETAIN_PARTITION, Action.FORGET_PARTITION})


class PartitionClaim(StrEnum):
    """What this resource's records say of the goal's partition on one appliance."""

    NONE = "none"  # no record of this resource's: somebody else's, or nobody's
    CREATED = "created"  # this resource created it (or began to: a record is written first)
    ADOPTED = "adopted"  # it existed; this resource uses it and never deletes it


@dataclass(frozen=True)
class Step:
    action: Action
    target: str = ""  # the partition or registration name the step acts on
    partition: str = ""  # for assignments and revocations: the partition given to/taken from ``target``
    via: Channel = Channel.LUNASH  # REST for the 7.x steps lunash cannot do on that version

    def __str__(self) -> str:
        text = f"{self.action.value} {self.target}".strip()
        text = f"{text} -partition {self.partition}" if self.partition else text
        return f"{text} (REST)" if self.via is Channel.REST else text


@dataclass(frozen=True)
class PartitionRoles:
    """A 7.x partition's initialization and its Crypto Officer, as the appliance reports them."""

    initialized: bool
    co_initialized: bool = False
    co_password_expired: bool = False  # policy 21: the password set at initialization must change
    co_locked_out: bool = False


@dataclass(frozen=True)
class Registration:
    """A client registration as the appliance reports it."""

    name: str
    hostname: str
    partitions: tuple[str, ...] = ()
    fingerprint: str | None = None


@dataclass(frozen=True)
class ApplianceState:
    """What observing one appliance found (read-only commands only)."""

    hsm_serial: str | None
    hsm_label: str | None
    zeroized: bool
    attempts_left: int | None
    partitions: Mapping[str, str] = field(default_factory=dict)  # name -> serial
    clients: tuple[str, ...] = ()  # every registered client name
    registrations: Mapping[str, Registration] = field(default_factory=dict)  # details of the owned ones
    software: Software | None = None  # None: hsm show printed no version (a 5.x/6.x appliance)
    # 7.x: the goal's partition initialization and Crypto Officer, by partition name
    roles: Mapping[str, PartitionRoles] = field(default_factory=dict)

    @property
    def luna7(self) -> bool:
        return self.software is not None and self.software.luna7


@dataclass(frozen=True)
class ApplianceGoal:
    """What this resource wants on one appliance.

    ``present=False`` means the appliance is leaving the group (or the group is being destroyed):
    remove this resource's registrations, and the partition only when ``delete_partition``.
    ``registrations`` maps each wanted registration name to its certificate's Luna fingerprint.
    ``claim`` is what the coordination records say of the partition; ``adopt`` lets a present goal
    use a partition that exists without a record of this resource (``ExistingPartition: Adopt``).
    A partition is deleted only when this resource created it.
    """

    host: str
    partition: str
    token: str
    present: bool = True
    initialize: bool = False
    hsm_label: str | None = None
    registrations: Mapping[str, str] = field(default_factory=dict)
    delete_partition: bool = False
    claim: PartitionClaim = PartitionClaim.NONE
    adopt: bool = False
    # Files this resource uploaded and has not deleted yet (recorded before each upload): a run
    # that stopped between an upload and its `my file delete` left them.
    leftover_files: frozenset[str] = frozenset()


def owned_registrations(observed: ApplianceState, token: str) -> dict[str, RegistrationName]:
    owned = {}
    for name in observed.clients:
        parsed = parse_registration(name, token)
        if parsed is not None:
            owned[name] = parsed
    return owned


def init_pending(goal: ApplianceGoal, observed: ApplianceState) -> bool:
    """An Initialize that ran ``hsm init`` but may not have finished ``regenCert``/``ntls bind``.

    Recognised by the requested label on an HSM without any partition: nothing can depend on its
    server certificate yet, so finishing the initialisation again is safe.
    """
    return (
        goal.initialize
        and not observed.zeroized
        and goal.hsm_label is not None
        and observed.hsm_label == goal.hsm_label
        and not observed.partitions
    )


def plan_appliance(goal: ApplianceGoal, observed: ApplianceState) -> tuple[Step, ...]:
    """The ordered steps that bring one appliance from ``observed`` to ``goal``.

    Raises ``ApplianceError`` (naming the appliance and the step) when the goal cannot be reached
    safely: a zeroized HSM without ``Initialize``, or an HSM Admin login that the zeroization guard
    refuses.
    """
    steps: list[Step] = []
    owned = owned_registrations(observed, goal.token)
    partition = goal.partition
    initialized_now = False

    luna7 = observed.luna7
    if goal.present:
        if observed.zeroized:
            if not goal.initialize:
                raise ApplianceError(
                    goal.host,
                    "hsm init",
                    "the HSM is zeroized (not initialized); "
                    "set Initialize: true and HsmLabel to initialize it",
                )
            steps += [Step(Action.HSM_INIT, goal.hsm_label or ""), *_server_certificate(luna7)]
            initialized_now = True
        elif init_pending(goal, observed):
            steps += _server_certificate(luna7)
        has_partition = partition in observed.partitions and not initialized_now
        if not has_partition:
            steps.append(Step(Action.HSM_LOGIN))
            steps.append(Step(Action.PARTITION_CREATE, partition))
            if luna7:
                fresh = PartitionRoles(initialized=False)
                steps += _partition_roles(goal, observed, fresh, created_now=True, logged_in=True)
        elif goal.claim is PartitionClaim.NONE:
            if not goal.adopt:
                raise ApplianceError(
                    goal.host,
                    "partition create",
                    f"a partition named {partition} (serial {observed.partitions[partition]}) already "
                    "exists and was not created by this resource; nothing was changed. To use it, set "
                    "ExistingPartition: Adopt (it is then never deleted by this resource); otherwise "
                    "choose another PartitionName",
                )
            steps.append(Step(Action.ADOPT_PARTITION, partition))
        if has_partition and luna7:
            logged_in = any(s.action is Action.HSM_LOGIN for s in steps)
            steps += _partition_roles(goal, observed, observed.roles.get(partition), logged_in=logged_in)
        for name, fingerprint in sorted(goal.registrations.items()):
            current = None if initialized_now else observed.registrations.get(name)
            if current is not None and current.fingerprint is not None and current.fingerprint != fingerprint:
                # Registered with another certificate (an earlier run that never published its key):
                # this name is ours, so replace the registration.
                steps += _remove_registration(current)
                current = None
            if current is None:
                steps += [Step(Action.UPLOAD_CERT, name), Step(Action.CLIENT_REGISTER, name)]
                # The registration holds the certificate now: the uploaded copy is not needed.
                steps.append(Step(Action.FILE_DELETE, uploaded_file(name)))
                steps.append(Step(Action.CLIENT_ASSIGN, name, partition))
            elif partition not in current.partitions:
                steps.append(Step(Action.CLIENT_ASSIGN, name, partition))

    for name in sorted(owned):
        if goal.present and name in goal.registrations:
            continue
        detail = observed.registrations.get(name, Registration(name=name, hostname=name))
        steps += _remove_registration(detail)

    deleting = (
        not goal.present
        and goal.delete_partition
        and goal.claim is PartitionClaim.CREATED
        and partition in observed.partitions
        and not observed.zeroized
    )
    if deleting:
        steps.append(Step(Action.HSM_LOGIN))
        steps.append(Step(Action.PARTITION_DELETE, partition))
    # The record of a partition this resource created and keeps lives as long as the partition,
    # marked retained: a retried Create after a rollback (the same id) or the appliance coming back
    # uses it again, and another resource may adopt it. An adoption ends with the resource's use.
    # A record of a partition that is not there (a run killed around `partition create` that never
    # sent it) describes nothing: it goes too.
    absent = partition not in observed.partitions
    if not goal.present and (deleting or goal.claim is PartitionClaim.ADOPTED or absent):
        if goal.claim is not PartitionClaim.NONE:
            steps.append(Step(Action.FORGET_PARTITION, partition))
    elif not goal.present and goal.claim is PartitionClaim.CREATED:
        steps.append(Step(Action.RETAIN_PARTITION, partition))

    handled = {s.target for s in steps if s.action is Action.FILE_DELETE}
    steps += [Step(Action.FILE_DELETE, f) for f in sorted(goal.leftover_files - handled)]

    if any(step.action is Action.HSM_LOGIN for step in steps) and not initialized_now:
        check_login_allowed(goal.host, observed)
    return tuple(steps)


def _server_certificate(luna7: bool) -> list[Step]:
    steps = [Step(Action.REGEN_CERT), Step(Action.NTLS_BIND)]
    return [*steps, Step(Action.NTLS_RESTART)] if luna7 else steps


def _partition_roles(
    goal: ApplianceGoal,
    observed: ApplianceState,
    roles: PartitionRoles | None,
    *,
    created_now: bool = False,
    logged_in: bool = False,
) -> list[Step]:
    """The 7.x steps still missing between `partition create` and a partition members can use.

    Initializing an initialized partition erases it, so a step is planned only from what the
    appliance shows, and only on a partition this resource created: someone else's partition
    (adopted) must already be initialized, with a Crypto Officer whose password works.
    """
    partition = goal.partition
    if roles is None:
        raise ApplianceError(
            goal.host, "observe", f"the initialization of partition {partition} could not be read"
        )
    if roles.co_locked_out:
        raise ApplianceError(
            goal.host,
            "partition init co",
            f"the Crypto Officer of partition {partition} is locked out (too many wrong passwords); "
            "reset it on the appliance, then re-run",
        )
    missing = [
        action
        for action, needed in (
            (Action.PARTITION_INIT, not roles.initialized),
            (Action.CO_INIT, not roles.co_initialized),
            (Action.CO_CHANGE, not roles.co_initialized or roles.co_password_expired),
        )
        if needed
    ]
    if missing and not created_now and goal.claim is not PartitionClaim.CREATED:
        raise ApplianceError(
            goal.host,
            missing[0].value,
            f"partition {partition} was not created by this resource and is not ready to use "
            f"({missing[0].value} is still to be done); finish it on the appliance, then re-run",
        )
    channel = observed.software.partition_init_channel if observed.software else Channel.REST
    steps = []
    if Action.PARTITION_INIT in missing and channel is Channel.LUNASH and not logged_in:
        steps.append(Step(Action.HSM_LOGIN))
    for action in missing:
        via = Channel.REST if action is Action.CO_CHANGE else channel
        steps.append(Step(action, partition, via=via))
    return steps


def _remove_registration(registration: Registration) -> list[Step]:
    steps = [Step(Action.CLIENT_REVOKE, registration.name, p) for p in registration.partitions]
    steps.append(Step(Action.CLIENT_DELETE, registration.name))
    # Its uploaded certificate went right after `client register`, or, if that run stopped in
    # between, the next run deletes it from the upload record (``ApplianceGoal.leftover_files``).
    return steps


def uploaded_file(registration: str) -> str:
    """The file a registration's certificate is uploaded as (``client register`` reads it there)."""
    return f"{registration}.pem"


def check_login_allowed(host: str, observed: ApplianceState) -> None:
    """The zeroization guard: log in as HSM Admin only while every attempt remains."""
    if observed.attempts_left != ALL_LOGIN_ATTEMPTS:
        left = "unknown" if observed.attempts_left is None else str(observed.attempts_left)
        raise ZeroizationGuard(
            host,
            "hsm login",
            f"refusing to log in as HSM Admin with {left} of {ALL_LOGIN_ATTEMPTS} attempts left "
            "(a failure could zeroize the HSM); log in once by hand with the right password "
            "to reset the counter, then re-run",
        )
