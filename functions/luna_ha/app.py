"""Lambda entry point of ``Custom::LunaHAGroup``: crhelper and powertools wired to the engine.

No logic lives here (see ``resource.py``): this module builds the real adapters once per container,
sets the physical id before any work, and answers CloudFormation through a bounded sender.
Never logged: the event, the ResponseURL (a pre-signed URL), any secret.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from collections.abc import Callable
from http.client import HTTPSConnection
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from crhelper import CfnResource

from luna_ha import compose
from luna_ha.engine import Engine
from luna_ha.resource import GroupResource, Outcome, physical_id_for, short_reason
from luna_ha.spec import GroupSpec

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
SEND_TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 4096


def send_response(response_url: str, body: dict[str, Any], ssl_verify: object = None) -> None:
    """PUT the response once it fits, with a socket timeout and a bounded number of attempts.

    Replaces crhelper's sender, which has no timeout and retries forever. Logs the status only.
    """
    payload = json.dumps(body)
    if len(payload.encode()) > MAX_RESPONSE_BYTES:
        body = {**body, "Status": "FAILED", "Data": {}, "Reason": "the response Data exceeded 4096 bytes"}
        payload = json.dumps(body)
    split = urlsplit(response_url)
    path = urlunsplit(("", "", split.path, split.query, ""))
    context = ssl.create_default_context()
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            connection = HTTPSConnection(split.netloc, timeout=SEND_TIMEOUT_SECONDS, context=context)
            connection.request(
                "PUT", path, body=payload, headers={"content-type": "", "content-length": str(len(payload))}
            )
            status = connection.getresponse().status
            connection.close()
            logger.info(
                "CloudFormation response sent", extra={"status": body["Status"], "http_status": status}
            )
            return
        except (OSError, ssl.SSLError) as exc:
            logger.warning(
                "sending the CloudFormation response failed",
                extra={"attempt": attempt, "error": type(exc).__name__},
            )
            if attempt < SEND_ATTEMPTS:
                time.sleep(min(2 ** (attempt - 1), 4))
    logger.error("gave up sending the CloudFormation response", extra={"attempts": SEND_ATTEMPTS})


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

    def _no_polling(self, func: Any) -> Any:
        raise TypeError("crhelper polling needs the clients _Resource does not create")

    poll_create = poll_update = poll_delete = _no_polling

    def _send(self, status: str | None = None, reason: str = "", send_response: Any = send_response) -> None:
        super()._send(status, reason, send_response=send_response)  # type: ignore[misc]  # private in the stubs


def _traced(function: Callable[..., Any]) -> Callable[..., Any]:
    return function if tracer is None else tracer.capture_lambda_handler(function, capture_response=False)


def _progress(host: str, message: str) -> None:
    logger.info(message, extra={"appliance": host})


def _engine(spec: GroupSpec) -> Engine:
    return compose.build_engine(spec, _progress, deletion_markers=True)


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
            outcome: Outcome = getattr(resource, operation)(event, remaining)
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
            stack=str(event.get("StackId", "")).split("/")[1:2],
            logical_id=event.get("LogicalResourceId"),
            request_type=event.get("RequestType"),
        )
        helper(event, context)

    return handler


handler = build_handler()
