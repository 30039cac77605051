"""A local CloudFormation for custom resources: real-shaped events in, crhelper's answer back over HTTPS.

Three layers, each usable alone:

* :class:`ResponseReceiver` (in :mod:`luna_ha_lab.cfn_receiver`, re-exported here): the HTTPS
  endpoint on 127.0.0.1 with a throwaway CA, trusted through ``SSL_CERT_FILE`` for its lifetime,
  that takes the ``PUT`` of the response document. crhelper's sender is not patched.
* :class:`LocalCloudFormation`: builds events shaped like CloudFormation's (every scalar property
  stringified, ``ServiceToken`` included, a unique pre-signed-looking ``ResponseURL`` per event),
  invokes a Lambda handler with a fake context whose remaining time counts down from the function
  timeout, and waits, bounded, for the answer (:class:`Response`) or raises :class:`NoResponse`.
* :class:`LocalStack`: CloudFormation's choreography for custom resources of one stack: a failed
  Create is followed by a Delete of the id the FAILED answer carried; a failed Update by a rollback
  Update with old and new properties swapped; a new physical id on Update by the Delete of the old
  one (cleanup); and :meth:`LocalStack.duplicate_last` re-delivers an event as is.

The handler runs in a worker thread, as in an execution environment of its own, so that a handler
that hangs can be given up on. Lambda never runs two invocations in one environment: with
``environment_factory`` a concurrent invocation (a Delete while a Create still runs) gets a fresh
handler, as Lambda would start a new environment; without it the one handler is shared, which a
module-level crhelper ``CfnResource`` does not survive (its per-event state is an attribute).

The ResponseURL's query string stands for a pre-signed URL: nothing here logs it or puts it in a
message or a ``repr`` (:meth:`Exchange.redacted_event` gives an event fit for printing).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

from luna_ha_lab.cfn_receiver import (
    FAILED,
    SUCCESS,
    NoResponse,
    ReceivedResponse,
    ResponseReceiver,
    display_url,
)

__all__ = [
    "FAILED",
    "SUCCESS",
    "Exchange",
    "FakeLambdaContext",
    "Handler",
    "LocalCloudFormation",
    "LocalStack",
    "NoResponse",
    "Operation",
    "Response",
    "ResponseReceiver",
    "StackResource",
    "cfn_stringify",
]

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], object]
"""A Lambda handler: ``handler(event, context)``; its return value is ignored (asynchronous invoke)."""

ACCOUNT_ID: Final = "123456789012"
MAX_LAMBDA_TIMEOUT: Final = 900.0
_STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")
_LOGICAL_ID = re.compile(r"[A-Za-z0-9]{1,255}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
_POLL: Final = 0.05


# --------------------------------------------------------------------------------------------------
# Events and the Lambda context


def cfn_stringify(value: object) -> Any:
    """What CloudFormation makes of a template value in ``ResourceProperties``.

    Every scalar becomes a string (``22`` → ``"22"``, ``True`` → ``"true"``, ``1.5`` → ``"1.5"``),
    recursively through lists and maps; ``None`` (``AWS::NoValue``) drops the key or item.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a value a template can hold")
        return str(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"property names are strings, not {type(key).__name__}: {key!r}")
            if item is not None:
                out[key] = cfn_stringify(item)
        return out
    if isinstance(value, list | tuple):
        return [cfn_stringify(item) for item in value if item is not None]
    raise TypeError(f"a template cannot hold a {type(value).__name__}")


