"""One appliance's part of a run, in two halves on one connection: open and observe, then converge.

Between the halves each member passes the ``FamilyGate``: it waits (bounded) for the other
members' observations, so a group that mixes appliance families fails before anything was sent
that changes an appliance.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from luna_ha import appliance as appl
from luna_ha.admin_guard import AdminGuard
from luna_ha.clock import Deadline
from luna_ha.errors import ApplianceError, LunaHAError, SecretError
from luna_ha.handshake import HostKeyPin, SshTarget
from luna_ha.luna7 import PartitionOverRest
from luna_ha.planner import Action, ApplianceGoal, ApplianceState, Step, plan_appliance
from luna_ha.rest import LunaRest
from luna_ha.run_coordination import ResourceCoordination
from luna_ha.secrets import SecretReader, check_destination
from luna_ha.shell import ApplianceShell, CommandRecord
from luna_ha.software import Software
from luna_ha.spec import ApplianceSpec
from luna_ha.ssh import LunaShell

log = logging.getLogger(__name__)
Progress = Callable[[str, str], None]
RestFactory = Callable[[ApplianceSpec, Deadline], LunaRest]
ShellFactory = Callable[[SshTarget, Deadline, Callable[[CommandRecord], None]], ApplianceShell]
_NEEDS_SECRETS = frozenset(
    {
        Action.HSM_INIT,
        Action.HSM_LOGIN,
        Action.PARTITION_CREATE,
        Action.PARTITION_INIT,
        Action.CO_INIT,
        Action.CO_CHANGE,
    }
)


def default_shell(
    target: SshTarget, deadline: Deadline, observer: Callable[[CommandRecord], None]
) -> ApplianceShell:
    return LunaShell(target, deadline=deadline, observer=observer)


@dataclass
class ApplianceReport:
    """What happened on one appliance during one run."""

    host: str
    leaving: bool = False
    planned: tuple[Step, ...] = ()
    done: list[Step] = field(default_factory=list)
    partition_serial: str | None = None
    server_cert: str | None = field(default=None, repr=False)
    commands: int = 0
    mutating: int = 0
    connections: int = 0
    seconds: float = 0.0
    error: LunaHAError | None = None
    # Why the appliance was left alone (a member only a group document records, which its
    # manager secret does not name): nothing was sent to it.
    skipped: str | None = None
    # What observing it found (plan and status read it; not shown in a report).
    observed: ApplianceState | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def software(self) -> str | None:
        """The appliance software observed, e.g. ``Luna Network HSM 7.8.5`` (None: not read)."""
        software = self.observed.software if self.observed is not None else None
        return str(software) if software is not None else None


@dataclass(frozen=True)
class Run:
    """What every appliance of one run shares."""

    physical_id: str
    token: str
    deadline: Deadline
    apply: bool
    secrets: appl.GroupSecrets | None
    certificates: Mapping[str, str]
    guard: AdminGuard | None
    records: ResourceCoordination
    # admin and partition secrets' ARNs and where they may go (checked before they are used)
    destinations: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """One appliance of a run: how to reach it and what this resource wants there."""

    appliance: ApplianceSpec
    goal: ApplianceGoal
    # Left alone when its manager secret does not name it: a member known only from a group
    # document (which anyone who may write the path could have edited), or any appliance of a
    # Delete (an apply sends nothing to an appliance its secret does not name, so nothing of this
    # resource is there, and a Delete must not stick on it).
    skip_unnamed: bool = False


@dataclass
class Session:
    """One appliance between the halves: its report so far and, when observing worked, the open
    connection and what it showed."""

    target: Target
    report: ApplianceReport
    started: float
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    shell: ApplianceShell | None = None
    observed: ApplianceState | None = None
    rest: PartitionOverRest | None = None  # Luna 7 members: the REST session, open for the run
    closed: bool = False

    @property
    def ready(self) -> bool:
        return self.shell is not None and self.observed is not None and self.report.error is None

    def fail(self, error: LunaHAError, step: str) -> None:
        self.report.error = (
            error if isinstance(error, ApplianceError) else ApplianceError(self.report.host, step, str(error))
        )

    def close(self) -> None:
        """Close the connection (once); the report's time ends here."""
        if self.closed:
            return
        self.closed = True
        try:
            self.stack.close()
        except Exception as exc:  # closing must never hide the run's outcome
            log.warning("closing the session to %s failed: %s", self.report.host, type(exc).__name__)
        self.shell = None
        self.report.seconds = time.monotonic() - self.started


def default_rest(a: ApplianceSpec, deadline: Deadline) -> LunaRest:
    if a.rest_certificate_fingerprint is None:
        raise ValueError("no REST certificate pin")
    return LunaRest(
        a.host, a.host, a.rest_port, fingerprint=a.rest_certificate_fingerprint, deadline=deadline
    )


