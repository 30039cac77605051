"""The convergence engine: one run over every appliance of a group, in parallel, under a deadline.

``Engine.apply`` observes each appliance, plans (pure, ``planner``), applies only the difference,
then publishes what ASG members need to Parameter Store. ``Engine.plan`` does the observing and
planning and nothing else. ``Engine.destroy`` removes what this group owns. The Lambda and the CLI
build an ``Engine`` with real adapters; tests build it against the simulator and moto.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from luna_ha import appliance as appl
from luna_ha.certs import generate_client_credential, luna_fingerprint
from luna_ha.clock import Deadline
from luna_ha.errors import (
    ApplianceError,
    CommandBuildError,
    LunaHAError,
    SecretError,
    SpecError,
    StoreError,
)
from luna_ha.layout import (
    GroupDocument,
    Member,
    Parameter,
    ParameterPlan,
    admin_lock_name,
    build_layout,
    deletion_marker_name,
    owned_by,
    plan_parameters,
)
from luna_ha.lunash.commands import check_secret
from luna_ha.ownership import ownership_token, parse_registration, registration_name
from luna_ha.planner import (
    Action,
    ApplianceGoal,
    ApplianceState,
    Step,
    check_login_allowed,
    plan_appliance,
)
from luna_ha.secrets import SecretReader
from luna_ha.spec import ApplianceSpec, GroupSpec, parse_appliance
from luna_ha.ssh import CommandRecord, HostKeyPin, LunaShell, SshTarget
from luna_ha.store import ParameterStore

Progress = Callable[[str, str], None]
log = logging.getLogger(__name__)

# How long <path>/deleting outlives the Delete that wrote it: past the oldest event Lambda still
# delivers (MaximumEventAgeInSeconds: 1 hour) plus a whole run (15 minutes at most). Parameter
# Store then deletes it, so a Delete leaves nothing behind for good.
DELETION_MARKER_LIFETIME = timedelta(hours=2)
_NOT_RECORDED = ""  # what a group document does not say (the admin secret's ARN)
NOT_GENERATED = "(certificate to be generated)"
_NEEDS_SECRETS = frozenset({Action.HSM_INIT, Action.HSM_LOGIN, Action.PARTITION_CREATE})
ShellFactory = Callable[[SshTarget, Deadline, Callable[[CommandRecord], None]], LunaShell]


def _default_shell(
    target: SshTarget, deadline: Deadline, observer: Callable[[CommandRecord], None]
) -> LunaShell:
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

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class RunReport:
    operation: str
    appliances: list[ApplianceReport] = field(default_factory=list)
    parameters_put: tuple[str, ...] = ()
    parameters_deleted: tuple[str, ...] = ()
    data: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.appliances)

    @property
    def failures(self) -> list[ApplianceReport]:
        return [a for a in self.appliances if not a.ok]


class ResourceDeleted(LunaHAError):
    """A Delete of this resource has begun (possibly while this operation was running)."""


class GroupRunError(LunaHAError):
    """One or more appliances failed; the report says what each did and where each stopped."""

    def __init__(self, report: RunReport) -> None:
        self.report = report
        reasons = "; ".join(str(a.error) for a in report.failures)
        super().__init__(
            f"{report.operation} failed on {len(report.failures)} of {len(report.appliances)} "
            f"appliance(s): {reasons}"
        )


@dataclass(frozen=True)
class Generation:
    """One client certificate generation: its registration name, certificate and key."""

    client: str
    name: str
    cert_pem: str
    key_pem: str = field(repr=False)


class Engine:
    def __init__(
        self,
        *,
        secrets: SecretReader,
        store: ParameterStore,
        shell_factory: ShellFactory = _default_shell,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        progress: Progress | None = None,
        max_workers: int = 16,
        deletion_markers: bool = False,
    ) -> None:
        self.secrets = secrets
        self.store = store
        self.shell_factory = shell_factory
        self.now = now
        self.progress = progress or (lambda host, message: None)
        self.max_workers = max_workers
        # CloudFormation may send Delete while a Create still runs (in another invocation). With
        # markers, Delete first writes <path>/deleting = its id; an apply of that id refuses to
        # start, and one already running undoes its work instead of publishing.
        self.deletion_markers = deletion_markers

    # -- public operations ---------------------------------------------------------------
    def plan(self, spec: GroupSpec, physical_id: str, *, deadline: Deadline | None = None) -> RunReport:
        """Observe and plan; writes nothing anywhere (no command that mutates, no SSM put)."""
        deadline = deadline or Deadline.never()
        started = time.monotonic()
        token = ownership_token(physical_id)
        self._prefetch_secrets(spec, group=False)
        existing = self.store.read(spec.parameter_path)
        generations = self._generations(spec, token, existing, create=False)
        # A generation not generated yet has no fingerprint: any registration of that name differs.
        fingerprints = {
            g.name: luna_fingerprint(g.cert_pem) if g.cert_pem else NOT_GENERATED for g in generations
        }
        goals = self._goals(spec, token, existing, previous=None, fingerprints=fingerprints, destroying=False)
        reports = self._run_all(goals, deadline, apply=False, secrets=None, certificates={})
        return RunReport("plan", reports, seconds=time.monotonic() - started)

    def apply(
        self,
        spec: GroupSpec,
        physical_id: str,
        *,
        previous: GroupSpec | None = None,
        deadline: Deadline | None = None,
    ) -> RunReport:
        deadline = deadline or Deadline.never()
        started = time.monotonic()
        token = ownership_token(physical_id)
        self._prefetch_secrets(spec, group=True)
        group_secrets = self._group_secrets(spec)
        begun = self.now().timestamp()
        existing = self.store.read(spec.parameter_path)
        known = dict(existing)
        if previous is not None and previous.parameter_path != spec.parameter_path:
            # Moving the path keeps every client's certificate: take it from the old path.
            old = self.store.read(previous.parameter_path)
            if owned_by(old, physical_id):
                known = {**_rebased(old, previous.parameter_path, spec.parameter_path), **existing}
        generations = self._generations(spec, token, known, create=True)
        # Publish new client keys before any appliance registers them: a run that stops half-way
        # leaves a key the next run reuses, never a registration whose key is lost.
        written = self._publish_credentials(spec, generations, existing)
        new_credentials = tuple(p.name for p in written)
        fingerprints = {g.name: luna_fingerprint(g.cert_pem) for g in generations}
        certificates = {g.name: g.cert_pem for g in generations}
        goals = self._goals(
            spec, token, existing, previous=previous, fingerprints=fingerprints, destroying=False
        )
        reports = self._run_all(
            goals,
            deadline,
            apply=True,
            secrets=group_secrets,
            certificates=certificates,
            lock_path=spec.parameter_path,
        )
        report = RunReport("apply", reports)
        if not report.ok:
            report.parameters_put = new_credentials
            report.seconds = time.monotonic() - started
            raise GroupRunError(report)
        # Every generation is in Parameter Store now (found, written, or adopted from another run).
        existing = {**existing, **_credential_parameters(spec.parameter_path, generations)}
        if self._deleted_since(spec, physical_id, begun):
            self.destroy(spec, physical_id, deadline=deadline)
            raise ResourceDeleted(
                f"a Delete of {physical_id} arrived while this operation ran; its changes were undone"
            )
        document = self._document(spec, physical_id, reports, generations)
        server_certs = {r.host: r.server_cert or "" for r in reports if not r.leaving}
        by_client: dict[str, dict[str, tuple[str, str]]] = {}
        for g in generations:
            by_client.setdefault(g.client, {})[g.name] = (g.cert_pem, g.key_pem)
        desired = build_layout(spec.parameter_path, document, server_certs, by_client)
        previous_doc = _document_of(existing)
        rewrite_secure = previous_doc is not None and previous_doc.kms_key_id != spec.kms_key_id
        plan = plan_parameters(desired, existing, rewrite_secure=rewrite_secure, path=spec.parameter_path)
        self.store.apply(plan)
        deleted = list(plan.deletes)
        if previous is not None and previous.parameter_path != spec.parameter_path:
            old = self.store.read(previous.parameter_path)
            if owned_by(old, physical_id):
                old_plan = plan_parameters({}, old, rewrite_secure=False, path=previous.parameter_path)
                self.store.apply(old_plan)
                deleted += old_plan.deletes
        report.parameters_put = new_credentials + tuple(p.name for p in plan.puts)
        report.parameters_deleted = tuple(deleted)
        report.data = _data(spec, document, generations)
        report.seconds = time.monotonic() - started
        return report

    def destroy(self, spec: GroupSpec, physical_id: str, *, deadline: Deadline | None = None) -> RunReport:
        """Remove this group's registrations (and partitions under the Delete policy) and parameters."""
        deadline = deadline or Deadline.never()
        started = time.monotonic()
        token = ownership_token(physical_id)
        existing = self.store.read(spec.parameter_path)
        if self.deletion_markers:
            now = self.now()
            value = json.dumps({"id": physical_id, "at": now.timestamp()})
            marker = Parameter(
                deletion_marker_name(spec.parameter_path), value, expires=now + DELETION_MARKER_LIFETIME
            )
            self.store.apply(ParameterPlan(puts=(marker,)))
        owns_parameters = owned_by(existing, physical_id)
        deletes_partitions = spec.partition_deletion_policy == "Delete"
        self._prefetch_secrets(spec, group=deletes_partitions)
        group_secrets = self._group_secrets(spec) if deletes_partitions else None
        goals = self._goals(
            spec, token, existing if owns_parameters else {}, previous=None, fingerprints={}, destroying=True
        )
        reports = self._run_all(
            goals, deadline, apply=True, secrets=group_secrets, certificates={}, lock_path=spec.parameter_path
        )
        report = RunReport("destroy", reports)
        if not report.ok:
            report.seconds = time.monotonic() - started
            raise GroupRunError(report)
        # Everything under the path while this resource owns it; otherwise (a replacement took the
        # path over, or a Create failed before publishing its group document) only the client
        # generations that carry this resource's token.
        # Not the deletion marker: this Delete's own has replaced what the read found, and must
        # stay until it expires for a Create still running to see it.
        mine = existing if owns_parameters else _token_parameters(existing, spec.parameter_path, token)
        if self.deletion_markers:
            mine = {k: v for k, v in mine.items() if k != deletion_marker_name(spec.parameter_path)}
        plan = plan_parameters({}, mine, rewrite_secure=False, path=spec.parameter_path)
        self.store.apply(plan)
        report.parameters_deleted = tuple(plan.deletes)
        report.seconds = time.monotonic() - started
        return report

    def destroy_published(
        self, path: str, physical_id: str, *, deadline: Deadline | None = None
    ) -> RunReport | None:
        """Delete a resource from what its group document at ``path`` records, when the Delete's
        properties no longer parse (a template written for an older version of this product):
        its registrations on every published member and its parameters. Partitions are kept
        (the admin secret is not recorded, and keeping is the safe side). None when ``path`` holds
        no group document of ``physical_id``: then nothing of this resource was ever published."""
        document = _document_of(self.store.read(path))
        if document is None or document.owner != physical_id:
            return None
        spec = GroupSpec(
            group_label=document.label,
            partition_name=document.partition,
            admin_secret_arn=_NOT_RECORDED,
            partition_secret_arn=document.partition_secret_arn,
            appliances=(),  # the members come from the document, as for any removed appliance
            parameter_path=path,
            kms_key_id=document.kms_key_id,
        )
        return self.destroy(spec, physical_id, deadline=deadline)

    # -- deletion markers -------------------------------------------------------------------
    def _deleted_since(self, spec: GroupSpec, physical_id: str, begun: float) -> bool:
        """A Delete of ``physical_id`` began after this run did (an older marker is a finished
        Delete: a retried Create of the same id may build the resource again)."""
        if not self.deletion_markers:
            return False
        marker = self.store.get(deletion_marker_name(spec.parameter_path))
        if marker is None:
            return False
        try:
            recorded = json.loads(marker.value)
            return bool(recorded["id"] == physical_id and float(recorded["at"]) >= begun)
        except (ValueError, KeyError, TypeError):
            return False

    # -- preparation -----------------------------------------------------------------------
    def _prefetch_secrets(self, spec: GroupSpec, *, group: bool) -> None:
        """Every appliance's manager secret (and the admin and partition secrets when ``group``)
        in one call, before the appliance threads ask for them."""
        arns = [spec.admin_secret_arn, spec.partition_secret_arn] if group else []
        self.secrets.prefetch(arns + [a.manager_secret_arn for a in spec.appliances])

    def _group_secrets(self, spec: GroupSpec) -> appl.GroupSecrets:
        """The admin and partition secrets, checked before any appliance is touched."""
        admin = self.secrets.admin_secret(spec.admin_secret_arn)
        partition = self.secrets.partition_secret(spec.partition_secret_arn)
        for arn, key, value in (
            (spec.admin_secret_arn, "password", admin.password),
            (spec.admin_secret_arn, "domain", admin.domain),
            (spec.partition_secret_arn, "password", partition.password),
        ):
            try:
                check_secret(key, value)
            except CommandBuildError as exc:
                raise SecretError(f"Secret {arn}: key {exc}") from None
        return appl.GroupSecrets(admin.password, admin.domain, partition.password)

    def _generations(
        self, spec: GroupSpec, token: str, existing: Mapping[str, Parameter], *, create: bool
    ) -> list[Generation]:
        """Each client's current generation and the previous one still in use, with their keys.

        The previous generation is the one published as current before this run (or, when that is
        the current one already, the newest older one still published): running members keep it
        until they re-bootstrap.
        """
        result: list[Generation] = []
        for client in spec.clients:
            current = str(registration_name(client.name, token, client.rotation))
            published = _published_generations(existing, spec.parameter_path, client.name, token)
            previous = _previous_generation(existing, spec.parameter_path, client.name, current, published)
            for name in [current] + ([previous] if previous else []):
                cert = existing.get(_param(spec.parameter_path, f"clients/{client.name}/{name}/cert"))
                key = existing.get(_param(spec.parameter_path, f"clients/{client.name}/{name}/key"))
                if cert is not None and key is not None:
                    result.append(Generation(client.name, name, cert.value, key.value))
                elif create:
                    credential = generate_client_credential(name, now=self.now())
                    result.append(Generation(client.name, name, credential.cert_pem, credential.key_pem))
                else:
                    result.append(Generation(client.name, name, "", ""))
        return result

    def _publish_credentials(
        self, spec: GroupSpec, generations: list[Generation], existing: Mapping[str, Parameter]
    ) -> list[Parameter]:
        """Write each new generation's key and certificate once; if another run wrote them first
        (a duplicated event), adopt what it wrote so that every run registers the same certificate.
        Returns the parameters written."""
        written: list[Parameter] = []
        for index, g in enumerate(generations):
            key, cert = _credential_parameters(spec.parameter_path, [g]).values()
            if key.name in existing and cert.name in existing:
                continue
            base = key.name.rsplit("/", 1)[0]
            if self.store.create(key):
                self.store.apply(ParameterPlan(puts=(cert,)))
                written += [key, cert]
                continue
            adopted = self._read_generation(spec.parameter_path, base, g)
            generations[index] = adopted
        return written

    def _read_generation(self, path: str, base: str, g: Generation, attempts: int = 10) -> Generation:
        for _ in range(attempts):
            latest = self.store.read(path)
            key, cert = latest.get(f"{base}/key"), latest.get(f"{base}/cert")
            if key is not None and cert is not None:
                return Generation(g.client, g.name, cert.value, key.value)
            time.sleep(0.2)  # the other writer puts the certificate right after the key
        raise LunaHAError(
            f"the certificate of {g.name} was not published by the run that wrote its key; re-run"
        )

    def _goals(
        self,
        spec: GroupSpec,
        token: str,
        existing: Mapping[str, Parameter],
        *,
        previous: GroupSpec | None,
        fingerprints: Mapping[str, str],
        destroying: bool,
    ) -> list[tuple[ApplianceSpec, ApplianceGoal]]:
        goals: list[tuple[ApplianceSpec, ApplianceGoal]] = []
        seen: set[str] = set()
        delete_partition = spec.partition_deletion_policy == "Delete"
        for a in spec.appliances:
            seen.add(a.host_identity)
            goal = ApplianceGoal(
                host=a.host,
                partition=spec.partition_name,
                token=token,
                present=not destroying,
                initialize=a.initialize,
                hsm_label=a.hsm_label,
                registrations=dict(fingerprints) if not destroying else {},
                delete_partition=delete_partition and destroying,
            )
            goals.append((a, goal))
        leaving: list[ApplianceSpec] = list(previous.appliances) if previous is not None else []
        leaving += _member_appliances(_document_of(existing))
        for a in leaving:
            if a.host_identity in seen:
                continue
            seen.add(a.host_identity)
            goals.append(
                (
                    a,
                    ApplianceGoal(
                        host=a.host,
                        partition=spec.partition_name,
                        token=token,
                        present=False,
                        delete_partition=delete_partition,
                    ),
                )
            )
        return goals

    # -- running ---------------------------------------------------------------------------
    def _target(self, a: ApplianceSpec) -> SshTarget:
        creds = self.secrets.manager_credentials(a.manager_secret_arn)
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

    def _run_all(
        self,
        goals: Sequence[tuple[ApplianceSpec, ApplianceGoal]],
        deadline: Deadline,
        *,
        apply: bool,
        secrets: appl.GroupSecrets | None,
        certificates: Mapping[str, str],
        lock_path: str | None = None,
    ) -> list[ApplianceReport]:
        if not goals:
            return []
        workers = max(1, min(self.max_workers, len(goals)))
        guard = _AdminGuard(self, lock_path)
        # The threads start together once all exist: a thread already busy with its SSH handshake
        # would otherwise hold up the creation of the next ones (the GIL), and the last appliance
        # of a large group would start tens of milliseconds late.
        start = threading.Event()

        def run(a: ApplianceSpec, goal: ApplianceGoal) -> ApplianceReport:
            start.wait()
            return self._run_one(a, goal, deadline, apply, secrets, certificates, guard)

        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="appliance") as pool:
                try:
                    futures = [pool.submit(run, a, goal) for a, goal in goals]
                finally:
                    start.set()
                return [f.result() for f in futures]
        finally:
            guard.release()

    def _run_one(
        self,
        a: ApplianceSpec,
        goal: ApplianceGoal,
        deadline: Deadline,
        apply: bool,
        secrets: appl.GroupSecrets | None,
        certificates: Mapping[str, str],
        guard: _AdminGuard,
    ) -> ApplianceReport:
        report = ApplianceReport(host=a.host, leaving=not goal.present)
        started = time.monotonic()
        lock = threading.Lock()

        def count(record: CommandRecord) -> None:
            with lock:
                report.commands += 1
                report.mutating += int(record.mutating)

        step = "read manager secret"
        try:
            target = self._target(a)
            self.progress(a.host, "connecting")
            step = "connect"
            with self.shell_factory(target, deadline, count) as shell:
                report.connections += 1
                step = "observe"
                observed = appl.observe(shell, goal.token)
                step = "plan"
                report.planned = plan_appliance(goal, observed)
                serials = dict(observed.partitions)
                if apply and report.planned:
                    if secrets is None and any(s.action in _NEEDS_SECRETS for s in report.planned):
                        raise ApplianceError(
                            a.host, step, "the plan needs the admin secret, which was not read"
                        )
                    self.progress(a.host, f"{len(report.planned)} step(s) to run")
                    step = "apply"
                    report.done = appl.apply_steps(
                        shell,
                        report.planned,
                        secrets=secrets or appl.GroupSecrets("", "", ""),
                        certificates=certificates,
                        deadline=deadline,
                        on_step=lambda done: self.progress(a.host, f"done: {done}"),
                        before_step=lambda next_step, done: guard.check(a.host, shell, next_step, done),
                    )
                    if any(s.action is Action.PARTITION_CREATE for s in report.done):
                        step = "read partition serial"
                        serials = appl.read_partition_serials(shell)
                report.partition_serial = serials.get(goal.partition)
                if goal.present:
                    step = "download server.pem"
                    report.server_cert = appl.fetch_server_cert(shell)
            self.progress(a.host, "converged" if apply else f"{len(report.planned)} step(s) planned")
        except ApplianceError as exc:
            report.error = exc
        except LunaHAError as exc:  # not tied to an appliance by itself (a secret, a parse): say where
            report.error = ApplianceError(a.host, step, str(exc))
        except Exception as exc:  # a bug or an unexpected library error: still name the appliance
            report.error = ApplianceError(a.host, step, f"unexpected {type(exc).__name__}")
        if report.error is not None:
            self.progress(a.host, f"FAILED: {report.error}")
        report.seconds = time.monotonic() - started
        return report

    # -- results ---------------------------------------------------------------------------
    def _document(
        self,
        spec: GroupSpec,
        physical_id: str,
        reports: Sequence[ApplianceReport],
        generations: Sequence[Generation],
    ) -> GroupDocument:
        by_host = {r.host: r for r in reports}
        members = []
        for a in spec.appliances:
            serial = by_host[a.host].partition_serial or ""
            connection = {k: v for k, v in a.to_properties().items() if k not in ("Initialize", "HsmLabel")}
            members.append(Member.of(a, serial, spec.parameter_path, connection))
        first = members[0].serial if members else ""
        current = {
            c.name: str(registration_name(c.name, ownership_token(physical_id), c.rotation))
            for c in spec.clients
        }
        return GroupDocument(
            owner=physical_id,
            label=spec.group_label,
            partition=spec.partition_name,
            members=tuple(members),
            ha_group_serial=f"1{first}" if first else "",
            partition_secret_arn=spec.partition_secret_arn,
            kms_key_id=spec.kms_key_id,
            clients=current,
        )


