"""What one resource's run records in the coordination table, and reads back from it.

The table itself is ``coordination.Coordinator`` (conditional writes, no policy). This module is the
policy of one resource (its physical id): its claim on the parameter path, the Delete marker an
apply of the same id watches, the records of the partition it created or adopted on each HSM, the
notes of certificate files it uploaded, and the HSM Admin guard each appliance thread logs in under.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta

from luna_ha import admin_guard
from luna_ha.admin_guard import AdminGuard
from luna_ha.clock import Deadline
from luna_ha.coordination import Coordinator, PartitionRecord, PartitionState, PathTaken
from luna_ha.errors import ApplianceError
from luna_ha.layout import Parameter, owned_by
from luna_ha.ownership import resource_identity
from luna_ha.planner import Action, ApplianceGoal, ApplianceState, PartitionClaim, Step, uploaded_file

# How long a deletion marker is read after the Delete that wrote it: past the oldest event Lambda
# still delivers (MaximumEventAgeInSeconds: 1 hour) plus a whole run (15 minutes at most).
DELETION_MARKER_LIFETIME = timedelta(hours=2)


class ResourceCoordination:
    """The coordination records of one resource, ``physical_id``."""

    def __init__(self, coordinator: Coordinator, physical_id: str, *, deletion_markers: bool) -> None:
        self.coordinator = coordinator
        self.physical_id = physical_id
        self.owner = resource_identity(physical_id)
        # CloudFormation may send Delete while a Create still runs (in another invocation). With
        # markers, Delete first records that it began; an apply of that id already running then
        # undoes its work instead of publishing.
        self.deletion_markers = deletion_markers

    # -- the parameter path ----------------------------------------------------------------------
    def claim_path(self, path: str) -> None:
        self.coordinator.claim_path(path, owner=self.owner, holder=self.physical_id)

    def release_path(self, path: str) -> None:
        self.coordinator.release_path(path, holder=self.physical_id)

    def check_path(self, path: str) -> None:
        """For reads (``plan``, ``status``): fail as ``apply`` would when the path is another
        resource's, without writing anything."""
        claim = self.coordinator.path_claim(path)
        if claim is not None and claim.owner != self.owner:
            raise PathTaken(
                f"Property ParameterPath: {path} belongs to another resource ({claim.holder}); "
                "choose a path of its own"
            )

    def never_held(self, path: str) -> bool:
        """A Create refused for its path never got past its claim: nothing of it is anywhere."""
        return self.coordinator.never_held(path, owner=self.owner)

    def owns_parameters(self, path: str, existing: Mapping[str, Parameter]) -> bool:
        """Whether the parameters under ``path`` are this resource's: its claim when the path is
        claimed, else (a group published before claims existed) the group document's owner."""
        claim = self.coordinator.path_claim(path)
        if claim is not None:
            return claim.holder == self.physical_id and owned_by(existing, self.physical_id)
        return owned_by(existing, self.physical_id)

    # -- a Delete racing an apply -----------------------------------------------------------------
    def now(self) -> float:
        return self.coordinator.now()

    def mark_deleting(self) -> None:
        if self.deletion_markers:
            self.coordinator.mark_deleting(
                self.physical_id, at=self.coordinator.now(), lifetime=DELETION_MARKER_LIFETIME.total_seconds()
            )

    def deleted_since(self, begun: float) -> bool:
        """A Delete of this resource began after ``begun`` (an older marker is a finished Delete: a
        retried Create of the same id may build the resource again)."""
        if not self.deletion_markers:
            return False
        at = self.coordinator.deleting_since(self.physical_id)
        return at is not None and at >= begun

    # -- the HSM Admin login ----------------------------------------------------------------------
    def admin_guard(self, group: str, deadline: Deadline) -> AdminGuard:
        return AdminGuard(
            self.coordinator,
            run_id=uuid.uuid4().hex[:12],
            group=group,
            deadline=deadline,
            wait_seconds=admin_guard.WAIT_SECONDS,
        )

    # -- partitions and uploads on one HSM -------------------------------------------------------
    def goal_with_records(
        self, goal: ApplianceGoal, observed: ApplianceState
    ) -> tuple[ApplianceGoal, PartitionRecord | None]:
        """The goal with what the records say of its partition and of files left on this HSM."""
        if observed.hsm_serial is None or observed.zeroized:
            return goal, None
        leftovers = self.coordinator.uploads(observed.hsm_serial)
        goal = replace(goal, leftover_files=leftovers) if leftovers else goal
        record = self.coordinator.partition_record(observed.hsm_serial, goal.partition)
        if record is None or not record.belongs_to(self.physical_id, observed.partitions.get(goal.partition)):
            return goal, None
        claim = PartitionClaim.ADOPTED if record.state == "adopted" else PartitionClaim.CREATED
        return replace(goal, claim=claim), record

    def before_step(self, host: str, step: Step, hsm_serial: str) -> None:
        """What is recorded before a step is sent: the file an upload leaves, and the ownership of a
        partition about to be created (a run that dies right after `partition create` still knows
        the partition is this resource's)."""
        if step.action is Action.UPLOAD_CERT and hsm_serial:
            self.coordinator.add_upload(hsm_serial, uploaded_file(step.target))
        if step.action is Action.PARTITION_CREATE:
            if not hsm_serial:
                raise ApplianceError(
                    host, str(step), "the HSM serial could not be read, so ownership cannot be recorded"
                )
            self.record_partition(host, hsm_serial, step.target, state="creating", serial=None)

    def after_step(self, step: Step, hsm_serial: str) -> None:
        if step.action is Action.FILE_DELETE and hsm_serial:
            self.coordinator.remove_upload(hsm_serial, step.target)

    def record_step(self, host: str, step: Step, hsm_serial: str, serials: Mapping[str, str]) -> None:
        """Carry out a planned record (``planner.RECORDS``)."""
        if step.action in (Action.ADOPT_PARTITION, Action.RETAIN_PARTITION):
            state: PartitionState = "adopted" if step.action is Action.ADOPT_PARTITION else "retained"
            self.record_partition(host, hsm_serial, step.target, state=state, serial=serials.get(step.target))
        elif step.action is Action.FORGET_PARTITION and hsm_serial:
            self.coordinator.forget_partition(hsm_serial, step.target, owner=self.physical_id)

    def record_partition(
        self, host: str, hsm_serial: str, partition: str, *, state: PartitionState, serial: str | None
    ) -> None:
        if not hsm_serial:
            raise ApplianceError(host, f"record partition {partition}", "the HSM serial is unknown")
        record = PartitionRecord(hsm_serial, partition, self.physical_id, state, serial)
        if not self.coordinator.record_partition(record):
            raise ApplianceError(
                host,
                f"record partition {partition}",
                "another resource has recorded this partition as its own (it created or adopted it; "
                "a partition serves one resource); nothing was changed",
            )
