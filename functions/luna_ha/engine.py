"""The convergence engine: one run over every appliance of a group, in parallel, under a deadline.

``Engine.apply`` observes each appliance, plans (pure, ``planner``), applies only the difference,
then publishes what ASG members need to Parameter Store. ``Engine.plan`` does the observing and
planning and nothing else. ``Engine.destroy`` removes what this group owns. The Lambda and the CLI
build an ``Engine`` with real adapters; tests build it against the simulator and moto.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from luna_ha import appliance as appl
from luna_ha.appliance_run import (
    ApplianceReport,
    ApplianceRunner,
    FamilyGate,
    Run,
    ShellFactory,
    Target,
    default_shell,
)
from luna_ha.certs import luna_fingerprint
from luna_ha.clock import Deadline
from luna_ha.coordination import Coordinator
from luna_ha.credentials import ClientCredentials
from luna_ha.drift import ApplianceView, Drift, Expected, compare
from luna_ha.errors import (
    CommandBuildError,
    LunaHAError,
    SecretError,
    SpecError,
)
from luna_ha.generations import Generation, credential_parameters, token_parameters
from luna_ha.layout import (
    GroupDocument,
    Member,
    Parameter,
    ParameterPlan,
    build_layout,
    find_document,
    kms_key_changed,
    plan_parameters,
    server_cert_name,
)
from luna_ha.lunash.commands import check_secret
from luna_ha.ownership import ownership_token, registration_name
from luna_ha.planner import (
    Action,
    ApplianceGoal,
)
from luna_ha.run_coordination import ResourceCoordination
from luna_ha.secrets import PARTITION_SO_KEY, SecretReader, check_destination
from luna_ha.spec import ApplianceSpec, GroupSpec, parse_appliance
from luna_ha.store import ParameterStore

Progress = Callable[[str, str], None]
log = logging.getLogger(__name__)
_T = TypeVar("_T")
_R = TypeVar("_R")
__all__ = ["ApplianceReport", "Engine", "GroupRunError", "Progress", "ResourceDeleted", "RunReport"]

_NOT_RECORDED = ""  # what a group document does not say (the admin secret's ARN)
NOT_GENERATED = "(certificate to be generated)"


@dataclass
class RunReport:
    operation: str
    appliances: list[ApplianceReport] = field(default_factory=list)
    parameters_put: tuple[str, ...] = ()
    parameters_deleted: tuple[str, ...] = ()
    # plan: the Parameter Store names apply would write and delete (names only, never values)
    parameters_to_put: tuple[str, ...] = ()
    parameters_to_delete: tuple[str, ...] = ()
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
class _Observation:
    """What a read-only run found: the report, the parameters, the generations, and what apply
    would publish (None when an appliance could not be read)."""

    report: RunReport
    existing: Mapping[str, Parameter]
    generations: Sequence[Generation]
    desired: Mapping[str, Parameter] | None


class Engine:
    """Plans, applies and destroys groups with the adapters it is given (built once, in
    ``compose``); nothing in it depends on one group."""

    def __init__(
        self,
        *,
        secrets: SecretReader,
        store: ParameterStore,
        coordinator: Coordinator,
        shell_factory: ShellFactory = default_shell,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        progress: Progress | None = None,
        max_workers: int = 16,
        deletion_markers: bool = False,
    ) -> None:
        self.secrets = secrets
        self.store = store
        self.coordinator = coordinator
        self.credentials = ClientCredentials(store, now)
        self.shell_factory = shell_factory
        self.now = now
        self.progress = progress or (lambda host, message: None)
        self.runner = ApplianceRunner(secrets, shell_factory, self.progress)
        self.max_workers = max_workers
        # CloudFormation may send Delete while a Create still runs (in another invocation). With
        # markers, Delete first records that it began (coordination table); an apply of that id
        # already running then undoes its work instead of publishing.
        self.deletion_markers = deletion_markers

    def _records(self, physical_id: str) -> ResourceCoordination:
        return ResourceCoordination(self.coordinator, physical_id, deletion_markers=self.deletion_markers)

    # -- public operations ---------------------------------------------------------------
    def plan(self, spec: GroupSpec, physical_id: str, *, deadline: Deadline | None = None) -> RunReport:
        """Observe and plan; writes nothing anywhere (no command that mutates, no SSM put, no record).

        Besides each appliance's steps, the report names the parameters apply would write and
        delete, when every appliance could be read (a client key not generated yet counts as one
        to write)."""
        return self._observe(spec, physical_id, deadline, "plan").report

    def status(
        self, spec: GroupSpec, physical_id: str, *, deadline: Deadline | None = None
    ) -> tuple[RunReport, tuple[Drift, ...]]:
        """What differs between the declaration, the appliances and the parameters (``drift``);
        reads only, as :meth:`plan` does."""
        seen = self._observe(spec, physical_id, deadline, "status")
        expected = Expected(
            path=spec.parameter_path,
            partition=spec.partition_name,
            token=ownership_token(physical_id),
            registrations={
                g.name: luna_fingerprint(g.cert_pem) if g.cert_pem else None for g in seen.generations
            },
        )
        views = [
            ApplianceView(a.host, member=not a.leaving, state=a.observed, server_cert=a.server_cert)
            for a in seen.report.appliances
        ]
        drift = compare(expected, views, seen.existing, seen.desired)
        return seen.report, drift

    def apply(
        self,
        spec: GroupSpec,
        physical_id: str,
        *,
        previous: GroupSpec | None = None,
        deadline: Deadline | None = None,
    ) -> RunReport:
        """Converge the appliances to ``spec`` and publish what members need, in named phases."""
        deadline = deadline or Deadline.never()
        started = time.monotonic()
        records = self._records(physical_id)
        group_secrets, destinations = self._claim_and_check(spec, records)
        begun = records.now()
        existing = self.store.read(spec.parameter_path)
        generations, new_credentials = self._prepare_credentials(spec, records, previous, existing)
        run = self._run_for(
            spec,
            records,
            deadline,
            secrets=group_secrets,
            certificates={g.name: g.cert_pem for g in generations},
            destinations=destinations,
        )
        fingerprints = {g.name: luna_fingerprint(g.cert_pem) for g in generations}
        targets = self._targets(spec, run.token, existing, previous=previous, fingerprints=fingerprints)
        report = RunReport("apply", self._run_all(targets, run))
        if not report.ok:
            report.parameters_put = new_credentials
            report.seconds = time.monotonic() - started
            raise GroupRunError(report)
        # Every generation is in Parameter Store now (found, written, or adopted from another run).
        existing = {**existing, **credential_parameters(spec.parameter_path, generations)}
        self._undo_if_deleted(spec, records, begun, deadline)
        document, puts, deleted = self._publish_group(
            spec, physical_id, report.appliances, generations, existing
        )
        deleted += self._leave_old_path(spec, previous, records)
        report.parameters_put = new_credentials + puts
        report.parameters_deleted = tuple(deleted)
        report.data = _data(spec, document)
        report.seconds = time.monotonic() - started
        return report

    def destroy(self, spec: GroupSpec, physical_id: str, *, deadline: Deadline | None = None) -> RunReport:
        """Remove this group's registrations (and partitions it created, under the Delete policy),
        its parameters, its records and its claim on the path."""
        deadline = deadline or Deadline.never()
        started = time.monotonic()
        records = self._records(physical_id)
        records.mark_deleting()
        if records.never_held(spec.parameter_path):
            # A Create refused for its path: it never got past its claim and has nothing anywhere.
            return RunReport("destroy", seconds=time.monotonic() - started)
        existing = self.store.read(spec.parameter_path)
        owns_parameters = records.owns_parameters(spec.parameter_path, existing)
        deletes_partitions = spec.partition_deletion_policy == "Delete"
        self._prefetch_secrets(spec, group=deletes_partitions)
        group_secrets, destinations = self._group_secrets(spec) if deletes_partitions else (None, {})
        run = self._run_for(spec, records, deadline, secrets=group_secrets, destinations=destinations)
        targets = self._targets(
            spec,
            run.token,
            existing if owns_parameters else {},
            previous=None,
            fingerprints={},
            destroying=True,
        )
        report = RunReport("destroy", self._run_all(targets, run))
        if not report.ok:
            report.seconds = time.monotonic() - started
            raise GroupRunError(report)
        # Everything under the path while this resource owns it; otherwise (a replacement took the
        # path over, or a Create failed before publishing its group document) only the client
        # generations that carry this resource's token.
        mine = existing if owns_parameters else token_parameters(existing, spec.parameter_path, run.token)
        plan = plan_parameters({}, mine, rewrite_secure=False, path=spec.parameter_path)
        self.store.apply(plan)
        records.release_path(spec.parameter_path)
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
        existing = self.store.read(path)
        document = find_document(existing, path)
        if document is None or not self._records(physical_id).owns_parameters(path, existing):
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

    # -- apply's phases ----------------------------------------------------------------------------
    def _claim_and_check(
        self, spec: GroupSpec, records: ResourceCoordination
    ) -> tuple[appl.GroupSecrets, Mapping[str, frozenset[str]]]:
        """Before any appliance or parameter is touched: the path is this resource's, and each
        secret names every appliance it will be sent to. Returns the group's secrets and where
        each may go."""
        records.claim_path(spec.parameter_path)
        self._prefetch_secrets(spec, group=True)
        group_secrets, destinations = self._group_secrets(spec)
        for a in spec.appliances:
            creds = self.secrets.manager_credentials(a.manager_secret_arn)
            check_destination(a.manager_secret_arn, creds.appliances, a.host, a.fingerprint, "check secrets")
            for arn, allowed in destinations.items():
                check_destination(arn, allowed, a.host, a.fingerprint, "check secrets")
        return group_secrets, destinations

    def _prepare_credentials(
        self,
        spec: GroupSpec,
        records: ResourceCoordination,
        previous: GroupSpec | None,
        existing: Mapping[str, Parameter],
    ) -> tuple[list[Generation], tuple[str, ...]]:
        """Every client generation this run registers, with new keys published before any appliance
        registers them. Moving the path keeps every client's certificate: taken from the old path."""
        known = dict(existing)
        if previous is not None and previous.parameter_path != spec.parameter_path:
            old = self.store.read(previous.parameter_path)
            if records.owns_parameters(previous.parameter_path, old):
                known = {**_rebased(old, previous.parameter_path, spec.parameter_path), **existing}
        token = ownership_token(records.physical_id)
        generations = self.credentials.generations(
            spec.clients, token, spec.parameter_path, known, create=True
        )
        written = self.credentials.publish(spec.parameter_path, generations, existing, spec.kms_key_id)
        return generations, tuple(p.name for p in written)

    def _undo_if_deleted(
        self, spec: GroupSpec, records: ResourceCoordination, begun: float, deadline: Deadline
    ) -> None:
        """A Delete of this resource that began while it ran wins: undo, and say so."""
        if records.deleted_since(begun):
            self.destroy(spec, records.physical_id, deadline=deadline)
            raise ResourceDeleted(
                f"a Delete of {records.physical_id} arrived while this operation ran; its changes were undone"
            )

    def _publish_group(
        self,
        spec: GroupSpec,
        physical_id: str,
        reports: Sequence[ApplianceReport],
        generations: Sequence[Generation],
        existing: Mapping[str, Parameter],
    ) -> tuple[GroupDocument, tuple[str, ...], list[str]]:
        """Write what members need (server certificates, clients, the group document); returns the
        document and the names written and deleted."""
        document = self._document(spec, physical_id, reports, generations)
        plan = self._parameter_plan(spec, document, reports, generations, existing)
        self.store.apply(plan)
        return document, tuple(p.name for p in plan.puts), list(plan.deletes)

    def _leave_old_path(
        self, spec: GroupSpec, previous: GroupSpec | None, records: ResourceCoordination
    ) -> list[str]:
        """After a move of ParameterPath: delete what this resource published at the old path and
        release its claim there."""
        if previous is None or previous.parameter_path == spec.parameter_path:
            return []
        old = self.store.read(previous.parameter_path)
        if not records.owns_parameters(previous.parameter_path, old):
            return []
        old_plan = plan_parameters({}, old, rewrite_secure=False, path=previous.parameter_path)
        self.store.apply(old_plan)
        records.release_path(previous.parameter_path)
        return list(old_plan.deletes)

    # -- reading (plan, status) ------------------------------------------------------------------
    def _observe(
        self, spec: GroupSpec, physical_id: str, deadline: Deadline | None, operation: str
    ) -> _Observation:
        deadline = deadline or Deadline.never()
        started = time.monotonic()
        token = ownership_token(physical_id)
        records = self._records(physical_id)
        records.check_path(spec.parameter_path)
        self._prefetch_secrets(spec, group=False)
        existing = self.store.read(spec.parameter_path)
        generations = self.credentials.generations(
            spec.clients, token, spec.parameter_path, existing, create=False
        )
        # A generation not generated yet has no fingerprint: any registration of that name differs.
        fingerprints = {
            g.name: luna_fingerprint(g.cert_pem) if g.cert_pem else NOT_GENERATED for g in generations
        }
        targets = self._targets(spec, token, existing, previous=None, fingerprints=fingerprints)
        run = Run(
            physical_id,
            token,
            deadline,
            apply=False,
            secrets=None,
            certificates={},
            guard=None,
            records=records,
        )
        reports = self._run_all(targets, run)
        report = RunReport(operation, reports)
        desired = None
        if report.ok:
            document = self._document(spec, physical_id, reports, generations)
            desired = _desired(spec, document, reports, generations)
            plan = self._parameter_plan(spec, document, reports, generations, existing)
            puts = [p.name for p in plan.puts]
            # A server certificate that an initialization regenerates is written again.
            for r in reports:
                if not r.leaving and any(s.action is Action.REGEN_CERT for s in r.planned):
                    name = server_cert_name(spec.parameter_path, r.host)
                    if name not in puts:
                        puts.append(name)
            report.parameters_to_put = tuple(puts)
            report.parameters_to_delete = plan.deletes
        report.seconds = time.monotonic() - started
        return _Observation(report, existing, generations, desired)

    def _parameter_plan(
        self,
        spec: GroupSpec,
        document: GroupDocument,
        reports: Sequence[ApplianceReport],
        generations: Sequence[Generation],
        existing: Mapping[str, Parameter],
    ) -> ParameterPlan:
        desired = _desired(spec, document, reports, generations)
        rewrite = kms_key_changed(existing, document, spec.parameter_path)
        return plan_parameters(
            desired, existing, rewrite_secure=rewrite, path=spec.parameter_path, kms_key_id=spec.kms_key_id
        )

    # -- preparation -----------------------------------------------------------------------
    def _run_for(
        self,
        spec: GroupSpec,
        records: ResourceCoordination,
        deadline: Deadline,
        *,
        secrets: appl.GroupSecrets | None,
        destinations: Mapping[str, frozenset[str]],
        certificates: Mapping[str, str] | None = None,
    ) -> Run:
        """What the appliance threads of an apply or a destroy share."""
        return Run(
            records.physical_id,
            ownership_token(records.physical_id),
            deadline,
            apply=True,
            secrets=secrets,
            certificates=certificates or {},
            guard=records.admin_guard(spec.parameter_path, deadline),
            records=records,
            destinations=destinations,
        )

    def _prefetch_secrets(self, spec: GroupSpec, *, group: bool) -> None:
        """Every appliance's manager secret (and the admin and partition secrets when ``group``)
        in one call, before the appliance threads ask for them."""
        arns = [spec.admin_secret_arn, spec.partition_secret_arn] if group else []
        self.secrets.prefetch(arns + [a.manager_secret_arn for a in spec.appliances])

    def _group_secrets(self, spec: GroupSpec) -> tuple[appl.GroupSecrets, dict[str, frozenset[str]]]:
        """The admin and partition secrets, checked before any appliance is touched, and the
        appliances each may be sent to."""
        admin = self.secrets.admin_secret(spec.admin_secret_arn)
        partition = self.secrets.partition_secret(spec.partition_secret_arn)
        sent = [
            (spec.admin_secret_arn, "password", admin.password),
            (spec.admin_secret_arn, "domain", admin.domain),
            (spec.partition_secret_arn, "password", partition.password),
        ]
        if admin.partition_so_password is not None:  # Luna 7 only
            sent.append((spec.admin_secret_arn, PARTITION_SO_KEY, admin.partition_so_password))
        for arn, key, value in sent:
            try:
                check_secret(key, value)
            except CommandBuildError as exc:
                raise SecretError(f"Secret {arn}: key {exc}") from None
        destinations = {
            spec.admin_secret_arn: admin.appliances,
            spec.partition_secret_arn: partition.appliances,
        }
        return appl.GroupSecrets(
            admin.password, admin.domain, partition.password, admin.partition_so_password or ""
        ), destinations

    def _targets(
        self,
        spec: GroupSpec,
        token: str,
        existing: Mapping[str, Parameter],
        *,
        previous: GroupSpec | None,
        fingerprints: Mapping[str, str],
        destroying: bool = False,
    ) -> list[Target]:
        targets: list[Target] = []
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
                adopt=spec.existing_partition == "Adopt",
            )
            targets.append(Target(a, goal, skip_unnamed=destroying))
        leaving = [(a, destroying) for a in (previous.appliances if previous is not None else ())]
        leaving += [(a, True) for a in _member_appliances(find_document(existing, spec.parameter_path))]
        for a, skip_unnamed in leaving:
            if a.host_identity in seen:
                continue
            seen.add(a.host_identity)
            goal = ApplianceGoal(
                host=a.host,
                partition=spec.partition_name,
                token=token,
                present=False,
                delete_partition=delete_partition,
            )
            targets.append(Target(a, goal, skip_unnamed=skip_unnamed))
        return targets

    # -- running ---------------------------------------------------------------------------
    def _run_all(self, targets: Sequence[Target], run: Run) -> list[ApplianceReport]:
        """Each appliance in its own thread: observed, checked against the other members, converged."""
        if not targets:
            return []
        gate = FamilyGate()
        # The first ``workers`` appliances start at once: each waits for the others' observations.
        for target in targets[: self._workers(len(targets))]:
            if target.goal.present:
                gate.started(target.appliance.host)

        def one(target: Target) -> ApplianceReport:
            member = target.goal.present
            if member:
                gate.started(target.appliance.host)
            session = self.runner.open(target, run)
            try:
                if member:
                    software = session.observed.software if session.ready and session.observed else None
                    gate.observed(target.appliance.host, software)
                    if session.ready:
                        gate.check(session, run.deadline)
                return self.runner.converge(session, run)
            finally:
                if member:
                    gate.observed(target.appliance.host, None)
                session.close()
                if run.guard is not None:
                    run.guard.release(target.appliance.host)

        return self._fan_out(one, targets)

    def _workers(self, items: int) -> int:
        return max(1, min(self.max_workers, items))

    def _fan_out(self, work: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        workers = self._workers(len(items))
        # The threads start together once all exist: a thread already busy with its SSH handshake
        # would otherwise hold up the creation of the next ones (the GIL), and the last appliance
        # of a large group would start tens of milliseconds late.
        start = threading.Event()

        def one(item: _T) -> _R:
            start.wait()
            return work(item)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="appliance") as pool:
            try:
                futures = [pool.submit(one, item) for item in items]
            finally:
                start.set()
            return [f.result() for f in futures]

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


def _desired(
    spec: GroupSpec,
    document: GroupDocument,
    reports: Sequence[ApplianceReport],
    generations: Sequence[Generation],
) -> dict[str, Parameter]:
    """Every parameter apply publishes after this run's reports."""
    server_certs = {r.host: r.server_cert or "" for r in reports if not r.leaving}
    by_client: dict[str, dict[str, tuple[str, str]]] = {}
    for g in generations:
        by_client.setdefault(g.client, {})[g.name] = (g.cert_pem, g.key_pem)
    return build_layout(spec.parameter_path, document, server_certs, by_client)


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


def _member_appliances(document: GroupDocument | None) -> list[ApplianceSpec]:
    """The appliances a published group document says how to reach (to clean up removed ones)."""
    found = []
    for member in document.members if document is not None else ():
        try:
            found.append(parse_appliance(dict(member.connection), f"group document member {member.host}"))
        except SpecError:
            continue  # written by an older version, or edited by hand: nothing to reach it with
    return found


def _data(spec: GroupSpec, document: GroupDocument) -> dict[str, str]:
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