def _param(path: str, suffix: str) -> str:
    return f"{path.rstrip('/')}/{suffix}"


def _credential_parameters(path: str, generations: Sequence[Generation]) -> dict[str, Parameter]:
    found: dict[str, Parameter] = {}
    for g in generations:
        base = _param(path, f"clients/{g.client}/{g.name}")
        found[f"{base}/key"] = Parameter(f"{base}/key", g.key_pem, secure=True)
        found[f"{base}/cert"] = Parameter(f"{base}/cert", g.cert_pem)
    return found


def _document_of(existing: Mapping[str, Parameter]) -> GroupDocument | None:
    for name, parameter in existing.items():
        if name.endswith("/group"):
            try:
                return GroupDocument.from_json(parameter.value)
            except (ValueError, KeyError, TypeError):
                return None
    return None


class _AdminGuard:
    """Right before ``hsm login`` or ``hsm init`` on an appliance: hold the group's HSM Admin lock
    in SSM, so that duplicated runs of one resource never log in at once, and read ``hsm show``
    again in that appliance's session, so the zeroization guard decides on the state of now, not
    of the observation.

    One lock serves a whole run: the first appliance that needs it takes it (two SSM calls per
    run, not per appliance) and the run lets it go when every appliance has finished.
    """

    STALE_SECONDS = 960.0  # longer than any Lambda run: a lock this old was left by a crash

    def __init__(self, engine: Engine, lock_path: str | None) -> None:
        self.engine = engine
        self.name = admin_lock_name(lock_path) if lock_path else None
        self.held = False
        self.refused = False
        self._mutex = threading.Lock()

    def check(self, host: str, shell: LunaShell, step: Step, done: Sequence[Step]) -> None:
        if step.action not in (Action.HSM_LOGIN, Action.HSM_INIT):
            return
        initialized_here = any(s.action is Action.HSM_INIT for s in done)
        self.acquire(host, str(step))
        hsm = appl.read_hsm(shell, f"{step}: check hsm show")
        if step.action is Action.HSM_INIT and not hsm.zeroized:
            raise ApplianceError(
                host,
                str(step),
                "the HSM is no longer zeroized (another run initialized it?); hsm init was not sent",
            )
        if step.action is Action.HSM_LOGIN and not initialized_here:
            check_login_allowed(host, _attempts_only(hsm.attempts_left))

    def acquire(self, host: str, step: str) -> None:
        with self._mutex:
            if self.held or self.name is None:
                return
            if self.refused or not self._take(self.name):
                self.refused = True
                raise ApplianceError(
                    host,
                    step,
                    "another run of this group is working as HSM Admin; "
                    "nothing was sent; re-run when it has finished",
                )
            self.held = True

    def _take(self, name: str) -> bool:
        store = self.engine.store
        moment = self.engine.now()
        now = moment.timestamp()
        value = json.dumps({"at": now})
        lock = Parameter(name, value, expires=moment + timedelta(seconds=2 * self.STALE_SECONDS))
        if store.create(lock):
            return True
        current = store.get(name)
        try:
            age = now - float(json.loads(current.value)["at"]) if current else self.STALE_SECONDS
        except (ValueError, KeyError, TypeError):
            age = self.STALE_SECONDS
        if age < self.STALE_SECONDS:
            return False
        store.apply(ParameterPlan(puts=(lock,)))
        return True

    def release(self) -> None:
        """Let the lock go. A failure to delete it does not fail the run whose work is done: the
        lock expires by itself, and a later run takes it over once it is stale."""
        with self._mutex:
            if self.held and self.name is not None:
                self.held = False
                try:
                    self.engine.store.apply(ParameterPlan(deletes=(self.name,)))
                except StoreError as exc:
                    log.warning("the HSM Admin lock stays until it expires: %s", exc)


