"""CloudFormation semantics of ``Custom::LunaHAGroup`` on top of the engine (no crhelper here).

- The physical id is deterministic (stack, logical id, ``PartitionName``) and known before any
  work, so a failed Create answers with it and the rollback Delete cleans up what it started.
- Only a ``PartitionName`` change replaces the resource; everything else converges in place.
- Delete never fails for an id it never created, or for the rollback of a Create whose properties
  were invalid; a Delete for a replaced id removes only what that id owns.
- Reasons are short (CloudFormation shows 256 characters) and start with what matters.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from luna_ha.clock import Deadline
from luna_ha.engine import Engine, GroupRunError, RunReport
from luna_ha.errors import LunaHAError, SpecError, StoreError
from luna_ha.layout import check_path
from luna_ha.spec import DEFAULT_PARAMETER_ROOT, GroupSpec, default_parameter_path, parse_properties

log = logging.getLogger(__name__)

ID_PREFIX = "luna-ha"
MAX_REASON = 250
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")

EngineFactory = Callable[[], Engine]


@dataclass(frozen=True)
class ResourceResult:
    physical_id: str
    data: dict[str, str] = field(default_factory=dict)
    report: RunReport | None = None


def physical_id_for(event: Mapping[str, Any]) -> str:
    """``luna-ha/<stack name>/<logical id>/<PartitionName>/<stack uuid hash>``; stable across retries."""
    stack_id = str(event.get("StackId", ""))
    parts = stack_id.split("/")
    stack_name = _SAFE.sub("_", parts[1] if len(parts) > 1 else "stack")[:128]
    logical_id = _SAFE.sub("_", str(event.get("LogicalResourceId", "resource")))[:255]
    properties = event.get("ResourceProperties") or {}
    partition = properties.get("PartitionName") if isinstance(properties, Mapping) else None
    partition_part = _SAFE.sub("_", partition)[:64] if isinstance(partition, str) and partition else "unnamed"
    stack_hash = hashlib.sha256(stack_id.encode()).hexdigest()[:8]
    return f"{ID_PREFIX}/{stack_name}/{logical_id}/{partition_part}/{stack_hash}"


def short_reason(exc: BaseException) -> str:
    """A reason CloudFormation shows whole: the first failure first, the count of the others after."""
    if isinstance(exc, GroupRunError):
        failures = exc.report.failures
        first = str(failures[0].error) if failures else str(exc)
        more = f" (+{len(failures) - 1} more appliance(s) failed)" if len(failures) > 1 else ""
        text = first + more
        if len(text) > MAX_REASON:
            text = first[: MAX_REASON - len(more) - 3] + "..." + more
        return text
    text = (
        str(exc)
        if isinstance(exc, LunaHAError)
        else f"internal error ({type(exc).__name__}); see the function's log"
    )
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


class GroupResource:
    """Create / Update / Delete of one ``Custom::LunaHAGroup`` event."""

    def __init__(
        self,
        engine_factory: EngineFactory,
        *,
        margin_seconds: float = 30.0,
        parameter_prefix: str = DEFAULT_PARAMETER_ROOT,
    ) -> None:
        self.engine_factory = engine_factory
        self.margin_seconds = margin_seconds
        self.parameter_prefix = parameter_prefix.rstrip("/") or DEFAULT_PARAMETER_ROOT

    def _parse(self, properties: object) -> GroupSpec:
        """The properties, with a ParameterPath strictly below the provider's prefix (the prefix
        itself would make every group's parameters this one's)."""
        spec = parse_properties(properties if isinstance(properties, Mapping) else {})
        if not spec.parameter_path.startswith(self.parameter_prefix + "/"):
            raise SpecError(
                "ParameterPath",
                f"must be below the provider's prefix {self.parameter_prefix} "
                f"(e.g. {self.parameter_prefix}/{spec.partition_name}); got {spec.parameter_path}",
            )
        return spec

    def deadline(self, remaining_seconds: float) -> Deadline:
        """Answer well before the function's own timeout: keep a margin for the response itself."""
        margin = min(self.margin_seconds, max(2.0, remaining_seconds * 0.2))
        return Deadline.after(max(0.0, remaining_seconds - margin))

    def create(self, event: Mapping[str, Any], remaining_seconds: float) -> ResourceResult:
        physical_id = physical_id_for(event)
        spec = self._parse(event.get("ResourceProperties") or {})
        report = self.engine_factory().apply(spec, physical_id, deadline=self.deadline(remaining_seconds))
        return ResourceResult(physical_id, report.data, report)

    def update(self, event: Mapping[str, Any], remaining_seconds: float) -> ResourceResult:
        spec = self._parse(event.get("ResourceProperties") or {})
        previous = _lenient(event.get("OldResourceProperties"))
        physical_id = str(event.get("PhysicalResourceId") or physical_id_for(event))
        if previous is not None and previous.partition_name != spec.partition_name:
            # Replacement: a new partition and registrations under a new id. CloudFormation
            # deletes the old id afterwards, which removes what the old one owns.
            physical_id = physical_id_for(event)
            previous = None
        report = self.engine_factory().apply(
            spec, physical_id, previous=previous, deadline=self.deadline(remaining_seconds)
        )
        return ResourceResult(physical_id, report.data, report)

    def delete(self, event: Mapping[str, Any], remaining_seconds: float) -> ResourceResult:
        physical_id = str(event.get("PhysicalResourceId") or "")
        properties = event.get("ResourceProperties")
        spec = _lenient(properties)
        if not physical_id:
            log.info("Delete without a physical id: nothing of this resource exists")
            return ResourceResult(physical_id)
        # An id this function never answers with was made up by CloudFormation for a Create that
        # never answered (killed, timed out): what that Create did, it did under the id it would
        # have answered with, which the event's stack, logical id and properties give.
        target = physical_id if physical_id.startswith(f"{ID_PREFIX}/") else physical_id_for(event)
        if target != physical_id:
            log.info(
                "Delete of an id CloudFormation made up: removing what its Create did", extra={"id": target}
            )
        if spec is None:
            return self._delete_unparsed(properties, physical_id, remaining_seconds, target)
        report = self.engine_factory().destroy(spec, target, deadline=self.deadline(remaining_seconds))
        return ResourceResult(physical_id, {}, report)

    def _delete_unparsed(
        self, properties: object, physical_id: str, remaining_seconds: float, target: str
    ) -> ResourceResult:
        """Properties that do not parse: usually the rollback of a Create refused for them (nothing
        was done); but they may also be a template of an older version of this product, whose
        resource exists. Its group document, if any, says what to remove."""
        path = _path_of(properties)
        if path is None:
            log.info("Delete with invalid properties and no usable ParameterPath: nothing to find")
            return ResourceResult(physical_id)
        engine = self.engine_factory()
        try:
            report = engine.destroy_published(path, target, deadline=self.deadline(remaining_seconds))
        except StoreError as exc:  # e.g. a path outside what the function may read: never stick
            log.warning(
                "Delete with invalid properties: cannot read their ParameterPath", extra={"error": str(exc)}
            )
            return ResourceResult(physical_id)
        if report is None:
            log.info("Delete with invalid properties: no group document of this resource to remove")
            return ResourceResult(physical_id)
        log.info("Delete with invalid properties: removed what the group document records")
        return ResourceResult(physical_id, {}, report)


def _path_of(properties: object) -> str | None:
    """The parameter path raw properties point at (explicit, or the default of a valid
    PartitionName); None when they name none that is valid."""
    if not isinstance(properties, Mapping):
        return None
    partition = _partition_of(properties)
    candidate = properties.get("ParameterPath") or (default_parameter_path(partition) if partition else None)
    if not isinstance(candidate, str):
        return None
    try:
        return check_path(candidate)
    except ValueError:
        return None


def _partition_of(properties: object) -> str:
    value = properties.get("PartitionName") if isinstance(properties, Mapping) else None
    return value if isinstance(value, str) else ""


def _lenient(properties: object) -> GroupSpec | None:
    if not isinstance(properties, Mapping):
        return None
    try:
        return parse_properties(properties)
    except SpecError:
        return None
