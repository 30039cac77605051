"""The pure parts of the ``luna-ha`` CLI: exit statuses, the ``--output json`` document, AWS setup
messages, the parser's shape. tests/functional/test_cli.py runs the commands for real."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from luna_ha import cli
from luna_ha.awsenv import NO_CREDENTIALS, NO_REGION, check_aws_setup, describe, honour_aws_region
from luna_ha.drift import Drift, Kind
from luna_ha.engine import ApplianceReport, RunReport
from luna_ha.errors import ApplianceError, SetupError
from luna_ha.planner import Action, Step
from luna_ha.spec import GroupSpec, parse_properties

FINGERPRINT = "SHA256:" + "A" * 43


def spec(appliances: int = 2) -> GroupSpec:
    return parse_properties(
        {
            "GroupLabel": "payments-ha",
            "PartitionName": "payments",
            "AdminSecretArn": "luna/admin",
            "PartitionSecretArn": "luna/partition",
            "Appliances": [
                {"Host": f"10.0.1.{10 + i}", "HostKeyFingerprint": FINGERPRINT, "ManagerSecretArn": "luna/m"}
                for i in range(appliances)
            ],
            "Clients": [{"Name": "web", "Rotation": 0}],
        }
    )


STEP = Step(next(iter(Action)), "payments")


def report(operation: str, *appliances: ApplianceReport, **fields: object) -> RunReport:
    return RunReport(operation, list(appliances), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("run", "status"),
    [
        (report("plan", ApplianceReport("a"), ApplianceReport("b")), cli.EXIT_OK),
        (report("plan", ApplianceReport("a"), ApplianceReport("b", planned=(STEP,))), cli.EXIT_CHANGES),
        (
            report(
                "plan",
                ApplianceReport("a", planned=(STEP,)),
                ApplianceReport("b", error=ApplianceError("b", "connect", "refused")),
            ),
            cli.EXIT_FAILED,
        ),
        (report("plan", ApplianceReport("a", error=ApplianceError("a", "connect", "x"))), cli.EXIT_FAILED),
        (report("apply", ApplianceReport("a", done=[STEP])), cli.EXIT_OK),
        (report("apply", ApplianceReport("a", planned=(STEP,), done=[STEP])), cli.EXIT_OK),
        (report("destroy", ApplianceReport("a", error=ApplianceError("a", "s", "x"))), cli.EXIT_FAILED),
        # Parameter Store changes alone are changes pending (the group document deleted by hand)
        (report("plan", ApplianceReport("a"), parameters_to_put=("/p/group",)), cli.EXIT_CHANGES),
        (report("plan", ApplianceReport("a"), parameters_to_delete=("/p/x",)), cli.EXIT_CHANGES),
    ],
)
def test_exit_status(run: RunReport, status: int) -> None:
    assert cli.exit_status(run) == status


DRIFT = Drift(Kind.REGISTRATION_MISSING, "10.0.1.10", "web-abcdef-r0")
FAILED = ApplianceError("a", "connect", "refused")


@pytest.mark.parametrize(
    ("run", "drift", "status"),
    [
        (report("status", ApplianceReport("a")), (), cli.EXIT_OK),
        (report("status", ApplianceReport("a")), (DRIFT,), cli.EXIT_CHANGES),
        (report("status", ApplianceReport("a", error=FAILED)), (), cli.EXIT_FAILED),
        (
            report("status", ApplianceReport("a", error=ApplianceError("a", "c", "x"))),
            (DRIFT,),
            cli.EXIT_FAILED,
        ),
    ],
)
def test_exit_status_of_status(run: RunReport, drift: tuple[Drift, ...], status: int) -> None:
    assert cli.exit_status(run, drift) == status


def test_json_document_of_a_status_names_each_difference() -> None:
    run = report("status", ApplianceReport("10.0.1.10"), parameters_to_put=("/luna-ha/payments/group",))

    document = json.loads(json.dumps(cli.report_document(run, spec(), "luna-ha-cli/payments", (DRIFT,))))

    assert set(document) == SCHEMA_KEYS
    assert document["operation"] == "status" and document["changes_pending"] is None
    assert document["in_sync"] is False
    assert document["drift"] == [
        {"kind": "registration_missing", "subject": "10.0.1.10", "detail": "web-abcdef-r0"}
    ]
    assert document["parameters_planned"] == {"put": ["/luna-ha/payments/group"], "delete": []}
    in_sync = cli.report_document(report("status", ApplianceReport("a")), spec(), "x", ())
    assert in_sync["in_sync"] is True and in_sync["drift"] == []


def test_exit_statuses_are_distinct_and_usage_keeps_argparses_two() -> None:
    statuses = [cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_CHANGES]
    assert statuses == [0, 1, 2, 3]


SCHEMA_KEYS = {
    "schema",
    "version",
    "operation",
    "ok",
    "changes_pending",
    "changed",
    "group",
    "seconds",
    "appliances",
    "parameters",
    "parameters_planned",
    "in_sync",
    "drift",
    "data",
    "warnings",
}
APPLIANCE_KEYS = {
    "host",
    "role",
    "software",
    "ok",
    "error",
    "skipped",
    "planned",
    "done",
    "partition_serial",
    "commands",
    "mutating",
    "seconds",
}


def test_json_document_of_a_plan() -> None:
    run = report(
        "plan",
        ApplianceReport("10.0.1.10", planned=(STEP,), commands=4),
        ApplianceReport("10.0.1.11", leaving=True, error=ApplianceError("10.0.1.11", "connect", "refused")),
        seconds=1.23456,
    )

    document = json.loads(json.dumps(cli.report_document(run, spec(), "luna-ha-cli/payments")))

    assert set(document) == SCHEMA_KEYS
    assert document["schema"] == 1
    assert document["version"] == importlib.metadata.version("luna-ha")
    assert (document["operation"], document["ok"], document["changes_pending"], document["changed"]) == (
        "plan",
        False,
        True,
        False,
    )
    assert document["group"] == {
        "label": "payments-ha",
        "partition": "payments",
        "parameter_path": "/luna-ha/payments",
        "id": "luna-ha-cli/payments",
    }
    assert document["seconds"] == 1.235
    first, second = document["appliances"]
    assert set(first) == set(second) == APPLIANCE_KEYS
    assert first["planned"] == [str(STEP)] and first["done"] == [] and first["error"] is None
    assert first["role"] == "member" and first["commands"] == 4
    assert first["software"] is None  # not observed: the report has no appliance state
    assert second["role"] == "leaving" and second["ok"] is False
    assert second["error"] == "Appliance 10.0.1.11, step 'connect': refused"
    assert document["parameters"] == {"written": [], "deleted": []}
    assert document["parameters_planned"] is None  # an appliance failed: apply would publish nothing
    assert document["in_sync"] is None and document["drift"] is None  # status only
    assert document["data"] == {} and document["warnings"] == []


def test_json_document_of_an_apply_says_what_changed() -> None:
    unchanged = report("apply", ApplianceReport("10.0.1.10"), ApplianceReport("10.0.1.11"))
    run = report(
        "apply",
        ApplianceReport("10.0.1.10", done=[STEP], partition_serial="1234", server_cert="PEM"),
        parameters_put=("/luna-ha/payments/group",),
        data={"PartitionSerials": "1234"},
    )

    quiet = cli.report_document(unchanged, spec(), "id")
    document = cli.report_document(run, spec(1), "id")

    assert (quiet["changed"], quiet["changes_pending"]) == (False, None)
    assert (document["changed"], document["changes_pending"], document["ok"]) == (True, None, True)
    assert document["appliances"][0]["partition_serial"] == "1234"
    assert "PEM" not in json.dumps(document)  # the server certificate is in Parameter Store, not here
    assert document["parameters"]["written"] == ["/luna-ha/payments/group"]
    assert document["data"] == {"PartitionSerials": "1234"}
    assert document["warnings"] == list(spec(1).warnings) and document["warnings"]


def test_honour_aws_region_makes_it_the_region_boto3_reads() -> None:
    alone = {"AWS_REGION": "eu-west-1"}
    both = {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-1"}
    default_only = {"AWS_DEFAULT_REGION": "us-east-1"}
    empty = {"AWS_REGION": " "}

    for env in (alone, both, default_only, empty):
        honour_aws_region(env)

    assert alone["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert both["AWS_DEFAULT_REGION"] == "eu-west-1"  # AWS_REGION first, as in the AWS CLI v2
    assert default_only == {"AWS_DEFAULT_REGION": "us-east-1"}
    assert "AWS_DEFAULT_REGION" not in empty


def test_botocore_setup_errors_are_one_line() -> None:
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, NoRegionError

    assert describe(NoRegionError()) == NO_REGION
    assert describe(NoCredentialsError()) == NO_CREDENTIALS
    unreachable = describe(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert unreachable.startswith("AWS: ") and "127.0.0.1:1" in unreachable
    for text in (NO_REGION, NO_CREDENTIALS):
        assert "\n" not in text and "AWS_" in text


@pytest.fixture
def no_aws_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Nothing boto3 could find a region or credentials in, and no instance metadata to ask."""
    for name in (
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("BOTO_CONFIG", str(tmp_path / "no-boto"))
    return monkeypatch


def test_check_aws_setup_names_the_missing_region_then_the_missing_credentials(
    no_aws_configuration: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SetupError, match="no AWS region"):
        check_aws_setup()
    no_aws_configuration.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with pytest.raises(SetupError, match="no AWS credentials"):
        check_aws_setup()
    no_aws_configuration.setenv("AWS_ACCESS_KEY_ID", "testing")
    no_aws_configuration.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    check_aws_setup()


def test_check_aws_setup_names_a_profile_that_does_not_exist(
    no_aws_configuration: pytest.MonkeyPatch,
) -> None:
    no_aws_configuration.setenv("AWS_PROFILE", "nowhere")

    with pytest.raises(SetupError, match=r"^AWS: .*nowhere"):
        check_aws_setup()


def test_version_option_prints_the_distributions_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"luna-ha {importlib.metadata.version('luna-ha')}\n"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "required"),
        (["client"], "{bootstrap}"),
        (["client", "foo"], "invalid choice: 'foo'"),
        (["plan"], "-c/--config"),
        (["plan", "-c", "g.yaml", "--output", "xml"], "invalid choice: 'xml'"),
        (["apply", "-c", "g.yaml", "--yes"], "unrecognized arguments: --yes"),
    ],
)
def test_usage_errors_exit_2_with_usage_and_no_traceback(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: luna-ha") and says in err
    assert "Traceback" not in err


def test_client_help_reveals_bootstrap(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["client", "--help"]) == 0
    out = capsys.readouterr().out
    assert "bootstrap" in out and "configure this Luna client" in out


def test_demo_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out
    assert "\n  - three simulated Luna SA appliances" in out  # a list stays a list
    assert "pip install 'luna-ha[demo]'" in out
    assert "--dialect {5.1,5.4,6.2,7.2,7.8,7.x}" in out, "the software of 'luna-ha simulate'"


def test_help_documents_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["plan", "--help"]):
        assert cli.main(argv) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "3 plan: changes pending" in out and "2 usage error" in out
