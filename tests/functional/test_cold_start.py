"""The handler's cold start: building it creates no boto3 client (crhelper's lambda/events/logs
clients serve only its polling mode, which the function does not use), and importing it with
tracing off does not import the X-Ray SDK; the handler still answers CloudFormation over HTTPS."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import botocore.session
import pytest

from luna_ha_lab.cloudformation import LocalCloudFormation, LocalStack
from luna_ha_lab.localaws import group_properties
from tests.functional.lab import served_lab

POLLING_CLIENTS = {"lambda", "events", "logs"}


def record_clients(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The service name of every boto3/botocore client created from now on, in any session."""
    created: list[str] = []
    create_client = botocore.session.Session.create_client

    def spy(self: botocore.session.Session, service_name: str, *args: Any, **kwargs: Any) -> Any:
        created.append(service_name)
        return create_client(self, service_name, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "create_client", spy)
    return created


def build_handler() -> Callable[[dict[str, Any], Any], None]:
    return importlib.import_module("luna_ha.app").build_handler()  # type: ignore[no-any-return]


@pytest.fixture
def quiet(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.delenv("AWS_SAM_LOCAL", raising=False)


def test_building_the_handler_creates_no_boto3_client(quiet: None, monkeypatch: pytest.MonkeyPatch) -> None:
    build_handler()  # the module's own handler too, if this process had not imported it yet
    created = record_clients(monkeypatch)

    build_handler()

    assert created == []
    import boto3

    boto3.client("ssm")  # the spy sees clients
    assert created == ["ssm"]


@pytest.mark.parametrize("before", [None, "1"])
def test_building_the_handler_leaves_aws_sam_local_as_it_was(
    quiet: None, monkeypatch: pytest.MonkeyPatch, before: str | None
) -> None:
    if before is not None:
        monkeypatch.setenv("AWS_SAM_LOCAL", before)
    build_handler()
    assert os.environ.get("AWS_SAM_LOCAL") == before


def test_crhelper_polling_is_refused_rather_than_left_without_clients(quiet: None) -> None:
    app = importlib.import_module("luna_ha.app")
    helper = app._Resource(json_logging=False, log_level="INFO", sleep_on_delete=0)
    with pytest.raises(TypeError, match="polling"):
        helper.poll_create(lambda event, context: None)


IMPORT = """
import json, sys
import botocore.session
created = []
create_client = botocore.session.Session.create_client
def spy(self, service_name, *args, **kwargs):
    created.append(service_name)
    return create_client(self, service_name, *args, **kwargs)
botocore.session.Session.create_client = spy
import luna_ha.app
xray = sorted(m for m in sys.modules if m.split(".")[0] == "aws_xray_sdk")
print(json.dumps({"created": created, "xray": xray, "traced": luna_ha.app.tracer is not None}))
"""


def test_a_fresh_import_creates_no_client_and_no_xray_sdk_when_tracing_is_off() -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    done = subprocess.run(
        [sys.executable, "-c", IMPORT],
        env=env,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert report == {"created": [], "xray": [], "traced": False}


def test_the_handler_answers_a_create_over_https_without_polling_clients(
    quiet: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUNA_HA_RESPONSE_MARGIN_SECONDS", "5")
    created = record_clients(monkeypatch)
    with (
        served_lab(1) as (appliances, _),
        LocalCloudFormation(build_handler(), timeout_seconds=120, environment_factory=build_handler) as cfn,
    ):
        operation = LocalStack(cfn).create("Group", group_properties(appliances, clients={"web": 0}))

    assert operation.succeeded, operation.describe()
    response = operation.exchanges[-1].response
    assert response is not None
    assert response.physical_resource_id.startswith("luna-ha/luna-ha-demo/Group/payments/")
    assert response.data["Members"] == appliances[0].host
    assert created, "the Create used AWS (Secrets Manager, SSM)"
    assert not POLLING_CLIENTS & set(created), created


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"LAMBDA_TASK_ROOT": "/var/task"},
        {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"},
        {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "1"},
        {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "false"},
        {"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"},
        {"LAMBDA_TASK_ROOT": "/var/task", "AWS_CHALICE_CLI_MODE": "true"},
        {"POWERTOOLS_TRACE_DISABLED": "false"},
    ],
)
def test_the_function_traces_exactly_where_powertools_would(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_lambda_powertools import Tracer

    from luna_ha.app import _tracing

    for name in ("LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    # powertools' own rule (private; if it changes, this test says so before the function drifts)
    assert _tracing() is not bool(Tracer._is_tracer_disabled())
