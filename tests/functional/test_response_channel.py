"""The response channel: the function answers CloudFormation exactly once, and the whole exchange
(connect, send, read the reply, every retry) ends by one deadline, whatever the other end does:
unreachable (crhelper's sender would retry forever), trickling its reply one byte at a time (a
per-read timeout never fires), or cutting the reply off mid-status-line (crhelper's own error path
would then send a second, different answer)."""

from __future__ import annotations

import importlib
import socket
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from luna_ha_lab.cfn_receiver import ResponseReceiver
from luna_ha_lab.cloudformation import FakeLambdaContext, LocalCloudFormation
from luna_ha_lab.localaws import local_aws

BODY = {
    "Status": "SUCCESS",
    "Reason": "",
    "PhysicalResourceId": "x",
    "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
    "RequestId": "r-1",
    "LogicalResourceId": "Group",
    "Data": {},
}
FUNCTION_TIMEOUT = 6.0  # the fake Lambda context of the handler cases
TRICKLE_INTERVAL = 0.5  # one byte of the reply every half second: a 38-byte reply takes 19 s


@pytest.fixture
def app(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    return importlib.import_module("luna_ha.app")


@pytest.fixture
def receiver() -> Iterator[ResponseReceiver]:
    with ResponseReceiver(keep_default_cas=False) as started:
        yield started


def response_url(receiver: ResponseReceiver) -> str:
    return receiver.new_response_url(
        request_id=str(BODY["RequestId"]),
        stack_id=str(BODY["StackId"]),
        logical_resource_id=str(BODY["LogicalResourceId"]),
    )


def test_an_unreachable_response_url_is_given_up_by_the_deadline(app: ModuleType) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    app.send_response(f"https://127.0.0.1:{port}/cfn-response/x?X-Amz-Signature=abc", BODY)
    elapsed = time.monotonic() - started
    assert elapsed < app.SEND_DEADLINE_SECONDS + 1
    assert elapsed >= 1  # it did retry


def test_a_trickled_reply_ends_the_exchange_at_the_deadline_with_one_answer(
    app: ModuleType, receiver: ResponseReceiver
) -> None:
    receiver.misbehave("trickle", interval=TRICKLE_INTERVAL)
    started = time.monotonic()
    app.send_response(response_url(receiver), BODY, deadline=started + 2.0)
    assert time.monotonic() - started < 2.0 + 1.5
    assert receiver.counts() == {"r-1": 1}  # read once, never sent again


def test_a_reply_cut_off_mid_status_line_is_not_raised_and_not_resent(
    app: ModuleType, receiver: ResponseReceiver
) -> None:
    receiver.misbehave("cut")
    app.send_response(response_url(receiver), BODY)  # does not raise
    time.sleep(0.5)  # a second PUT, if any, would arrive by now
    assert receiver.counts() == {"r-1": 1}


def test_an_answer_with_a_refused_connection_is_retried_until_it_goes_out(
    app: ModuleType, receiver: ResponseReceiver
) -> None:
    """Only an answer that never left is repeated: here the first connection attempt fails."""
    url = response_url(receiver)
    real_connect = socket.create_connection
    calls: list[int] = []

    def refuse_once(*args: Any, **kwargs: Any) -> socket.socket:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionRefusedError
        return real_connect(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "create_connection", refuse_once)
        app.send_response(url, BODY)
    assert len(calls) == 2
    assert receiver.counts() == {"r-1": 1}


# --------------------------------------------------------------------------------------------------
# Through the real handler (crhelper's own paths: its error handler and its timeout timer)


def run_handler(app: ModuleType, event: dict[str, Any]) -> float:
    """Seconds the handler took on ``event``, under a fake context of ``FUNCTION_TIMEOUT`` s."""
    handler = app.build_handler()
    started = time.monotonic()
    context = FakeLambdaContext(
        function_name="luna-ha-provider",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:luna-ha-provider",
        memory_limit_in_mb="1769",
        aws_request_id="a-1",
        log_group_name="/aws/lambda/luna-ha-provider",
        log_stream_name="s",
        deadline=started + FUNCTION_TIMEOUT,
    )
    done = threading.Event()

    def invoke() -> None:
        try:
            handler(event, context)
        finally:
            done.set()

    threading.Thread(target=invoke, daemon=True).start()
    done.wait(60)
    return time.monotonic() - started


@pytest.fixture
def cfn(app: ModuleType, receiver: ResponseReceiver) -> Iterator[LocalCloudFormation]:
    with local_aws(), LocalCloudFormation(app.build_handler(), receiver=receiver) as driver:
        yield driver


@pytest.mark.parametrize("fault", ["trickle", "cut"])
def test_the_handler_answers_once_and_returns_before_its_timeout_whatever_the_reply(
    app: ModuleType, receiver: ResponseReceiver, cfn: LocalCloudFormation, fault: str
) -> None:
    # The rollback Delete of a Create whose properties were invalid: nothing to do, SUCCESS.
    event = cfn.delete_event("Group", "stack-Group-unknown", {})
    receiver.misbehave(fault, interval=TRICKLE_INTERVAL)

    seconds = run_handler(app, event)

    assert seconds < FUNCTION_TIMEOUT  # crhelper's timer would answer a second time 0.5 s before it
    time.sleep(1.0)  # a second answer, if any, would arrive by now
    answers = receiver.responses(event["RequestId"])
    assert [a.status for a in answers] == ["SUCCESS"]