def _attempts_only(attempts_left: int | None) -> ApplianceState:
    return ApplianceState(hsm_serial=None, hsm_label=None, zeroized=False, attempts_left=attempts_left)


def _rebased(parameters: Mapping[str, Parameter], old_path: str, new_path: str) -> dict[str, Parameter]:
    """The same parameters named under ``new_path`` instead of ``old_path``."""
    old_prefix, new_prefix = old_path.rstrip("/") + "/", new_path.rstrip("/") + "/"
    return {
        new_prefix + name[len(old_prefix) :]: Parameter(
            new_prefix + name[len(old_prefix) :], p.value, p.secure
        )
        for name, p in parameters.items()
        if name.startswith(old_prefix)
    }


def _token_parameters(existing: Mapping[str, Parameter], path: str, token: str) -> dict[str, Parameter]:
    prefix = _param(path, "clients/")
    mine = {}
    for name, parameter in existing.items():
        parts = name[len(prefix) :].split("/") if name.startswith(prefix) else []
        if len(parts) == 3 and parse_registration(parts[1], token) is not None:
            mine[name] = parameter
    return mine


def _member_appliances(document: GroupDocument | None) -> list[ApplianceSpec]:
    """The appliances a published group document says how to reach (to clean up removed ones)."""
    found = []
    for member in document.members if document is not None else ():
        try:
            found.append(parse_appliance(dict(member.connection), f"group document member {member.host}"))
        except SpecError:
            continue  # written by an older version, or edited by hand: nothing to reach it with
    return found