class ApplianceRunner:
    """Connects to appliances and carries out their halves of a run."""

    def __init__(
        self,
        secrets: SecretReader,
        shell_factory: ShellFactory,
        progress: Progress,
        rest_factory: RestFactory = default_rest,
    ) -> None:
        self.secrets = secrets
        self.shell_factory = shell_factory
        self.progress = progress
        self.rest_factory = rest_factory

    # -- first half -------------------------------------------------------------------------------
    def open(self, target: Target, run: Run) -> Session:
        """Connect and observe (read-only commands only). Errors end up in the session's report."""
        a, goal = target.appliance, target.goal
        report = ApplianceReport(host=a.host, leaving=not goal.present)
        session = Session(target, report, time.monotonic())
        lock = threading.Lock()

        def count(record: CommandRecord) -> None:
            with lock:
                report.commands += 1
                report.mutating += int(record.mutating)

        step = "read manager secret"
        try:
            if target.skip_unnamed and not self._may_reach(a):
                report.skipped = (
                    f"secret {a.manager_secret_arn} does not name {a.fingerprint}: nothing was sent to it"
                )
                self.progress(a.host, f"skipped: {report.skipped}")
                session.close()
                return session
            ssh_target = self._ssh_target(a)
            self.progress(a.host, "connecting")
            step = "connect"
            session.shell = session.stack.enter_context(self.shell_factory(ssh_target, run.deadline, count))
            report.connections += 1
            step = "observe"
            session.observed = appl.observe(session.shell, goal.token)
            if session.observed.luna7 and goal.present:
                step = "observe: REST"
                session.observed = self._observe_roles(session, run)
            report.observed = session.observed
        except LunaHAError as exc:
            session.fail(exc, step)
        except Exception as exc:  # a bug or an unexpected library error: still name the appliance
            session.fail(ApplianceError(a.host, step, f"unexpected {type(exc).__name__}"), step)
        if session.report.error is not None:
            self.progress(a.host, f"FAILED: {session.report.error}")
            session.close()
        return session

    def _observe_roles(self, session: Session, run: Run) -> ApplianceState:
        """A Luna 7 member: open its REST session (its partition's Crypto Officer needs it) and
        read the initialization of the goal's partition, when it exists."""
        a, goal, observed = session.target.appliance, session.target.goal, session.observed
        assert observed is not None
        software = observed.software
        if a.rest_certificate_fingerprint is None:
            raise ApplianceError(
                a.host,
                "observe",
                f"this appliance runs {software}: its partition's Crypto Officer is set up over the "
                "appliance's REST service, so the appliance needs RestCertificateFingerprint (and RestPort "
                "when it is not 8443); see the README's Luna 7 section",
            )
        creds = self.secrets.manager_credentials(a.manager_secret_arn)
        if not creds.password:
            raise ApplianceError(
                a.host,
                "observe: REST",
                f"the REST service logs in with a password, and secret {a.manager_secret_arn} has none",
            )
        rest = session.stack.enter_context(self.rest_factory(a, run.deadline))
        rest.open_session(creds.username, creds.password, step="observe: REST login")
        session.rest = PartitionOverRest(rest, a.host, observed.hsm_serial or "")
        serial = observed.partitions.get(goal.partition)
        if serial is None or observed.zeroized:
            return observed
        return replace(observed, roles={goal.partition: session.rest.roles(serial)})

    # -- second half ------------------------------------------------------------------------------
    def converge(self, session: Session, run: Run) -> ApplianceReport:
        """Plan from the observation, apply (when the run applies), fetch server.pem; closes."""
        report = session.report
        if not session.ready:
            session.close()
            return report
        assert session.shell is not None and session.observed is not None
        shell, observed = session.shell, session.observed
        a = session.target.appliance
        records = run.records
        step = "read partition record"
        try:
            goal, record = records.goal_with_records(session.target.goal, observed)
            step = "plan"
            report.planned = plan_appliance(goal, observed)
            serials = dict(observed.partitions)
            hsm_serial = observed.hsm_serial or ""
            if run.apply and record is not None and record.serial is None and goal.partition in serials:
                # created by a run that stopped before it recorded the serial: record it now
                records.record_partition(
                    a.host, hsm_serial, goal.partition, state="created", serial=serials[goal.partition]
                )
            if run.apply and report.planned:
                self._check_step_secrets(a, report.planned, run, step)
                self.progress(a.host, f"{len(report.planned)} step(s) to run")
                step = "apply"

                def before(next_step: Step, done: Sequence[Step]) -> None:
                    if run.guard is not None:
                        run.guard.check(a.host, a.fingerprint, shell, next_step, done)
                    records.before_step(a.host, next_step, hsm_serial)

                def record_created() -> None:
                    serials.update(appl.read_partition_serials(shell))
                    serial = serials.get(goal.partition)
                    records.record_partition(
                        a.host, hsm_serial, goal.partition, state="created", serial=serial
                    )

                def after(done_step: Step) -> None:
                    records.after_step(done_step, hsm_serial)
                    if done_step.action is Action.PARTITION_CREATE and observed.luna7:
                        record_created()  # the 7.x steps that follow address the partition by serial
                    self.progress(a.host, f"done: {done_step}")

                secrets = run.secrets or appl.GroupSecrets("", "", "")
                rest = session.rest

                def over_rest(rest_step: Step) -> None:
                    if rest is None:
                        raise ApplianceError(a.host, str(rest_step), "no REST session to this appliance")
                    rest.run(rest_step, serials, secrets)

                report.done = appl.apply_steps(
                    shell,
                    report.planned,
                    secrets=secrets,
                    luna7=observed.luna7,
                    rest=over_rest,
                    certificates=run.certificates,
                    deadline=run.deadline,
                    on_step=after,
                    before_step=before,
                    record=lambda s: records.record_step(a.host, s, hsm_serial, serials),
                )
                created = any(s.action is Action.PARTITION_CREATE for s in report.done)
                if created and not observed.luna7:
                    step = "read partition serial"
                    record_created()
            report.partition_serial = serials.get(goal.partition)
            if goal.present:
                step = "download server.pem"
                report.server_cert = appl.fetch_server_cert(shell)
            self.progress(a.host, "converged" if run.apply else f"{len(report.planned)} step(s) planned")
        except LunaHAError as exc:  # not tied to an appliance by itself (a secret, a parse): say where
            session.fail(exc, step)
        except Exception as exc:  # a bug or an unexpected library error: still name the appliance
            session.fail(ApplianceError(a.host, step, f"unexpected {type(exc).__name__}"), step)
        if report.error is not None:
            self.progress(a.host, f"FAILED: {report.error}")
        session.close()
        return report

    # -- helpers ----------------------------------------------------------------------------------
    def _ssh_target(self, a: ApplianceSpec) -> SshTarget:
        creds = self.secrets.manager_credentials(a.manager_secret_arn)
        check_destination(a.manager_secret_arn, creds.appliances, a.host, a.fingerprint, "connect")
        return SshTarget(
            label=a.host,
            host=a.host,
            port=a.port,
            pin=HostKeyPin(key_line=a.host_key, fingerprint=a.host_key_fingerprint),
            username=creds.username,
            password=creds.password,
            private_key=creds.private_key,
            passphrase=creds.passphrase,
            legacy_algorithms=a.legacy_algorithms,
        )

    def _may_reach(self, a: ApplianceSpec) -> bool:
        try:
            creds = self.secrets.manager_credentials(a.manager_secret_arn)
        except SecretError:
            return False
        return a.fingerprint in creds.appliances

    @staticmethod
    def _check_step_secrets(a: ApplianceSpec, planned: Sequence[Step], run: Run, step: str) -> None:
        """A plan that sends the admin or partition secret: it was read, and it names this appliance."""
        if not any(s.action in _NEEDS_SECRETS for s in planned):
            return
        if run.secrets is None:
            raise ApplianceError(a.host, step, "the plan needs the admin secret, which was not read")
        needs_so = [s for s in planned if s.action in (Action.PARTITION_INIT, Action.CO_INIT)]
        if needs_so:
            try:
                run.secrets.partition_so()
            except SecretError as exc:
                raise ApplianceError(
                    a.host,
                    str(needs_so[0]),
                    f"{exc}; add it to the secret, then re-run (nothing was changed)",
                ) from None
        for arn, allowed in run.destinations.items():
            check_destination(arn, allowed, a.host, a.fingerprint, step)


