"""Lambda entry point of ``Custom::LunaHAGroup``: crhelper and powertools wired to the engine.

No logic lives here (see ``resource.py``): this module builds the real adapters once per container,
sets the physical id before any work, and answers CloudFormation through a bounded sender.
Never logged: the event, the ResponseURL (a pre-signed URL), any secret.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.client import HTTPSConnection
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from crhelper import CfnResource

from luna_ha import __version__, compose
from luna_ha.engine import Engine
from luna_ha.resource import GroupResource, ResourceResult, physical_id_for, short_reason

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "luna-ha"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "LunaHA"))
# Traced where powertools would trace: on Lambda (the template's `Tracing: Active`). Where it would
# not (POWERTOOLS_TRACE_DISABLED, outside Lambda, sam local: powertools' own rule), no Tracer at all:
# Tracer() imports aws_xray_sdk.core even to switch tracing off, which outside Lambda also builds two
# xray clients (0.14 s).


def _tracing() -> bool:
    """Powertools' rule: on Lambda (LAMBDA_TASK_ROOT), not under sam local or chalice, unless
    POWERTOOLS_TRACE_DISABLED is true."""
    setting = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower()
    disabled = setting in ("1", "y", "yes", "t", "true", "on")
    local = os.environ.get("AWS_SAM_LOCAL") or os.environ.get("AWS_CHALICE_CLI_MODE")
    return bool(os.environ.get("LAMBDA_TASK_ROOT")) and not local and not disabled


tracer: Tracer | None = Tracer() if _tracing() else None

SEND_ATTEMPTS = 4
#: One deadline for the whole answer: every attempt's DNS lookup, connect, TLS handshake, request and
#: status line, and the pauses between attempts. Inside the margin the function keeps for its answer
#: (``LUNA_HA_RESPONSE_MARGIN_SECONDS``, 30 s); never later than just before the function's own end.
SEND_DEADLINE_SECONDS = 25.0
#: Pauses before the 2nd, 3rd and 4th attempt (only attempts whose request never went out are retried).
RETRY_PAUSES = (1.0, 2.0, 4.0)
MAX_RESPONSE_BYTES = 4096


class _Exchange:
    """One attempt's PUT, run in a worker thread so that the caller can stop waiting at the deadline.

    ``sent`` becomes true once the whole request was written: from then on the answer may have
    reached CloudFormation, and it is never sent again, whatever comes back (or does not).
    """

    def __init__(self, netloc: str, path: str, payload: str, context: ssl.SSLContext, timeout: float) -> None:
        self.netloc, self.path, self.payload = netloc, path, payload
        self.context, self.timeout = context, timeout
        self.sent = False
        self.status: int | None = None
        self.error: BaseException | None = None
        self.cancelled = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def run(self) -> None:
        connection = HTTPSConnection(self.netloc, timeout=self.timeout, context=self.context)
        try:
            connection.connect()
            with self._lock:
                if self.cancelled:  # the caller gave up while this was connecting: never send late
                    return
                self._sock = connection.sock
            connection.request(
                "PUT",
                self.path,
                body=self.payload,
                headers={"content-type": "", "content-length": str(len(self.payload))},
            )
            self.sent = True
            self.status = connection.getresponse().status
        except Exception as exc:  # any failure of the exchange: OSError, ssl, http.client
            self.error = exc
        finally:
            connection.close()

    def abandon(self) -> None:
        """Unblock a worker stuck in a read or write: shut the socket down under it."""
        with self._lock:
            self.cancelled = True
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, not TLS's


def send_response(
    response_url: str, body: dict[str, Any], ssl_verify: object = None, *, deadline: float | None = None
) -> None:
    """PUT the response once it fits; never raises, never sends the answer twice.

    Replaces crhelper's sender, which has no timeout, retries forever and lets an unreadable reply
    raise (crhelper then sends a second, different answer). Everything happens before ``deadline``
    (``time.monotonic()``; default ``SEND_DEADLINE_SECONDS`` from now), however slowly the other end
    trickles. An attempt is repeated only when its request never went out (no connection, TLS
    failure). Once the request was written, a reply cut off, unreadable or too slow ends the
    sending: the answer may have arrived, and CloudFormation keeps the first one it gets.
    Logs the status and the error class only (the URL is pre-signed).
    """
    started = time.monotonic()
    deadline = started + SEND_DEADLINE_SECONDS if deadline is None else deadline
    try:
        payload = json.dumps(body)
        if len(payload.encode()) > MAX_RESPONSE_BYTES:
            body = {**body, "Status": "FAILED", "Data": {}, "Reason": "the response Data exceeded 4096 bytes"}
            payload = json.dumps(body)
        split = urlsplit(response_url)
        path = urlunsplit(("", "", split.path, split.query, ""))
        context = ssl.create_default_context()
        for attempt in range(1, SEND_ATTEMPTS + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            exchange = _Exchange(split.netloc, path, payload, context, timeout=remaining)
            worker = threading.Thread(target=exchange.run, name="cfn-response", daemon=True)
            worker.start()
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                exchange.abandon()
                worker.join(0.2)
            extra = {"status": body.get("Status"), "attempt": attempt}
            if exchange.status is not None:
                logger.info("CloudFormation response sent", extra={**extra, "http_status": exchange.status})
                return
            error = "deadline" if exchange.error is None else type(exchange.error).__name__
            if exchange.sent:
                logger.warning(
                    "CloudFormation response sent, but no reply was read; not sending it again",
                    extra={**extra, "error": error},
                )
                return
            logger.warning("sending the CloudFormation response failed", extra={**extra, "error": error})
            if attempt < SEND_ATTEMPTS:
                time.sleep(max(0.0, min(RETRY_PAUSES[attempt - 1], deadline - time.monotonic())))
    except Exception as exc:  # a sender that raises makes crhelper send a second answer
        logger.error("sending the CloudFormation response failed", extra={"error": type(exc).__name__})
        return
    logger.error(
        "gave up sending the CloudFormation response",
        extra={"seconds": round(time.monotonic() - started, 1)},
    )


class _Resource(CfnResource):
    """crhelper's CfnResource answering through :func:`send_response`, without its polling clients.

    ``CfnResource.__init__`` creates boto3 clients for lambda, events and logs (~0.1 s of every cold
    start) that serve only its polling mode (``poll_*``: EventBridge rules re-invoking the function),
    which this function does not use; it skips them when ``AWS_SAM_LOCAL`` is set. So the variable is
    set for the constructor only, and the environment and what crhelper read from it are put back.
    """

    def __init__(self, **kwargs: Any) -> None:
        sam_local = os.environ.get("AWS_SAM_LOCAL")
        os.environ["AWS_SAM_LOCAL"] = "true"
        try:
            super().__init__(**kwargs)
        finally:
            if sam_local is None:
                del os.environ["AWS_SAM_LOCAL"]
            else:
                os.environ["AWS_SAM_LOCAL"] = sam_local
        self._sam_local = sam_local
        self._answer_lock = threading.Lock()
        self._answered = False

    def _no_polling(self, func: Any) -> Any:
        raise TypeError("crhelper polling needs the clients _Resource does not create")

    poll_create = poll_update = poll_delete = _no_polling

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        with self._answer_lock:
            self._answered = False  # one answer per invocation
        super().__call__(event, context)

    def _send(self, status: str | None = None, reason: str = "", send_response: Any = send_response) -> None:
        """Answer at most once per invocation, within the time the function has left.

        crhelper may try to answer again: after a sender that raised, or from its timer 0.5 s before
        the function's end while the answer is still being sent. Only the first answer goes out.
        """
        with self._answer_lock:
            already, self._answered = self._answered, True
        if already:
            logger.warning(
                "a second answer to this event was not sent", extra={"status": status or self.Status}
            )
            return
        seconds = SEND_DEADLINE_SECONDS
        context = getattr(self, "_context", None)
        if context is not None:
            # Done 1 s before the function's end, and so before crhelper's timer (0.5 s before it).
            seconds = min(seconds, max(0.5, context.get_remaining_time_in_millis() / 1000.0 - 1.0))
        bounded = functools.partial(send_response, deadline=time.monotonic() + seconds)
        super()._send(status, reason, send_response=bounded)  # type: ignore[misc]  # private in the stubs


def _traced(function: Callable[..., Any]) -> Callable[..., Any]:
    return function if tracer is None else tracer.capture_lambda_handler(function, capture_response=False)


def _progress(host: str, message: str) -> None:
    logger.info(message, extra={"appliance": host})


def _engine() -> Engine:
    """Built per event, from the environment as it is then (one composition root for every
    operation of the event)."""
    return compose.build_engine(_progress, deletion_markers=True)


resource = GroupResource(
    _engine,
    margin_seconds=float(os.environ.get("LUNA_HA_RESPONSE_MARGIN_SECONDS", "30")),
    parameter_prefix=os.environ.get("LUNA_HA_PARAMETER_PREFIX", "/luna-ha"),
)


def build_handler() -> Callable[[dict[str, Any], Any], None]:
    """A Lambda handler with its own crhelper instance (one per container, as Lambda has)."""
    helper = _Resource(json_logging=False, log_level="INFO", boto_level="ERROR", sleep_on_delete=2)
    # crhelper sets the root logger's level on every call; keep its own chatter quiet.
    logging.getLogger("crhelper").setLevel(logging.WARNING)

    def run(operation: str, event: dict[str, Any], context: Any) -> str:
        remaining = context.get_remaining_time_in_millis() / 1000.0
        started = time.monotonic()
        try:
            outcome: ResourceResult = getattr(resource, operation)(event, remaining)
        except Exception as exc:
            metrics.add_metric(name="Failures", unit=MetricUnit.Count, value=1)
            reason = short_reason(exc)
            logger.error("operation failed", extra={"operation": operation, "reason": reason})
            raise RuntimeError(reason) from None
        finally:
            metrics.add_metric(
                name=f"{operation.capitalize()}Duration",
                unit=MetricUnit.Seconds,
                value=time.monotonic() - started,
            )
        helper.Data.update(outcome.data)
        if outcome.report is not None:
            changed = sum(1 for a in outcome.report.appliances if a.done)
            metrics.add_metric(name="AppliancesChanged", unit=MetricUnit.Count, value=changed)
        logger.info("operation done", extra={"operation": operation, "physical_id": outcome.physical_id})
        return outcome.physical_id

    @helper.create
    def create(event: dict[str, Any], context: Any) -> str:
        helper.PhysicalResourceId = physical_id_for(event)  # before any work: a failed Create answers with it
        return run("create", event, context)

    @helper.update
    def update(event: dict[str, Any], context: Any) -> str:
        helper.PhysicalResourceId = event.get("PhysicalResourceId") or physical_id_for(event)
        return run("update", event, context)

    @helper.delete
    def delete(event: dict[str, Any], context: Any) -> str:
        helper.PhysicalResourceId = event.get("PhysicalResourceId") or ""
        return run("delete", event, context)

    @logger.inject_lambda_context(log_event=False, clear_state=True)
    @metrics.log_metrics
    @_traced
    def handler(event: dict[str, Any], context: Any) -> None:
        logger.set_correlation_id(event.get("RequestId"))
        logger.append_keys(
            version=__version__,
            stack=str(event.get("StackId", "")).split("/")[1:2],
            logical_id=event.get("LogicalResourceId"),
            request_type=event.get("RequestType"),
        )
        helper(event, context)

    return handler


handler = build_handler()
