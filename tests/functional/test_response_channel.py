"""The response channel: the function's own sender gives up in bounded time when CloudFormation's
URL cannot be reached (crhelper's would retry forever)."""

from __future__ import annotations

import importlib
import socket
import time

import pytest


def test_an_unreachable_response_url_is_given_up_in_bounded_time(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    app = importlib.import_module("luna_ha.app")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    body = {
        "Status": "SUCCESS",
        "Reason": "",
        "PhysicalResourceId": "x",
        "StackId": "s",
        "RequestId": "r",
        "LogicalResourceId": "G",
        "Data": {},
    }
    started = time.monotonic()
    app.send_response(f"https://127.0.0.1:{port}/cfn-response/x?X-Amz-Signature=abc", body)
    elapsed = time.monotonic() - started
    assert elapsed < app.SEND_ATTEMPTS * (app.SEND_TIMEOUT_SECONDS + 4)
    assert elapsed >= 1  # it did retry