def _published_generations(
    existing: Mapping[str, Parameter], path: str, client: str, token: str
) -> list[str]:
    prefix = _param(path, f"clients/{client}/")
    found = {}
    for name in existing:
        if name.startswith(prefix) and name.endswith("/cert"):
            generation = name[len(prefix) : -len("/cert")]
            parsed = parse_registration(generation, token) if "/" not in generation else None
            if parsed is not None and parsed.client == client:
                found[generation] = parsed.generation
    return sorted(found, key=found.__getitem__)


def _previous_generation(
    existing: Mapping[str, Parameter], path: str, client: str, current: str, published: Sequence[str]
) -> str | None:
    pointer = existing.get(_param(path, f"clients/{client}/current"))
    if pointer is not None and pointer.value != current and pointer.value in published:
        return pointer.value

    def number(name: str) -> int:
        return int(name.rsplit("-r", 1)[1])

    older = [n for n in published if number(n) < number(current)]
    return older[-1] if older else None


def _data(spec: GroupSpec, document: GroupDocument, generations: Sequence[Generation]) -> dict[str, str]:
    current = document.clients
    return {
        "GroupLabel": spec.group_label,
        "PartitionName": spec.partition_name,
        "ParameterPath": spec.parameter_path,
        "PartitionSerials": ",".join(m.serial for m in document.members),
        "HAGroupSerial": document.ha_group_serial,
        "Members": ",".join(m.host for m in document.members),
        "ClientRegistrations": ",".join(f"{name}={gen}" for name, gen in sorted(current.items())),
    }