#: How long an observed member waits for the other members' observations before it goes on.
FAMILY_WAIT_SECONDS = 10.0


class FamilyGate:
    """One HA group holds one family of appliance software (HA needs the same partition version).

    Each member, once observed, waits until every member that started has been observed (or has
    failed), then fails, naming each one's software, when the families differ: before any change.
    The wait is bounded (``FAMILY_WAIT_SECONDS``, or a quarter of the time left): a member that
    hangs or cannot be reached fails on its own and the others go on; a member observed only later
    (it hung, or there are more members than workers) that differs from the others fails then,
    without changing anything, and the next run refuses the group before any change.
    """

    def __init__(self) -> None:
        self._pending: set[str] = set()
        self._software: dict[str, Software] = {}
        self._done = threading.Condition()

    def started(self, host: str) -> None:
        with self._done:
            self._pending.add(host)

    def observed(self, host: str, software: Software | None) -> None:
        """``software`` None: the appliance failed or is not a member of the group."""
        with self._done:
            self._pending.discard(host)
            if software is not None:
                self._software[host] = software
            self._done.notify_all()

    def check(self, session: Session, deadline: Deadline) -> None:
        """Wait for the other members, then fail ``session`` if the group mixes families."""
        software = session.observed.software if session.observed is not None else None
        if software is None:
            return
        wait = min(FAMILY_WAIT_SECONDS, deadline.remaining() / 4)
        with self._done:
            self._done.wait_for(lambda: not self._pending, timeout=wait)
            members = dict(self._software)
        if len({s.family for s in members.values()}) < 2:
            return
        listing = ", ".join(f"{host} ({software})" for host, software in members.items())
        session.fail(
            ApplianceError(
                session.report.host,
                "observe",
                f"one HA group cannot mix Luna SA 5.x/6.x and Luna Network HSM 7.x appliances: {listing}; "
                "nothing was changed",
            ),
            "observe",
        )
        session.close()
