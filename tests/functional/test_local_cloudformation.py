"""The local CloudFormation driver: real crhelper, its unpatched sender, real HTTPS with a throwaway CA.

The handler here is a tiny custom resource written on crhelper in this file (not ``luna_ha.app``):
its physical id is ``tiny-<Name>``, set before any work; ``Fail``, ``FailDelete``, ``Block``,
``Sleep`` and ``Blob`` properties make it fail, wait or answer too much.
"""

from __future__ import annotations

import copy
import http.client
import json
import logging
import os
import re
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from luna_ha_lab.cfn_receiver import make_throwaway_ca
from luna_ha_lab.cloudformation import (
    LocalCloudFormation,
    LocalStack,
    NoResponse,
    Operation,
    ResponseReceiver,
    cfn_stringify,
)

UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


class Tiny:
    """A custom resource on real crhelper; records every event and context it is given."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        from crhelper import CfnResource

        self.helper = CfnResource(json_logging=False, log_level="INFO", sleep_on_delete=0)
        self.helper.create(self._create_or_update)
        self.helper.update(self._create_or_update)
        self.helper.delete(self._delete)
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.gate = gate or threading.Event()

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        self.events.append(copy.deepcopy(event))
        self.contexts.append(context)
        self.helper(event, context)

    def _create_or_update(self, event: dict[str, Any], context: Any) -> str:
        props = event["ResourceProperties"]
        self.helper.PhysicalResourceId = f"tiny-{props['Name']}"
        if props.get("Block") == "true":
            self.gate.wait(10)
        if props.get("Sleep"):
            time.sleep(float(props["Sleep"]))
        self.helper.Data.update(
            {
                "Port": props.get("Port", ""),
                "PortType": type(props.get("Port")).__name__,
                "Remaining": str(context.get_remaining_time_in_millis()),
            }
        )
        if props.get("Blob"):
            self.helper.Data["Blob"] = "x" * int(props["Blob"])
        if props.get("Fail") == "true":
            raise RuntimeError(f"told to fail ({props['Name']})")
        return str(self.helper.PhysicalResourceId)

    def _delete(self, event: dict[str, Any], context: Any) -> None:
        if event["ResourceProperties"].get("FailDelete") == "true":
            raise RuntimeError("told to fail the delete")


@pytest.fixture
def tiny(aws_env: None) -> Tiny:
    return Tiny()


@pytest.fixture
def cfn(tiny: Tiny) -> Iterator[LocalCloudFormation]:
    with LocalCloudFormation(tiny, timeout_seconds=30, grace_seconds=1) as cfn:
        yield cfn


@pytest.fixture
def stack(cfn: LocalCloudFormation) -> LocalStack:
    return LocalStack(cfn)


def put(url: str, body: bytes, *, method: str = "PUT", context: ssl.SSLContext | None = None) -> int:
    split = urlsplit(url)
    conn = http.client.HTTPSConnection(
        split.netloc, context=context or ssl.create_default_context(), timeout=5
    )
    try:
        target = split.path + ("?" + split.query if split.query else "")
        conn.request(method, target, body=body, headers={"content-type": ""})
        return conn.getresponse().status
    finally:
        conn.close()


def phases(op: Operation) -> list[tuple[str, str, str | None]]:
    return [(e.phase, e.request_type, e.physical_resource_id) for e in op.exchanges]


# --------------------------------------------------------------------------------------------------
# Events, context and answers


def test_create_answers_over_https_with_cloudformation_shaped_event(
    tiny: Tiny, cfn: LocalCloudFormation
) -> None:
    props = {
        "Name": "a",
        "Port": 22,
        "Initialize": False,
        "Ratio": 1.5,
        "Skip": None,
        "Appliances": [{"Host": "10.0.1.10", "Port": 22, "Initialize": True}],
        "Clients": [{"Name": "web", "Rotation": 0}],
        "Tags": {},
    }
    response = cfn.invoke(cfn.create_event("Group", props))

    assert (response.status, response.physical_resource_id, response.reason) == ("SUCCESS", "tiny-a", "")
    assert response.succeeded and response.problems == ()
    assert (response.data["Port"], response.data["PortType"]) == ("22", "str")
    assert 0 < response.body_size <= 4096
    assert 0 <= response.seconds < 5

    (event,) = tiny.events
    assert event["ResourceProperties"] == {
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:luna-ha-provider",
        "Name": "a",
        "Port": "22",
        "Initialize": "false",
        "Ratio": "1.5",
        "Appliances": [{"Host": "10.0.1.10", "Port": "22", "Initialize": "true"}],
        "Clients": [{"Name": "web", "Rotation": "0"}],
        "Tags": {},
    }
    assert event["RequestType"] == "Create"
    assert event["ServiceToken"] == cfn.service_token == event["ResourceProperties"]["ServiceToken"]
    assert re.fullmatch(
        rf"arn:aws:cloudformation:us-east-1:123456789012:stack/luna-ha-demo/{UUID_RE}", event["StackId"]
    )
    assert re.fullmatch(UUID_RE, event["RequestId"])
    assert (event["LogicalResourceId"], event["ResourceType"]) == ("Group", "Custom::LunaHAGroup")
    assert "PhysicalResourceId" not in event and "OldResourceProperties" not in event

    url = urlsplit(event["ResponseURL"])
    assert (url.scheme, url.hostname, url.port) == ("https", "127.0.0.1", cfn.receiver.port)
    assert re.fullmatch(rf"/cfn-response/{UUID_RE}", url.path)
    query = parse_qs(url.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert re.fullmatch(r"[0-9a-f]{64}", query["X-Amz-Signature"][0])

    (context,) = tiny.contexts
    assert context.function_name == "luna-ha-provider"
    assert context.function_version == "$LATEST"
    assert context.invoked_function_arn == cfn.service_token
    assert context.memory_limit_in_mb == "1769"  # the provider template's default
    assert re.fullmatch(UUID_RE, context.aws_request_id)
    assert context.log_group_name == "/aws/lambda/luna-ha-provider"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", context.log_stream_name)
    assert 25_000 < int(response.data["Remaining"]) <= 30_000  # counts down from the function timeout
    assert context.get_remaining_time_in_millis() <= int(response.data["Remaining"])
    assert cfn.receiver.count(event["RequestId"]) == 1


def test_update_and_delete_events_carry_physical_id_and_old_properties(
    tiny: Tiny, cfn: LocalCloudFormation
) -> None:
    update = cfn.update_event("Group", "tiny-a", {"Name": "a", "Port": 23}, {"Name": "a", "Port": 22})
    delete = cfn.delete_event("Group", "tiny-a", {"Name": "a", "Port": 23})

    assert cfn.invoke(update).physical_resource_id == "tiny-a"
    assert cfn.invoke(delete).status == "SUCCESS"

    sent_update, sent_delete = tiny.events
    assert sent_update["RequestType"] == "Update" and sent_update["PhysicalResourceId"] == "tiny-a"
    assert sent_update["ResourceProperties"]["Port"] == "23"
    assert sent_update["OldResourceProperties"] == {
        "ServiceToken": cfn.service_token,
        "Name": "a",
        "Port": "22",
    }
    assert sent_delete["RequestType"] == "Delete" and sent_delete["PhysicalResourceId"] == "tiny-a"
    assert sent_delete["ResourceProperties"]["Port"] == "23"
    assert "OldResourceProperties" not in sent_delete
    assert sent_update["ResponseURL"] != sent_delete["ResponseURL"]
    assert sent_update["RequestId"] != sent_delete["RequestId"]


def test_failed_create_answers_failed_with_the_physical_id_set_first(cfn: LocalCloudFormation) -> None:
    response = cfn.invoke(cfn.create_event("Group", {"Name": "a", "Fail": True}))

    assert (response.status, response.reason, response.physical_resource_id) == (
        "FAILED",
        "told to fail (a)",
        "tiny-a",
    )
    assert not response.succeeded


def test_cfn_stringify() -> None:
    assert cfn_stringify({"a": [1, True, None, {"b": 2.5, "c": None}], "d": "x"}) == {
        "a": ["1", "true", {"b": "2.5"}],
        "d": "x",
    }
    with pytest.raises(ValueError):
        cfn_stringify({"a": float("nan")})
    with pytest.raises(TypeError):
        cfn_stringify({1: "a"})
    with pytest.raises(TypeError):
        cfn_stringify({"a": object()})


# --------------------------------------------------------------------------------------------------
# The transport: crhelper's own sender, real TLS


def test_crhelper_sender_is_unpatched_and_verifies_the_throwaway_ca(cfn: LocalCloudFormation) -> None:
    from crhelper import utils
    from crhelper.resource_helper import CfnResource

    # The sender crhelper binds as a default argument is its own, untouched.
    send_response = vars(utils)["_send_response"]
    defaults = vars(CfnResource)["_send"].__defaults__
    assert defaults is not None and defaults[-1] is send_response
    assert Path(send_response.__code__.co_filename).parent.name == "crhelper"
    assert os.environ["SSL_CERT_FILE"] == str(cfn.receiver.ca_file)

    # The default context (what crhelper builds) trusts the receiver; a context with another CA
    # does not: the TLS is real and verified.
    url = cfn.create_event("Group", {"Name": "a"})["ResponseURL"]
    other = ssl.create_default_context(cadata=make_throwaway_ca().ca_cert_pem.decode())
    with pytest.raises(ssl.SSLCertVerificationError):
        put(url, b"{}", context=other)
    assert put(url, b"not json") == 400  # connected and verified with the default context
    assert cfn.receiver.handshake_failures == 1

    # crhelper's sender itself delivers to the receiver.
    event = cfn.create_event("Group", {"Name": "b"})
    body = {
        "Status": "SUCCESS",
        "Reason": "",
        "PhysicalResourceId": "direct",
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": "Group",
        "NoEcho": False,
        "Data": {},
    }
    send_response(event["ResponseURL"], body)
    (received,) = cfn.receiver.responses(event["RequestId"])
    assert (received.status, received.physical_resource_id, received.problems) == ("SUCCESS", "direct", ())
    assert received.body_size == len(json.dumps(body))


def test_receiver_refuses_what_is_not_a_response_to_its_urls(cfn: LocalCloudFormation) -> None:
    event = cfn.create_event("Group", {"Name": "a"})
    url = event["ResponseURL"]
    good = {
        "Status": "SUCCESS",
        "PhysicalResourceId": "p",
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": "Group",
    }
    wrong_signature = re.sub(r"X-Amz-Signature=[0-9a-f]+", "X-Amz-Signature=" + "0" * 64, url)
    unknown_path = re.sub(UUID_RE + r"\?", str(uuid.uuid4()) + "?", url)

    assert put(wrong_signature, json.dumps(good).encode()) == 403
    assert put(unknown_path, json.dumps(good).encode()) == 403
    assert put(url, b"[1, 2]") == 400
    assert put(url, json.dumps({**good, "Status": "MAYBE"}).encode()) == 400
    assert put(url, json.dumps({k: v for k, v in good.items() if k != "RequestId"}).encode()) == 400
    assert put(url, json.dumps({**good, "Data": ["x"]}).encode()) == 400
    assert put(url, b"", method="GET") == 405
    assert cfn.receiver.responses() == []
    assert [r.http_status for r in cfn.receiver.rejected] == [403, 403, 400, 400, 400, 400]

    # Well formed but not what CloudFormation accepts: recorded with its problems.
    assert put(url, json.dumps({**good, "RequestId": "other", "PhysicalResourceId": ""}).encode()) == 200
    (received,) = cfn.receiver.responses()
    assert any("RequestId" in p for p in received.problems)
    assert any("PhysicalResourceId is empty" in p for p in received.problems)


def test_receiver_restores_ssl_cert_file_and_deletes_the_ca_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with ResponseReceiver() as receiver:
        ca_file = receiver.ca_file
        assert os.environ["SSL_CERT_FILE"] == str(ca_file)
        assert ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        assert sorted(p.name for p in ca_file.parent.iterdir()) == ["ca-bundle.pem"]  # no key left
    assert "SSL_CERT_FILE" not in os.environ
    assert not ca_file.exists() and not ca_file.parent.exists()

    with ResponseReceiver(keep_default_cas=False) as receiver:
        assert receiver.ca_file.read_bytes().count(b"-----BEGIN CERTIFICATE-----") == 1
    assert "SSL_CERT_FILE" not in os.environ

    monkeypatch.setenv("SSL_CERT_FILE", "/nowhere/bundle.pem")
    with pytest.raises(RuntimeError, match="boom"), ResponseReceiver() as receiver:
        ca_file = receiver.ca_file
        assert os.environ["SSL_CERT_FILE"] == str(ca_file)
        raise RuntimeError("boom")
    assert os.environ["SSL_CERT_FILE"] == "/nowhere/bundle.pem"
    assert not ca_file.exists()


def test_local_cloudformation_closes_the_receiver_it_started(
    tiny: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/before.pem")
    with LocalCloudFormation(tiny) as cfn:
        ca_file = cfn.receiver.ca_file
        assert cfn.invoke(cfn.create_event("Group", {"Name": "a"})).succeeded
    assert os.environ["SSL_CERT_FILE"] == "/before.pem"
    assert not ca_file.exists()
    with pytest.raises(RuntimeError, match="not running"):
        cfn.create_event("Group", {"Name": "a"})


# --------------------------------------------------------------------------------------------------
# The stack's choreography


def test_failed_create_is_rolled_back_with_a_delete_of_the_returned_id(tiny: Tiny, stack: LocalStack) -> None:
    op = stack.create("Group", {"Name": "a", "Port": 22, "Fail": True})

    assert op.outcome == "ROLLBACK_COMPLETE" and not op.succeeded
    assert phases(op) == [("create", "Create", None), ("rollback-delete", "Delete", "tiny-a")]
    failed, rollback = op.responses
    assert failed is not None and (failed.status, failed.reason) == ("FAILED", "told to fail (a)")
    assert rollback is not None and rollback.status == "SUCCESS"
    create_event, delete_event = tiny.events
    assert delete_event["PhysicalResourceId"] == "tiny-a"
    assert delete_event["ResourceProperties"] == create_event["ResourceProperties"]
    assert stack.resource("Group") is None


def test_failed_update_is_rolled_back_with_old_and_new_swapped(tiny: Tiny, stack: LocalStack) -> None:
    stack.create("Group", {"Name": "a", "Port": 22})
    op = stack.update("Group", {"Name": "a", "Port": 23, "Fail": True})

    assert op.outcome == "UPDATE_ROLLBACK_COMPLETE"
    assert phases(op) == [("update", "Update", "tiny-a"), ("rollback-update", "Update", "tiny-a")]
    assert [r.status for r in op.responses if r] == ["FAILED", "SUCCESS"]
    update, rollback = tiny.events[-2:]
    assert rollback["ResourceProperties"] == update["OldResourceProperties"]
    assert rollback["OldResourceProperties"] == update["ResourceProperties"]
    assert rollback["ResourceProperties"]["Port"] == "22"
    current = stack.resource("Group")
    assert current is not None
    assert (current.physical_resource_id, current.properties["Port"]) == ("tiny-a", "22")


def test_failed_replacement_rolls_back_then_deletes_the_new_id(tiny: Tiny, stack: LocalStack) -> None:
    stack.create("Group", {"Name": "a"})
    op = stack.update("Group", {"Name": "b", "Fail": True})

    assert op.outcome == "UPDATE_ROLLBACK_COMPLETE"
    assert phases(op) == [
        ("update", "Update", "tiny-a"),
        ("rollback-update", "Update", "tiny-a"),
        ("rollback-cleanup-delete", "Delete", "tiny-b"),
    ]
    assert tiny.events[-1]["ResourceProperties"]["Name"] == "b"
    current = stack.resource("Group")
    assert current is not None and current.physical_resource_id == "tiny-a"


def test_replacement_deletes_the_old_id_after_the_update(tiny: Tiny, stack: LocalStack) -> None:
    stack.create("Group", {"Name": "a", "Port": 22})
    op = stack.update("Group", {"Name": "b", "Port": 22})

    assert op.outcome == "UPDATE_COMPLETE" and op.succeeded
    assert phases(op) == [("update", "Update", "tiny-a"), ("cleanup-delete", "Delete", "tiny-a")]
    update, cleanup = tiny.events[-2:]
    assert update["ResourceProperties"]["Name"] == "b"
    assert cleanup["ResourceProperties"] == update["OldResourceProperties"]
    current = stack.resource("Group")
    assert current is not None
    assert (current.physical_resource_id, current.properties["Name"]) == ("tiny-b", "b")

    deleted = stack.delete("Group")
    assert deleted.outcome == "DELETE_COMPLETE" and phases(deleted) == [("delete", "Delete", "tiny-b")]
    assert stack.resources == {}


def test_unchanged_update_sends_nothing_unless_forced(tiny: Tiny, stack: LocalStack) -> None:
    stack.create("Group", {"Name": "a", "Port": 22})
    assert stack.update("Group", {"Name": "a", "Port": "22"}).exchanges == ()  # "22" is what 22 becomes
    assert len(tiny.events) == 1
    forced = stack.update("Group", {"Name": "a", "Port": 22}, force=True)
    assert phases(forced) == [("update", "Update", "tiny-a")] and forced.succeeded


def test_failed_delete_keeps_the_resource(stack: LocalStack) -> None:
    stack.create("Group", {"Name": "a", "FailDelete": True})
    op = stack.delete("Group")
    assert op.outcome == "DELETE_FAILED"
    current = stack.resource("Group")
    assert current is not None and current.status == "DELETE_FAILED"


def test_oversized_answer_counts_as_failed_and_is_rolled_back(stack: LocalStack) -> None:
    op = stack.create("Group", {"Name": "a", "Blob": 5000})

    created = op.exchanges[0].response
    assert created is not None and created.status == "SUCCESS" and created.body_size > 4096
    assert not created.succeeded and "too long" in created.problems[0]
    assert op.outcome == "ROLLBACK_COMPLETE"
    assert phases(op)[1] == ("rollback-delete", "Delete", "tiny-a")


def test_one_answer_per_event_and_a_duplicate_gets_its_own(tiny: Tiny, stack: LocalStack) -> None:
    stack.create("Group", {"Name": "a"})
    stack.update("Group", {"Name": "b"})
    stack.update("Group", {"Name": "b", "Fail": True})
    sent = [e["RequestId"] for e in tiny.events]
    counts = stack.cloudformation.receiver.counts()
    assert len(sent) == 5 and len(set(sent)) == 5  # the replacement brings a cleanup, the failure a rollback
    assert {rid: counts.get(rid, 0) for rid in sent} == dict.fromkeys(sent, 1)

    before = stack.resource("Group")
    again = stack.duplicate_last()
    assert again.outcome == "DUPLICATE_ANSWERED"
    assert tiny.events[-1] == tiny.events[-2]  # same RequestId, same ResponseURL
    assert stack.cloudformation.receiver.count(sent[-1]) == 2
    (first, second) = stack.cloudformation.receiver.responses(sent[-1])
    assert first.physical_resource_id == second.physical_resource_id == "tiny-b"
    assert stack.cloudformation.receiver.wait(sent[-1], timeout=1, nth=2) == second
    with pytest.raises(NoResponse, match="no response #3"):
        stack.cloudformation.receiver.wait(sent[-1], timeout=0.1, nth=3)
    assert stack.resource("Group") == before


# --------------------------------------------------------------------------------------------------
# Handlers that do not answer


def test_hanging_handler_gives_no_response_within_the_bound(aws_env: None) -> None:
    release = threading.Event()

    def hang(event: dict[str, Any], context: Any) -> None:
        release.wait(30)

    try:
        with LocalCloudFormation(hang, timeout_seconds=1, grace_seconds=0.5) as cfn:
            event = cfn.create_event("Group", {"Name": "a"})
            started = time.monotonic()
            with pytest.raises(NoResponse) as info:
                cfn.invoke(event)
            elapsed = time.monotonic() - started
    finally:
        release.set()
    assert 1.4 <= elapsed < 3
    assert info.value.handler_state == "running"
    assert info.value.request_id == event["RequestId"]
    assert "still running" in str(info.value) and "Create Group" in str(info.value)
    assert isinstance(info.value, TimeoutError)


def test_handler_that_returns_or_raises_without_answering(aws_env: None) -> None:
    def silent(event: dict[str, Any], context: Any) -> None:
        return None

    def broken(event: dict[str, Any], context: Any) -> None:
        raise ValueError("no luck")

    for handler, state in ((silent, "returned"), (broken, "raised")):
        with LocalCloudFormation(handler, timeout_seconds=30, grace_seconds=0.3) as cfn:
            started = time.monotonic()
            with pytest.raises(NoResponse) as info:
                cfn.invoke(cfn.create_event("Group", {"Name": "a"}))
            assert time.monotonic() - started < 2
            assert info.value.handler_state == state
    assert isinstance(info.value.__cause__, ValueError)

    with LocalCloudFormation(silent, timeout_seconds=30, grace_seconds=0.2) as cfn:
        op = LocalStack(cfn).create("Group", {"Name": "a"})
    assert op.outcome == "ROLLBACK_FAILED"
    assert [e.error is not None for e in op.exchanges] == [True, True]
    rollback_id = op.exchanges[1].physical_resource_id
    assert rollback_id is not None and re.fullmatch(r"luna-ha-demo-Group-[A-Z0-9]{12}", rollback_id)


def test_crhelper_timeout_timer_answers_and_the_late_function_answers_again(tiny: Tiny) -> None:
    # A trap of crhelper worth seeing: its timer answers FAILED 0.5 s before the end, and the
    # function, still running, answers again when it returns: two answers for one RequestId.
    with LocalCloudFormation(tiny, timeout_seconds=1, grace_seconds=2) as cfn:
        event = cfn.create_event("Group", {"Name": "a", "Sleep": 1})
        response = cfn.invoke(event)
        assert (response.status, response.reason) == ("FAILED", "Execution timed out")
        assert 0.4 < response.seconds < 1.0
        assert [r.status for r in cfn.receiver.responses(event["RequestId"])] == ["FAILED", "SUCCESS"]


# --------------------------------------------------------------------------------------------------
# Delete while Create runs


def test_delete_while_create_runs_gets_its_own_environment(aws_env: None) -> None:
    gate = threading.Event()
    handlers = [Tiny(gate)]

    def new_environment() -> Tiny:
        handlers.append(Tiny(gate))
        return handlers[-1]

    try:
        with LocalCloudFormation(handlers[0], environment_factory=new_environment, grace_seconds=1) as cfn:
            create = cfn.create_event("Group", {"Name": "a", "Block": True})
            running = cfn.invoke_async(create)
            _wait_until(lambda: bool(handlers[0].events))
            deleted = cfn.invoke(cfn.delete_event("Group", "tiny-a", create["ResourceProperties"]))
            assert not running.done()
            gate.set()
            created = running.result(timeout=10)
            assert (deleted.status, deleted.request_type) == ("SUCCESS", "Delete")
            assert (created.status, created.physical_resource_id) == ("SUCCESS", "tiny-a")
            assert cfn.environments == 2 and len(handlers[1].events) == 1
            assert set(cfn.receiver.counts().values()) == {1}
    finally:
        gate.set()


def test_a_shared_crhelper_instance_misroutes_the_create_answer(aws_env: None) -> None:
    # Why environment_factory exists: one CfnResource serving two events at once answers the Create
    # to the Delete's URL, with the Delete's RequestId. Lambda never does this; a thread pool would.
    gate = threading.Event()
    tiny = Tiny(gate)
    try:
        with LocalCloudFormation(tiny, grace_seconds=0.5) as cfn:
            create = cfn.create_event("Group", {"Name": "a", "Block": True})
            running = cfn.invoke_async(create)
            _wait_until(lambda: bool(tiny.events))
            delete = cfn.delete_event("Group", "tiny-a", create["ResourceProperties"])
            assert cfn.invoke(delete).status == "SUCCESS"
            gate.set()
            with pytest.raises(NoResponse):
                running.result(timeout=10)
            assert cfn.receiver.count(create["RequestId"]) == 0
            assert cfn.receiver.count(delete["RequestId"]) == 2
    finally:
        gate.set()


def _wait_until(condition: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# --------------------------------------------------------------------------------------------------
# The pre-signed query string stays out of sight


def test_response_url_query_never_shows(aws_env: None, tiny: Tiny, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="luna_ha")

    def silent(event: dict[str, Any], context: Any) -> None:
        return None

    with LocalCloudFormation(tiny, grace_seconds=1) as cfn:
        stack = LocalStack(cfn)
        ops = [
            stack.create("Group", {"Name": "a"}),
            stack.update("Group", {"Name": "b", "Fail": True}),
            stack.delete("Group"),
        ]
    with LocalCloudFormation(silent, grace_seconds=0.1) as quiet:
        ops.append(LocalStack(quiet).create("Group", {"Name": "a"}))

    signatures = [parse_qs(urlsplit(e["ResponseURL"]).query)["X-Amz-Signature"][0] for e in tiny.events]
    shown = "\n".join(
        [op.describe() + repr(op) for op in ops]
        + [repr(e.redacted_event()) for op in ops for e in op.exchanges]
        + [str(e.error) for op in ops for e in op.exchanges if e.error]
        + [caplog.text]
    )
    assert "X-Amz" not in shown
    assert not any(s in shown for s in signatures)
    assert ops[0].exchanges[0].redacted_event()["ResponseURL"].endswith("?…")