@dataclass
class FakeLambdaContext:
    """The attributes of the Lambda Python runtime's context object, for one invocation.

    ``memory_limit_in_mb`` is a string, as the real runtime reads it from the environment.
    """

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: str
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float = field(repr=False)
    """``time.monotonic()`` at which the invocation times out."""
    client_context: None = None
    identity: None = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class Response:
    """CloudFormation's view of the answer to one event.

    ``status`` and the rest are as the handler sent them; ``problems`` lists what CloudFormation
    would refuse all the same (a body over 4096 bytes, an empty PhysicalResourceId, ids that are not
    the event's), in which case the event counts as failed (:attr:`succeeded`).
    """

    status: str
    reason: str
    physical_resource_id: str
    data: Mapping[str, Any] = field(repr=False)
    body_size: int
    seconds: float
    """From the invocation to the arrival of the answer."""
    request_type: str = ""
    request_id: str = ""
    logical_resource_id: str = ""
    no_echo: bool = False
    problems: tuple[str, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCESS and not self.problems

    def shown_data(self) -> dict[str, Any]:
        """``data`` as a stack would show it: masked under ``NoEcho``."""
        return {k: "****" for k in self.data} if self.no_echo else dict(self.data)

    def describe(self) -> str:
        text = f"{self.status} id={self.physical_resource_id or '-'}"
        if self.reason:
            text += f" reason={self.reason!r}"
        text += f" ({self.body_size} B, {self.seconds:.2f} s)"
        if self.problems:
            text += " refused by CloudFormation: " + "; ".join(self.problems)
        return text

    @classmethod
    def from_received(cls, received: ReceivedResponse, *, request_type: str, started: float) -> Response:
        return cls(
            status=received.status,
            reason=received.reason,
            physical_resource_id=received.physical_resource_id,
            data=dict(received.data),
            body_size=received.body_size,
            seconds=max(0.0, received.received_at - started),
            request_type=request_type,
            request_id=received.request_id,
            logical_resource_id=received.logical_resource_id,
            no_echo=received.no_echo,
            problems=received.problems,
        )


@dataclass
class _Environment:
    handler: Handler
    log_stream_name: str
    busy: int = 0


# --------------------------------------------------------------------------------------------------
# The driver


class LocalCloudFormation:
    """Sends CloudFormation events for one stack to a Lambda handler and collects the answers.

    A context manager: it starts (and afterwards stops) its own :class:`ResponseReceiver` unless one
    is given, in which case that one must already be running and stays the caller's to close.
    ``timeout_seconds`` is the function's timeout (the fake context counts down from it; it may be a
    fraction for tests); after it, or ``grace_seconds`` after the handler returned, an event without
    an answer raises :class:`NoResponse`.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        stack_name: str = "luna-ha-demo",
        region: str = "us-east-1",
        resource_type: str = "Custom::LunaHAGroup",
        timeout_seconds: float = 900,
        function_name: str = "luna-ha-provider",
        memory_mb: int = 1769,
        grace_seconds: float = 2.0,
        receiver: ResponseReceiver | None = None,
        environment_factory: Callable[[], Handler] | None = None,
    ) -> None:
        if not _STACK_NAME.fullmatch(stack_name):
            raise ValueError(f"invalid stack name {stack_name!r}")
        if not _REGION.fullmatch(region):
            raise ValueError(f"invalid region {region!r}")
        if (
            not resource_type.startswith("Custom::")
            and resource_type != "AWS::CloudFormation::CustomResource"
        ):
            raise ValueError(f"{resource_type!r} is not a custom resource type")
        if not 0 < timeout_seconds <= MAX_LAMBDA_TIMEOUT:
            raise ValueError(f"timeout_seconds must be in (0, {MAX_LAMBDA_TIMEOUT:g}]")
        if grace_seconds < 0:
            raise ValueError("grace_seconds must not be negative")
        self.stack_name = stack_name
        self.region = region
        self.resource_type = resource_type
        self.timeout_seconds = float(timeout_seconds)
        self.grace_seconds = float(grace_seconds)
        self.function_name = function_name
        self.memory_mb = memory_mb
        self.stack_id = f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack_name}/{uuid.uuid4()}"
        self.function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"
        self._handler = handler
        self._factory = environment_factory
        self._receiver = receiver
        self._owns_receiver = receiver is None
        self._lock = threading.Lock()
        self._environments: list[_Environment] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> LocalCloudFormation:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> LocalCloudFormation:
        if self._receiver is None:
            self._receiver = ResponseReceiver().start()
        return self

    def close(self) -> None:
        if self._owns_receiver and self._receiver is not None:
            self._receiver.close()
            self._receiver = None

    @property
    def receiver(self) -> ResponseReceiver:
        if self._receiver is None or not self._receiver.running:
            raise RuntimeError("the response receiver is not running: use LocalCloudFormation as a context")
        return self._receiver

    @property
    def service_token(self) -> str:
        return self.function_arn

    @property
    def environments(self) -> int:
        """How many execution environments (handlers) invocations have used so far."""
        with self._lock:
            return len(self._environments)

    # -- events ------------------------------------------------------------------------------------

    def resource_properties(self, properties: Mapping[str, Any]) -> dict[str, Any]:
        """``properties`` as CloudFormation delivers them: stringified, with ``ServiceToken``."""
        stringified: dict[str, Any] = cfn_stringify(properties)
        return {"ServiceToken": self.service_token, **stringified}

    def create_event(self, logical_id: str, properties: Mapping[str, Any]) -> dict[str, Any]:
        return self._event("Create", logical_id, properties)

    def update_event(
        self,
        logical_id: str,
        physical_resource_id: str,
        properties: Mapping[str, Any],
        old_properties: Mapping[str, Any],
    ) -> dict[str, Any]:
        return self._event(
            "Update",
            logical_id,
            properties,
            physical_resource_id=physical_resource_id,
            old_properties=old_properties,
        )

    def delete_event(
        self, logical_id: str, physical_resource_id: str, properties: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._event("Delete", logical_id, properties, physical_resource_id=physical_resource_id)

    def _event(
        self,
        request_type: str,
        logical_id: str,
        properties: Mapping[str, Any],
        *,
        physical_resource_id: str | None = None,
        old_properties: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        if not _LOGICAL_ID.fullmatch(logical_id):
            raise ValueError(f"invalid logical id {logical_id!r} (alphanumeric, at most 255)")
        resource_properties = self.resource_properties(properties)
        request_id = str(uuid.uuid4())
        event: dict[str, Any] = {
            "RequestType": request_type,
            "ServiceToken": resource_properties["ServiceToken"],
            "ResponseURL": self.receiver.new_response_url(
                request_id=request_id,
                stack_id=self.stack_id,
                logical_resource_id=logical_id,
                region=self.region,
            ),
            "StackId": self.stack_id,
            "RequestId": request_id,
            "LogicalResourceId": logical_id,
        }
        if physical_resource_id is not None:
            event["PhysicalResourceId"] = physical_resource_id
        event["ResourceType"] = self.resource_type
        event["ResourceProperties"] = resource_properties
        if old_properties is not None:
            event["OldResourceProperties"] = self.resource_properties(old_properties)
        return event

    # -- invocation --------------------------------------------------------------------------------

    def invoke(self, event: Mapping[str, Any]) -> Response:
        """Invoke the handler with ``event`` and wait (bounded) for its answer.

        Raises :class:`NoResponse` when none arrives within the function timeout plus the grace, or
        within the grace after the handler returned (or raised) without answering.
        """
        return self.invoke_async(event).result()

    def invoke_async(self, event: Mapping[str, Any]) -> Future[Response]:
        """Start an invocation; the future gives its :class:`Response` or raises :class:`NoResponse`."""
        receiver = self.receiver
        url_id = receiver.url_id(str(event["ResponseURL"]))
        request_type = str(event["RequestType"])
        request_id = str(event["RequestId"])
        logical_id = str(event["LogicalResourceId"])
        payload: dict[str, Any] = json.loads(json.dumps(event))  # what Lambda delivers: a fresh document
        nth = len(receiver.responses_to_url(url_id)) + 1  # a re-delivered event waits for a new answer
        env = self._acquire()
        started = time.monotonic()
        context = FakeLambdaContext(
            function_name=self.function_name,
            function_version="$LATEST",
            invoked_function_arn=self.function_arn,
            memory_limit_in_mb=str(self.memory_mb),
            aws_request_id=str(uuid.uuid4()),
            log_group_name=f"/aws/lambda/{self.function_name}",
            log_stream_name=env.log_stream_name,
            deadline=started + self.timeout_seconds,
        )
        returned = threading.Event()
        raised: list[Exception] = []

        def run_handler() -> None:
            try:
                env.handler(payload, context)
            except Exception as exc:  # what the Lambda runtime would report as the invocation's error
                raised.append(exc)
                logger.debug("handler raised %s on %s %s", type(exc).__name__, request_type, logical_id)
            finally:
                self._release(env)
                returned.set()

        future: Future[Response] = Future()
        future.set_running_or_notify_cancel()

        def watch() -> None:
            try:
                received = self._await(receiver, url_id, nth, started, returned)
                if received is None:
                    error = self._no_response(receiver, event, url_id, started, returned.is_set(), raised)
                    future.set_exception(error)
                    return
                # The invocation ends when the handler returns; the next one must not overlap it.
                returned.wait(self.grace_seconds)
                future.set_result(
                    Response.from_received(received, request_type=request_type, started=started)
                )
            except BaseException as exc:  # pragma: no cover - a bug in the driver, not the handler
                future.set_exception(exc)

        tag = f"{request_type}-{logical_id}-{request_id[:8]}"
        threading.Thread(target=run_handler, name=f"lambda-{tag}", daemon=True).start()
        threading.Thread(target=watch, name=f"cfn-wait-{tag}", daemon=True).start()
        return future

    def _no_response(
        self,
        receiver: ResponseReceiver,
        event: Mapping[str, Any],
        url_id: str,
        started: float,
        returned: bool,
        raised: list[Exception],
    ) -> NoResponse:
        state = "raised" if raised else "returned" if returned else "running"
        if state == "running":
            what = f"the handler is still running (function timeout {self.timeout_seconds:g} s)"
        elif raised:
            what = f"the handler raised {type(raised[0]).__name__} without answering"
        else:
            what = "the handler returned without answering"
        error = NoResponse(
            f"no response to {event['RequestType']} {event['LogicalResourceId']}"
            f" (RequestId {event['RequestId']}) after {time.monotonic() - started:.1f} s: {what}"
            + receiver.diagnostics(url_id=url_id),
            request_id=str(event["RequestId"]),
            handler_state=state,
        )
        if raised:
            error.__cause__ = raised[0]
        return error

    def _await(
        self, receiver: ResponseReceiver, url_id: str, nth: int, started: float, returned: threading.Event
    ) -> ReceivedResponse | None:
        limit = started + self.timeout_seconds + self.grace_seconds
        returned_at: float | None = None
        while True:
            now = time.monotonic()
            if returned_at is None and returned.is_set():
                returned_at = now
            until = limit if returned_at is None else min(limit, returned_at + self.grace_seconds)
            remaining = until - now
            found = receiver.wait_url(url_id, nth=nth, timeout=max(0.0, min(remaining, _POLL)))
            if found is not None:
                return found
            if remaining <= 0 or not receiver.running:
                return None

    def _acquire(self) -> _Environment:
        with self._lock:
            for env in self._environments:
                if env.busy == 0:
                    env.busy = 1
                    return env
            if not self._environments or self._factory is not None:
                handler = self._handler if not self._environments else self._new_handler()
                env = _Environment(handler, _log_stream_name(), busy=1)
                self._environments.append(env)
                return env
            env = self._environments[0]
            env.busy += 1
            logger.debug("concurrent invocation shares the only handler (no environment_factory)")
            return env

    def _new_handler(self) -> Handler:
        assert self._factory is not None
        return self._factory()

    def _release(self, env: _Environment) -> None:
        with self._lock:
            env.busy -= 1


def _log_stream_name() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"


# --------------------------------------------------------------------------------------------------
# The stack


@dataclass(frozen=True)
class Exchange:
    """One event CloudFormation sent and what came of it."""

    phase: str
    """``create``, ``rollback-delete``, ``update``, ``cleanup-delete``, ``rollback-update``,
    ``rollback-cleanup-delete``, ``delete`` or ``duplicate``."""
    request_type: str
    logical_resource_id: str
    request_id: str
    physical_resource_id: str | None
    """The id the event carried (``None`` on Create)."""
    response: Response | None
    error: NoResponse | None = field(default=None, compare=False)
    event: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def succeeded(self) -> bool:
        return self.response is not None and self.response.succeeded

    def redacted_event(self) -> dict[str, Any]:
        """The event with the ResponseURL's (pre-signed) query string cut off, fit for printing."""
        shown = dict(self.event)
        if "ResponseURL" in shown:
            shown["ResponseURL"] = display_url(str(shown["ResponseURL"]))
        return shown

    def describe(self) -> str:
        head = f"{self.phase:<23} {self.request_type:<6} {self.logical_resource_id}"
        if self.physical_resource_id is not None:
            head += f" [{self.physical_resource_id}]"
        if self.response is not None:
            return f"{head} -> {self.response.describe()}"
        return f"{head} -> NO RESPONSE: {self.error}"


@dataclass(frozen=True)
class Operation:
    """A stack operation on one resource: every event sent, in order, and the stack's outcome."""

    action: str
    """``create``, ``update``, ``delete`` or ``duplicate``."""
    logical_resource_id: str
    outcome: str
    """As CloudFormation would report it: ``CREATE_COMPLETE``, ``ROLLBACK_COMPLETE``,
    ``ROLLBACK_FAILED``, ``UPDATE_COMPLETE``, ``UPDATE_ROLLBACK_COMPLETE``,
    ``UPDATE_ROLLBACK_FAILED``, ``DELETE_COMPLETE``, ``DELETE_FAILED``; a duplicate delivery
    (which CloudFormation ignores) is ``DUPLICATE_ANSWERED`` or ``DUPLICATE_NOT_ANSWERED``."""
    exchanges: tuple[Exchange, ...]
    notes: tuple[str, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.outcome in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE", "DUPLICATE_ANSWERED")

    @property
    def responses(self) -> tuple[Response | None, ...]:
        return tuple(e.response for e in self.exchanges)

    def describe(self) -> str:
        lines = [f"{self.action} {self.logical_resource_id}: {self.outcome}"]
        lines += [f"  {e.describe()}" for e in self.exchanges]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class StackResource:
    """What the stack records for a resource: its physical id and the properties it was given."""

    logical_resource_id: str
    physical_resource_id: str
    properties: Mapping[str, Any]
    """As CloudFormation delivered them (stringified, with ``ServiceToken``)."""
    status: str


class LocalStack:
    """CloudFormation's choreography for the custom resources of one stack, one operation at a time."""

    def __init__(self, cloudformation: LocalCloudFormation) -> None:
        self.cloudformation = cloudformation
        self._resources: dict[str, StackResource] = {}
        self._last_event: dict[str, Any] | None = None
        self.operations: list[Operation] = []

    def resource(self, logical_id: str) -> StackResource | None:
        return self._resources.get(logical_id)

    @property
    def resources(self) -> dict[str, StackResource]:
        return dict(self._resources)

    # -- operations --------------------------------------------------------------------------------

    def create(self, logical_id: str, properties: Mapping[str, Any]) -> Operation:
        """Create; when that fails, roll back with a Delete of the id the FAILED answer carried."""
        if logical_id in self._resources:
            raise ValueError(f"{logical_id} already exists in the stack")
        cfn = self.cloudformation
        event = cfn.create_event(logical_id, properties)
        created = self._send("create", event)
        props = event["ResourceProperties"]
        if created.response is not None and created.succeeded:
            pid = created.response.physical_resource_id
            self._resources[logical_id] = StackResource(logical_id, pid, props, "CREATE_COMPLETE")
            return self._done("create", logical_id, "CREATE_COMPLETE", [created])
        notes = []
        if created.response is not None and created.response.physical_resource_id:
            pid = created.response.physical_resource_id
        else:
            pid = self._generated_physical_id(logical_id)
            notes.append(f"no usable PhysicalResourceId came back: the rollback Delete carries {pid}")
        rollback = self._send("rollback-delete", cfn.delete_event(logical_id, pid, props))
        if rollback.succeeded:
            return self._done("create", logical_id, "ROLLBACK_COMPLETE", [created, rollback], notes)
        self._resources[logical_id] = StackResource(logical_id, pid, props, "DELETE_FAILED")
        return self._done("create", logical_id, "ROLLBACK_FAILED", [created, rollback], notes)

    def update(self, logical_id: str, properties: Mapping[str, Any], *, force: bool = False) -> Operation:
        """Update; a new physical id is followed by the Delete of the old one, a failure by a rollback.

        CloudFormation sends no event for a resource whose properties did not change; ``force``
        sends the Update anyway.
        """
        current = self._require(logical_id)
        cfn = self.cloudformation
        new_props = cfn.resource_properties(properties)
        if new_props == current.properties and not force:
            return self._done(
                "update",
                logical_id,
                "UPDATE_COMPLETE",
                [],
                ["no property changed: CloudFormation sends no event"],
            )
        event = cfn.update_event(logical_id, current.physical_resource_id, properties, current.properties)
        updated = self._send("update", event)
        if updated.response is not None and updated.succeeded:
            pid = updated.response.physical_resource_id
            self._resources[logical_id] = StackResource(logical_id, pid, new_props, "UPDATE_COMPLETE")
            exchanges, notes = [updated], []
            if pid != current.physical_resource_id:
                cleanup = self._send(
                    "cleanup-delete",
                    cfn.delete_event(logical_id, current.physical_resource_id, current.properties),
                )
                exchanges.append(cleanup)
                if not cleanup.succeeded:
                    notes.append(
                        f"the cleanup Delete of {current.physical_resource_id} failed: CloudFormation"
                        " reports it and leaves the stack UPDATE_COMPLETE"
                    )
            return self._done("update", logical_id, "UPDATE_COMPLETE", exchanges, notes)

        # Rollback: old and new swapped, sent to the id the stack had. A FAILED answer that carried
        # another id (a replacement that failed half-way) gets that id deleted once the rollback is
        # done, as CloudFormation's cleanup does after UPDATE_ROLLBACK_COMPLETE.
        failed_pid = updated.response.physical_resource_id if updated.response is not None else ""
        rollback = self._send(
            "rollback-update",
            cfn.update_event(logical_id, current.physical_resource_id, current.properties, new_props),
        )
        exchanges, notes = [updated, rollback], []
        if not (rollback.response is not None and rollback.succeeded):
            self._resources[logical_id] = StackResource(
                logical_id, current.physical_resource_id, current.properties, "UPDATE_FAILED"
            )
            return self._done("update", logical_id, "UPDATE_ROLLBACK_FAILED", exchanges, notes)
        rollback_pid = rollback.response.physical_resource_id
        if rollback_pid != current.physical_resource_id:
            notes.append(
                f"the rollback Update answered with {rollback_pid}, not {current.physical_resource_id}"
            )
        self._resources[logical_id] = StackResource(
            logical_id, rollback_pid, current.properties, "UPDATE_COMPLETE"
        )
        if failed_pid and failed_pid not in (current.physical_resource_id, rollback_pid):
            cleanup = self._send(
                "rollback-cleanup-delete", cfn.delete_event(logical_id, failed_pid, new_props)
            )
            exchanges.append(cleanup)
            if not cleanup.succeeded:
                notes.append(f"the cleanup Delete of {failed_pid} failed")
        return self._done("update", logical_id, "UPDATE_ROLLBACK_COMPLETE", exchanges, notes)

    def delete(self, logical_id: str) -> Operation:
        current = self._require(logical_id)
        deleted = self._send(
            "delete",
            self.cloudformation.delete_event(logical_id, current.physical_resource_id, current.properties),
        )
        if deleted.succeeded:
            del self._resources[logical_id]
            return self._done("delete", logical_id, "DELETE_COMPLETE", [deleted])
        self._resources[logical_id] = StackResource(
            logical_id, current.physical_resource_id, current.properties, "DELETE_FAILED"
        )
        return self._done("delete", logical_id, "DELETE_FAILED", [deleted])

    def duplicate_last(self) -> Operation:
        """Deliver the last event sent once more, as is (same RequestId and ResponseURL).

        CloudFormation ignores a second answer, so the stack's record does not change.
        """
        if self._last_event is None:
            raise RuntimeError("no event was sent yet")
        event = self._last_event
        again = self._send("duplicate", event)
        outcome = "DUPLICATE_ANSWERED" if again.succeeded else "DUPLICATE_NOT_ANSWERED"
        return self._done("duplicate", str(event["LogicalResourceId"]), outcome, [again])

    # -- helpers -----------------------------------------------------------------------------------

    def _require(self, logical_id: str) -> StackResource:
        current = self._resources.get(logical_id)
        if current is None:
            raise KeyError(f"{logical_id} is not in the stack")
        return current

    def _send(self, phase: str, event: dict[str, Any]) -> Exchange:
        self._last_event = event
        pid = event.get("PhysicalResourceId")
        common: dict[str, Any] = {
            "phase": phase,
            "request_type": str(event["RequestType"]),
            "logical_resource_id": str(event["LogicalResourceId"]),
            "request_id": str(event["RequestId"]),
            "physical_resource_id": None if pid is None else str(pid),
            "event": event,
        }
        try:
            response = self.cloudformation.invoke(event)
        except NoResponse as error:
            logger.info("%s %s: %s", phase, event["LogicalResourceId"], error)
            return Exchange(response=None, error=error, **common)
        return Exchange(response=response, **common)

    def _done(
        self,
        action: str,
        logical_id: str,
        outcome: str,
        exchanges: list[Exchange],
        notes: list[str] | None = None,
    ) -> Operation:
        operation = Operation(action, logical_id, outcome, tuple(exchanges), tuple(notes or ()))
        self.operations.append(operation)
        return operation

    def _generated_physical_id(self, logical_id: str) -> str:
        """An id in the style CloudFormation generates (``<stack>-<logical id>-<12 random>``).

        Used when a failed Create gave none; what real CloudFormation sends in that case is not
        documented, so this is the driver's assumption.
        """
        suffix = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(12))
        return f"{self.cloudformation.stack_name}-{logical_id}-{suffix}"
