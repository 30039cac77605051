"""Template tier: the SAM provider, its dependency layer and the example group stack.

Fast checks (no SAM CLI): cfn-lint on both templates, and the contracts read from the templates
with cfn-lint's CloudFormation-aware loader (IAM scope, retries, ordering, the resource's
properties validated by ``luna_ha.spec``).

Slow checks (marked ``slow``; need the SAM CLI that ``make test`` installs in ``.venv-sam``):
``sam validate --lint`` on both templates and one ``sam build`` of the provider per architecture,
shared by every test of the session: what the function and the layer ship, their CPython 3.13
bytecode, and ``import luna_ha.app`` from the build alone. Where SAM is not installed they fail, unless
``LUNA_HA_SKIP_SAM=1`` says to skip them; CI runs ``make test``, which installs SAM first.
Everything stays on this machine: dummy AWS credentials, no telemetry, no version check.
"""

from __future__ import annotations

import _imp
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file
from cfnlint.decode import decode
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from luna_ha.rest import certificate_fingerprint
from luna_ha.spec import parse_properties

REPO = Path(__file__).resolve().parents[2]
PROVIDER = REPO / "templates" / "provider.yaml"
EXAMPLE = REPO / "templates" / "example-group.yaml"
LAYER_DIR = REPO / "layers" / "deps"
FUNCTION_DIR = REPO / "functions"
TEMPLATES = [PROVIDER, EXAMPLE]
SKIP_SAM = "LUNA_HA_SKIP_SAM"

# ELF e_machine values of the two Lambda architectures.
ELF_MACHINE = {"aarch64": 0xB7, "x86_64": 0x3E}
WHEEL_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}
# The bytecode both builds ship: CPython 3.13's magic number (importlib.util.MAGIC_NUMBER of any
# 3.13), and the flags of an unchecked-hash .pyc (hash-based, source never checked).
MAGIC_313 = (3571).to_bytes(2, "little") + b"\r\n"
UNCHECKED_HASH = 0b01
# What the function ships of luna_ha: all but what only the CLI, the demo and the tests import.
NOT_SHIPPED = ("sim", "client", "cli.py", "demo.py", "awsenv.py")
# What the Lambda runtime provides besides the standard library (boto3 and its dependencies).
RUNTIME_PACKAGES = {"boto3", "botocore", "s3transfer", "urllib3", "dateutil", "six", "jmespath"}


# ---------------------------------------------------------------------------------------------
# Loading templates


def load(path: Path) -> dict[str, Any]:
    template, matches = decode(str(path))
    assert not matches, [str(m) for m in matches]
    assert template is not None
    return dict(template)


@pytest.fixture(scope="module")
def provider() -> dict[str, Any]:
    return load(PROVIDER)


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    return load(EXAMPLE)


def resources_of(template: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def statements(policy_document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every statement, both branches of an ``Fn::If`` included (``AWS::NoValue`` left out)."""
    for item in policy_document["Statement"]:
        branches = item["Fn::If"][1:] if "Fn::If" in item else [item]
        for branch in branches:
            if branch != {"Ref": "AWS::NoValue"}:
                yield branch


def inline_statements(role: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [s for p in role["Properties"]["Policies"] for s in statements(p["PolicyDocument"])]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def sub_text(value: Any) -> str:
    """The text of a ``Fn::Sub`` resource (the only form of string ARN these templates use)."""
    assert isinstance(value, dict) and set(value) == {"Fn::Sub"}, value
    text = value["Fn::Sub"]
    assert isinstance(text, str), value
    return text


# ---------------------------------------------------------------------------------------------
# cfn-lint


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_clean(template: Path) -> None:
    # No rule is ignored, here or in the templates' Metadata.
    matches = lint_file(template, ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [str(m) for m in matches] == []


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_no_lint_suppressions(template: Path) -> None:
    assert "cfn-lint" not in template.read_text(), "a suppression needs a comment, and this test updated"


# ---------------------------------------------------------------------------------------------
# Provider: function, layer, network


def test_function_contract(provider: dict[str, Any]) -> None:
    functions = resources_of(provider, "AWS::Serverless::Function")
    assert list(functions) == ["Function"]
    props = functions["Function"]["Properties"]
    assert props["Runtime"] == "python3.13"
    assert props["Handler"] == "luna_ha.app.handler"
    assert (PROVIDER.parent / props["CodeUri"]).resolve() == FUNCTION_DIR
    assert (FUNCTION_DIR / "luna_ha" / "__init__.py").is_file()
    # functions/Makefile: luna_ha without what Lambda never imports, with its bytecode.
    assert functions["Function"]["Metadata"]["BuildMethod"] == "makefile"
    assert "build-Function:" in (FUNCTION_DIR / "Makefile").read_text()
    assert props["MemorySize"] == {"Ref": "FunctionMemorySize"}
    assert provider["Parameters"]["FunctionMemorySize"]["Default"] == 1769  # one vCPU
    assert props["Tracing"] == "Active"
    assert props["Architectures"] == [{"Ref": "Architecture"}]
    assert props["Timeout"] == {"Ref": "FunctionTimeout"}
    params = provider["Parameters"]
    assert params["Architecture"]["Default"] == "arm64"
    assert sorted(params["Architecture"]["AllowedValues"]) == ["arm64", "x86_64"]
    assert int(params["FunctionTimeout"]["Default"]) == 900
    assert props["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "luna-ha",
        "POWERTOOLS_METRICS_NAMESPACE": "LunaHA",
        "LOG_LEVEL": "INFO",
        "LUNA_HA_RESPONSE_MARGIN_SECONDS": "30",
        "LUNA_HA_PARAMETER_PREFIX": {"Ref": "ParameterPathPrefix"},
        "LUNA_HA_TABLE": {"Ref": "CoordinationTable"},
    }
    assert props["Layers"] == [{"Ref": "DepsLayer"}]
    assert props["Role"] == {"Fn::GetAtt": ["FunctionRole", "Arn"]}
    assert props["VpcConfig"] == {
        "SubnetIds": {"Ref": "SubnetIds"},
        "SecurityGroupIds": [{"Ref": "FunctionSecurityGroup"}],
    }
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": "FunctionLogGroup"}}
    log_group = provider["Resources"]["FunctionLogGroup"]
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert int(params["LogRetentionDays"]["Default"]) == 90


def test_layer_is_a_makefile_build_for_the_function_architecture(provider: dict[str, Any]) -> None:
    layer = provider["Resources"]["DepsLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Metadata"]["BuildArchitecture"] == {"Ref": "Architecture"}
    props = layer["Properties"]
    assert (PROVIDER.parent / props["ContentUri"]).resolve() == LAYER_DIR
    assert props["CompatibleRuntimes"] == ["python3.13"]
    assert props["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
    assert "build-DepsLayer:" in (LAYER_DIR / "Makefile").read_text()


def test_layer_requirements_pinned_and_consistent_with_the_project() -> None:
    pins: dict[str, str] = {}
    for line in (LAYER_DIR / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"unpinned layer requirement: {line}"
            pins[name.lower().replace("_", "-")] = version
    # The runtime provides boto3; a copy (or a botocore without its boto3) would shadow it.
    assert not {"boto3", "botocore", "s3transfer", "urllib3"} & set(pins)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = requirement.name.lower().replace("_", "-")
        if name == "boto3":
            continue
        assert name in pins, f"{name} is a dependency of luna-ha but not in the layer"
        assert requirement.specifier.contains(pins[name]), f"layer pins {name}=={pins[name]}, not {spec}"
    assert pins["paramiko"].startswith("4."), "paramiko 4.x (see pyproject.toml)"


PROVIDER_VALUES = {
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": "subnet-0123456789abcdef0",
    "ApplianceCidr": "10.0.1.0/24",
    "SecretArns": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:luna/admin-??????",
}


def function_egress(provider: Mapping[str, Any], **values: str) -> set[tuple[str, str, str, str]]:
    """The function's egress rules as CloudFormation makes them from these parameter values."""
    resolver = Resolver(provider, {**PROVIDER_VALUES, **values})
    group = resolver.evaluate(provider["Resources"]["FunctionSecurityGroup"]["Properties"])
    assert "SecurityGroupIngress" not in group
    assert all(rule.get("Description") for rule in group["SecurityGroupEgress"]), group
    return {(r["IpProtocol"], r["FromPort"], r["ToPort"], r["CidrIp"]) for r in group["SecurityGroupEgress"]}


def test_function_security_group_egress_only_ssh_to_appliances_and_https(provider: dict[str, Any]) -> None:
    assert function_egress(provider) == {
        ("tcp", "22", "22", "10.0.1.0/24"),
        ("tcp", "443", "443", "0.0.0.0/0"),
    }
    assert function_egress(provider, ApplianceSshPort="2222", ApplianceCidr="10.9.0.0/16") == {
        ("tcp", "2222", "2222", "10.9.0.0/16"),
        ("tcp", "443", "443", "0.0.0.0/0"),
    }


def test_function_opens_the_luna7_rest_port_to_the_appliances_only_when_enabled(
    provider: dict[str, Any],
) -> None:
    # 0 (the default) adds nothing: a Luna SA 5.x/6.x provider keeps exactly its rules.
    assert int(provider["Parameters"]["ApplianceRestPort"]["Default"]) == 0
    assert ("tcp", "8443", "8443", "10.0.1.0/24") not in function_egress(provider)
    # Enabled, the REST port opens where SSH does, and nowhere else.
    assert function_egress(provider, ApplianceRestPort="8443") == {
        ("tcp", "22", "22", "10.0.1.0/24"),
        ("tcp", "8443", "8443", "10.0.1.0/24"),
        ("tcp", "443", "443", "0.0.0.0/0"),
    }
    assert function_egress(provider, ApplianceRestPort="9443", ApplianceCidr="10.9.0.0/16") == {
        ("tcp", "22", "22", "10.9.0.0/16"),
        ("tcp", "9443", "9443", "10.9.0.0/16"),
        ("tcp", "443", "443", "0.0.0.0/0"),
    }


def test_vpc_endpoints_are_optional(provider: dict[str, Any]) -> None:
    endpoints = resources_of(provider, "AWS::EC2::VPCEndpoint")
    services = {sub_text(e["Properties"]["ServiceName"]).rsplit(".", 1)[1]: e for e in endpoints.values()}
    assert set(services) == {"s3", "dynamodb", "secretsmanager", "ssm", "kms"}
    gateways = ("s3", "dynamodb")
    for name, endpoint in services.items():
        assert "Condition" in endpoint, name
        if name in gateways:
            assert endpoint["Properties"]["VpcEndpointType"] == "Gateway"
            assert endpoint["Properties"]["RouteTableIds"] == {"Ref": "RouteTableIds"}
        else:
            assert endpoint["Properties"]["PrivateDnsEnabled"] is True
            assert endpoint["Properties"]["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}]
    assert provider["Parameters"]["CreateVpcEndpoints"]["Default"] == "false"
    ingress = provider["Resources"]["EndpointSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [r["SourceSecurityGroupId"] for r in ingress] == [{"Ref": "FunctionSecurityGroup"}]


def test_the_coordination_table_is_encrypted_recoverable_and_kept(provider: dict[str, Any]) -> None:
    (table,) = resources_of(provider, "AWS::DynamoDB::Table").values()
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"
    assert "TableName" not in props  # one provider per stack name, not per region
    assert provider["Outputs"]["CoordinationTableName"]["Value"] == {"Ref": "CoordinationTable"}


def test_event_invoke_config_never_retries(provider: dict[str, Any]) -> None:
    configs = resources_of(provider, "AWS::Lambda::EventInvokeConfig")
    assert len(configs) == 1
    (config,) = configs.values()
    assert config["Properties"]["FunctionName"] == {"Ref": "Function"}
    assert config["Properties"]["Qualifier"] == "$LATEST"
    assert config["Properties"]["MaximumRetryAttempts"] == 0


def test_service_token_is_exported_under_the_stack_name_and_the_old_name_while_asked(
    provider: dict[str, Any],
) -> None:
    outputs = {name: o for name, o in provider["Outputs"].items() if o.get("Export")}
    assert {name: o["Export"]["Name"] for name, o in outputs.items()} == {
        "ProviderArn": {"Fn::Sub": "${AWS::StackName}-ProviderArn"},  # one provider per stack
        "LegacyProviderArn": "LunaHAProviderArn",  # for group stacks that still import it
    }
    assert all(o["Value"] == {"Fn::GetAtt": ["Function", "Arn"]} for o in outputs.values())
    assert "Condition" not in outputs["ProviderArn"]
    assert outputs["LegacyProviderArn"]["Condition"] == "ExportLegacyName"
    assert provider["Conditions"]["ExportLegacyName"] == {"Fn::Equals": [{"Ref": "LegacyExport"}, "true"]}
    # On for this release, so that updating the provider breaks no group stack (README: the migration).
    assert provider["Parameters"]["LegacyExport"]["Default"] == "true"


def test_alarms_on_the_functions_errors_and_on_failed_operations(provider: dict[str, Any]) -> None:
    alarms = resources_of(provider, "AWS::CloudWatch::Alarm")
    by_metric = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]): a for a in alarms.values()}
    assert set(by_metric) == {("AWS/Lambda", "Errors"), ("LunaHA", "Failures")}
    errors = by_metric["AWS/Lambda", "Errors"]["Properties"]
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "Function"}}]
    failures = by_metric["LunaHA", "Failures"]["Properties"]
    # What the function emits: powertools' namespace and service dimension, the metric app.py adds.
    variables = provider["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
    assert failures["Namespace"] == variables["POWERTOOLS_METRICS_NAMESPACE"]
    assert failures["Dimensions"] == [{"Name": "service", "Value": variables["POWERTOOLS_SERVICE_NAME"]}]
    assert 'add_metric(name="Failures"' in (FUNCTION_DIR / "luna_ha" / "app.py").read_text()
    topic = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for alarm in (errors, failures):
        assert (alarm["Statistic"], alarm["Period"], alarm["Threshold"]) == ("Sum", 60, 1)
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == alarm["OKActions"] == topic
    assert provider["Parameters"]["AlarmTopicArn"]["Default"] == ""


# ---------------------------------------------------------------------------------------------
# Provider: IAM scope


def test_provider_role_is_least_privilege(provider: dict[str, Any]) -> None:
    role = provider["Resources"]["FunctionRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    managed = sorted(sub_text(arn).rsplit("/", 1)[1] for arn in role["ManagedPolicyArns"])
    assert managed == ["AWSLambdaVPCAccessExecutionRole", "AWSXRayDaemonWriteAccess"]

    by_service: dict[str, list[dict[str, Any]]] = {}
    for statement in inline_statements(provider["Resources"]["FunctionRole"]):
        assert statement["Effect"] == "Allow"
        assert "NotResource" not in statement and "NotAction" not in statement
        actions = as_list(statement["Action"])
        services = {a.split(":", 1)[0] for a in actions}
        assert len(services) == 1, actions
        assert not any("*" in a for a in actions), actions
        if actions != ["secretsmanager:BatchGetSecretValue"]:  # no resource type: "*" is the only one
            assert "*" not in as_list(statement["Resource"]), statement
        by_service.setdefault(services.pop(), []).append(statement)
    assert set(by_service) == {"secretsmanager", "ssm", "kms", "dynamodb"}

    # Single items of the coordination table, and nothing that lists it.
    (dynamodb,) = by_service["dynamodb"]
    assert set(dynamodb["Action"]) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    }
    assert dynamodb["Resource"] == {"Fn::GetAtt": ["CoordinationTable", "Arn"]}

    # Values only of the listed secrets: the batch call returns just what GetSecretValue allows.
    secrets, batch = by_service["secretsmanager"]
    assert as_list(secrets["Action"]) == ["secretsmanager:GetSecretValue"]
    assert secrets["Resource"] == {"Ref": "SecretArns"}
    assert as_list(batch["Action"]) == ["secretsmanager:BatchGetSecretValue"]
    assert "Condition" not in batch and "Condition" not in secrets

    (ssm,) = by_service["ssm"]
    assert set(ssm["Action"]) == {
        "ssm:GetParametersByPath",
        "ssm:GetParameter",
        "ssm:GetParameters",
        "ssm:PutParameter",
        "ssm:DeleteParameter",
        "ssm:DeleteParameters",
        "ssm:AddTagsToResource",
    }
    head = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${ParameterPathPrefix}"
    # The prefix and what is under it; never a string prefix (`/luna-ha*` would match /luna-ha2).
    assert sorted(sub_text(r) for r in ssm["Resource"]) == [head, head + "/*"]
    assert provider["Parameters"]["ParameterPathPrefix"]["Default"] == "/luna-ha"

    for kms in by_service["kms"]:
        assert set(as_list(kms["Action"])) <= {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"}
        assert kms["Resource"] in ({"Ref": "KmsKeyArn"}, {"Ref": "SecretsKmsKeyArn"})
        via = kms["Condition"]["StringEquals"]["kms:ViaService"]
        assert sub_text(via) in (
            "ssm.${AWS::Region}.amazonaws.com",
            "secretsmanager.${AWS::Region}.amazonaws.com",
        )
    ssm_key = [k for k in by_service["kms"] if k["Resource"] == {"Ref": "KmsKeyArn"}]
    assert len(ssm_key) == 1
    assert set(ssm_key[0]["Action"]) == {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"}
    assert sub_text(ssm_key[0]["Condition"]["StringEquals"]["kms:ViaService"]).startswith("ssm.")


def allowed(template: Mapping[str, Any], parameter: str, value: str) -> bool:
    pattern = template["Parameters"][parameter]["AllowedPattern"]
    return re.fullmatch(pattern, value) is not None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:luna/admin-??????", True),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:luna/admin-AbCdEf", True),
        ("arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:luna/hsm-a-??????", True),
        ("*", False),
        ("arn:aws:secretsmanager:*:*:secret:*", False),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:*", False),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:luna/*", False),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:luna-?", False),
    ],
)
def test_secret_arns_parameter_admits_no_wildcard_but_the_suffix(
    provider: dict[str, Any], value: str, ok: bool
) -> None:
    # CloudFormation applies a CommaDelimitedList's AllowedPattern to each element.
    assert provider["Parameters"]["SecretArns"]["Type"] == "CommaDelimitedList"
    assert allowed(provider, "SecretArns", value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("/luna-ha", True), ("/org/luna-ha", True), ("/luna-ha/", False), ("/", False), ("*", False)],
)
def test_parameter_path_prefix_pattern(provider: dict[str, Any], value: str, ok: bool) -> None:
    assert allowed(provider, "ParameterPathPrefix", value) is ok


# ---------------------------------------------------------------------------------------------
# Example group stack


def test_example_group_resource(example: dict[str, Any]) -> None:
    groups = resources_of(example, "Custom::LunaHAGroup")
    assert list(groups) == ["Group"]
    props = groups["Group"]["Properties"]
    assert props["ServiceToken"] == {"Fn::ImportValue": {"Fn::Sub": "${ProviderStackName}-ProviderArn"}}
    # The default is the provider's stack name in samconfig.toml.
    samconfig = tomllib.loads((REPO / "samconfig.toml").read_text())
    stack_name = samconfig["default"]["global"]["parameters"]["stack_name"]
    assert example["Parameters"]["ProviderStackName"]["Default"] == stack_name
    assert {
        "GroupLabel",
        "PartitionName",
        "AdminSecretArn",
        "PartitionSecretArn",
        "Appliances",
        "Clients",
        "ParameterPath",
        "KmsKeyId",
        "PartitionDeletionPolicy",
    } <= set(props)
    for appliance in props["Appliances"]:
        assert {
            "Host",
            "Port",
            "HostKey",
            "HostKeyFingerprint",
            "ManagerSecretArn",
            "Initialize",
            "HsmLabel",
        } <= set(appliance)
    outputs = {name: o["Value"] for name, o in example["Outputs"].items()}
    for attribute in ("PartitionSerials", "HAGroupSerial", "ParameterPath", "ClientRegistrations"):
        assert outputs[attribute] == {"Fn::GetAtt": ["Group", attribute]}


class _NoValue:
    pass


NO_VALUE = _NoValue()


class Resolver:
    """Just enough of CloudFormation to evaluate the example's Group properties."""

    def __init__(self, template: Mapping[str, Any], values: Mapping[str, str]) -> None:
        self.template = template
        self.values = {
            name: str(values.get(name, p.get("Default", ""))) for name, p in template["Parameters"].items()
        }
        missing = [
            n for n, v in self.values.items() if v == "" and "Default" not in template["Parameters"][n]
        ]
        assert not missing, f"no value for {missing}"

    def condition(self, name: str) -> bool:
        return bool(self.evaluate(self.template["Conditions"][name]))

    def evaluate(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.evaluate(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return str(node).lower() if isinstance(node, bool) else str(node)  # CloudFormation stringifies
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self.values[arg]
            if key == "Fn::If":
                return self.evaluate(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                return self.evaluate(arg[0]) == self.evaluate(arg[1])
            if key == "Fn::Not":
                return not self.evaluate(arg[0])
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::ImportValue":
                return f"arn:aws:lambda:eu-west-1:123456789012:function:{arg}"
        result = {k: self.evaluate(v) for k, v in node.items()}
        return {k: v for k, v in result.items() if v is not NO_VALUE}


def host_key() -> str:
    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:luna/{}-AbCdEf"
EXAMPLE_VALUES = {
    "AdminSecretArn": SECRET.format("admin"),
    "PartitionSecretArn": SECRET.format("partition"),
    "Appliance1Host": "10.0.1.10",
    "Appliance1HostKey": host_key(),
    "Appliance1ManagerSecretArn": SECRET.format("hsm-a"),
    "Appliance2Host": "hsm-b.example.internal",
    "Appliance2Port": "2222",
    "Appliance2HostKeyFingerprint": "SHA256:" + "A" * 43,
    "Appliance2ManagerSecretArn": SECRET.format("hsm-b"),
    "Appliance2Initialize": "true",
    "Appliance2HsmLabel": "hsm-b",
    "ImageId": "ami-0123456789abcdef0",
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": "subnet-0123456789abcdef0",
    "ApplianceCidr": "10.0.1.0/24",
}


def test_example_properties_are_a_valid_group(example: dict[str, Any]) -> None:
    for name, value in EXAMPLE_VALUES.items():
        pattern = example["Parameters"][name].get("AllowedPattern")
        assert pattern is None or re.fullmatch(pattern, value), (name, value)
    props = Resolver(example, EXAMPLE_VALUES).evaluate(example["Resources"]["Group"]["Properties"])
    spec = parse_properties(props)
    assert spec.group_label == "payments-ha"
    assert spec.parameter_path == "/luna-ha/payments"
    assert spec.kms_key_id is None
    assert spec.partition_deletion_policy == "Retain"
    first, second = spec.appliances
    assert (first.port, first.host_key, first.host_key_fingerprint) == (
        22,
        EXAMPLE_VALUES["Appliance1HostKey"],
        None,
    )
    assert (second.port, second.host_key, second.initialize, second.hsm_label) == (2222, None, True, "hsm-b")
    assert [(c.name, c.rotation) for c in spec.clients] == [("web", 0)]

    values = dict(
        EXAMPLE_VALUES,
        ParameterPath="/luna-ha/pay",
        KmsKeyArn=("arn:aws:kms:eu-west-1:123456789012:key/0b0c0d0e-1111-2222-3333-444455556666"),
        ClientRotation="3",
        PartitionDeletionPolicy="Delete",
    )
    spec = parse_properties(Resolver(example, values).evaluate(example["Resources"]["Group"]["Properties"]))
    assert (spec.parameter_path, spec.kms_key_id) == ("/luna-ha/pay", values["KmsKeyArn"])
    assert (spec.clients[0].rotation, spec.partition_deletion_policy) == (3, "Delete")


def test_example_passes_the_rest_pin_and_port_only_when_given(example: dict[str, Any]) -> None:
    group = example["Resources"]["Group"]["Properties"]
    # A Luna SA pair: no REST property reaches the provider.
    for appliance in Resolver(example, EXAMPLE_VALUES).evaluate(group)["Appliances"]:
        assert not {"RestCertificateFingerprint", "RestPort"} & set(appliance)
    spec = parse_properties(Resolver(example, EXAMPLE_VALUES).evaluate(group))
    assert [a.rest_certificate_fingerprint for a in spec.appliances] == [None, None]

    # A Luna 7 pair: each appliance's pin, and its port (the REST service's default unless given).
    first_pin, second_pin = (certificate_fingerprint(der) for der in (b"first der", b"second der"))
    values = dict(
        EXAMPLE_VALUES,
        Appliance1RestCertificateFingerprint=first_pin,
        Appliance2RestCertificateFingerprint=second_pin,
        Appliance2RestPort="9443",
    )
    for name in ("Appliance1RestCertificateFingerprint", "Appliance2RestCertificateFingerprint"):
        assert re.fullmatch(example["Parameters"][name]["AllowedPattern"], values[name]), name
    first, second = parse_properties(Resolver(example, values).evaluate(group)).appliances
    assert (first.rest_certificate_fingerprint, first.rest_port) == (first_pin, 8443)
    assert (second.rest_certificate_fingerprint, second.rest_port) == (second_pin, 9443)

    # A port without a pin is not passed (the provider would refuse it: REST is always pinned).
    only_port = dict(EXAMPLE_VALUES, Appliance1RestPort="9443")
    first, _ = parse_properties(Resolver(example, only_port).evaluate(group)).appliances
    assert first.rest_certificate_fingerprint is None


def test_example_auto_scaling_group_after_the_group(example: dict[str, Any]) -> None:
    (name, asg) = next(iter(resources_of(example, "AWS::AutoScaling::AutoScalingGroup").items()))
    # Created after the group and, the reverse of creation, deleted before it.
    assert "Group" in as_list(asg.get("DependsOn", []))
    template = example["Resources"][asg["Properties"]["LaunchTemplate"]["LaunchTemplateId"]["Ref"]]
    data = template["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    user_data = sub_text(data["UserData"]["Fn::Base64"])
    assert user_data.startswith("#!/bin/bash\n")
    assert (
        "luna-ha client bootstrap --parameter-path '${Group.ParameterPath}' --client '${ClientName}'"
        in user_data
    )
    assert not re.search(r"\b(pip|yum|dnf|apt-get|curl|wget)\b", user_data), "the AMI carries the software"
    assert example["Parameters"]["ImageId"]["Type"] == "AWS::EC2::Image::Id", name


def test_example_member_role_reads_only_its_group(example: dict[str, Any]) -> None:
    role = example["Resources"]["MemberRole"]
    assert "ManagedPolicyArns" not in role["Properties"]
    principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": "ec2.amazonaws.com"}
    head = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${Group.ParameterPath}"
    seen = set()
    for statement in inline_statements(role):
        actions = set(as_list(statement["Action"]))
        resources = as_list(statement["Resource"])
        assert "*" not in resources and not any("*" in a for a in actions), statement
        service = {a.split(":", 1)[0] for a in actions}
        assert len(service) == 1
        seen |= service
        if service == {"ssm"}:
            assert actions <= {"ssm:GetParametersByPath", "ssm:GetParameter", "ssm:GetParameters"}
            assert {"ssm:GetParametersByPath", "ssm:GetParameter"} <= actions
            assert sorted(sub_text(r) for r in resources) == [head, head + "/*"]
        elif service == {"secretsmanager"}:
            assert actions == {"secretsmanager:GetSecretValue"}
            assert resources == [{"Ref": "PartitionSecretArn"}]
        else:
            assert actions == {"kms:Decrypt"}
            assert resources in ([{"Ref": "KmsKeyArn"}], [{"Ref": "SecretsKmsKeyArn"}])
            via = sub_text(statement["Condition"]["StringEquals"]["kms:ViaService"])
            assert via == ("ssm" if resources == [{"Ref": "KmsKeyArn"}] else "secretsmanager") + (
                ".${AWS::Region}.amazonaws.com"
            )
    assert seen == {"ssm", "secretsmanager", "kms"}
    assert example["Parameters"]["PartitionSecretArn"]["AllowedPattern"].endswith("-[A-Za-z0-9]{6}")


# ---------------------------------------------------------------------------------------------
# SAM CLI (slow)


def find_sam() -> str | None:
    for candidate in (
        os.environ.get("LUNA_HA_SAM"),
        str(REPO / ".venv-sam" / "bin" / "sam"),
        shutil.which("sam"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_python313() -> str | None:
    if sys.version_info[:2] == (3, 13):
        return sys.executable
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    for candidate in sorted(Path(pyenv_root).glob("versions/3.13*/bin/python3.13"), reverse=True):
        return str(candidate)
    return shutil.which("python3.13")


def missing(what: str) -> None:
    if os.environ.get(SKIP_SAM) == "1":
        pytest.skip(f"{what} not found and {SKIP_SAM}=1")
    pytest.fail(
        f"{what} not found: `make sam` installs .venv-sam (make test does); {SKIP_SAM}=1 skips these tests"
    )


@pytest.fixture(scope="session")
def sam(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """The sam executable and an environment that keeps it offline and away from ~/.aws-sam."""
    executable = find_sam()
    if executable is None:
        missing("the SAM CLI")
    assert executable is not None
    app_dir = tmp_path_factory.mktemp("sam-app-dir")
    # A fresh version check (SAM asks PyPI weekly otherwise); telemetry off.
    (app_dir / "metadata.json").write_text(
        json.dumps({"lastVersionCheck": time.time(), "telemetryEnabled": False})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        SAM_CLI_TELEMETRY="0",
        __SAM_CLI_APP_DIR=str(app_dir),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return executable, env


def run(command: list[str], env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=REPO, env=dict(env), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_sam_validate_lint(sam: tuple[str, dict[str, str]], template: Path) -> None:
    executable, env = sam
    result = run([executable, "validate", "--lint", "--template", str(template)], env, timeout=110)
    assert "is a valid SAM Template" in result.stdout + result.stderr


@pytest.fixture(scope="session", params=["arm64", "x86_64"])
def built(
    request: pytest.FixtureRequest, sam: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """``sam build`` of the provider for one architecture, once per session."""
    architecture: str = request.param
    executable, env = sam
    python313 = find_python313()
    if python313 is None:
        missing("python3.13 (sam build of a python3.13 function looks it up on PATH)")
    assert python313 is not None
    build_dir = tmp_path_factory.mktemp(f"sam-build-{architecture}") / "build"
    env = dict(
        env,
        PATH=f"{Path(python313).parent}{os.pathsep}{env.get('PATH', '')}",
        LAYER_ARCH=architecture,
        LAYER_PIP=f"{sys.executable} -m pip",
        PYTHON313=python313,  # compiles the bytecode of the function and the layer
    )
    command = [executable, "build", "--template", str(PROVIDER), "--build-dir", str(build_dir)]
    run([*command, "--parameter-overrides", f"Architecture={architecture}"], env, timeout=280)
    return architecture, build_dir


def assert_bytecode(site: Path, prefix: str) -> int:
    """Every ``.py`` under ``site`` has its CPython 3.13 ``.pyc``, unchecked-hash, of this very source,
    naming the file where Lambda has it (``prefix``/...); there is no other ``.pyc``. Returns the count."""
    sources = sorted(site.rglob("*.py"))
    expected = {p.parent / "__pycache__" / f"{p.stem}.cpython-313.pyc" for p in sources}
    assert set(site.rglob("*.pyc")) == expected
    raw_magic = int.from_bytes(MAGIC_313, "little")
    for source in sources:
        data = (source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc").read_bytes()
        assert data[:4] == MAGIC_313, source
        assert int.from_bytes(data[4:8], "little") == UNCHECKED_HASH, source
        assert data[8:16] == _imp.source_hash(raw_magic, source.read_bytes()), f"stale: {source}"
        assert f"{prefix}/{source.relative_to(site)}".encode() in data, source
    return len(sources)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sam_build_function(built: tuple[str, Path]) -> None:
    _, build_dir = built
    package = build_dir / "Function" / "luna_ha"
    assert (package / "__init__.py").is_file()
    source = FUNCTION_DIR / "luna_ha"
    expected = {
        p.relative_to(source)
        for p in source.rglob("*.py")
        if "__pycache__" not in p.parts and p.relative_to(source).parts[0] not in NOT_SHIPPED
    }
    assert {p.relative_to(package) for p in package.rglob("*.py")} == expected
    for name in NOT_SHIPPED:
        assert (source / name).exists(), f"no luna_ha/{name}: update NOT_SHIPPED and functions/Makefile"
        assert not (package / name).exists(), f"luna_ha/{name} is not imported on Lambda"
    # The sources and their bytecode, nothing else.
    assert {p.suffix for p in package.rglob("*") if p.is_file()} == {".py", ".pyc"}
    assert assert_bytecode(build_dir / "Function", "/var/task") == len(expected)
    assert sorted(p.name for p in (build_dir / "Function").iterdir()) == ["luna_ha"]
    built_template = load(build_dir / "template.yaml")
    function = built_template["Resources"]["Function"]["Properties"]
    assert function["Handler"] == "luna_ha.app.handler"
    assert function["CodeUri"] == "Function"
    assert built_template["Resources"]["DepsLayer"]["Properties"]["ContentUri"] == "DepsLayer"


def elf_machine(path: Path) -> int:
    with path.open("rb") as handle:
        header = handle.read(20)
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sam_build_layer(built: tuple[str, Path]) -> None:
    architecture, build_dir = built
    arch = WHEEL_ARCH[architecture]
    site = build_dir / "DepsLayer" / "python"
    for package in (
        "paramiko",
        "crhelper",
        "aws_lambda_powertools",
        "cryptography",
        "yaml",
        "aws_xray_sdk",
        "nacl",
    ):
        assert (site / package / "__init__.py").is_file(), package
    assert list(site.glob("paramiko-4.*.dist-info")), "paramiko 4.x"
    for runtime_package in ("boto3", "botocore", "s3transfer", "urllib3"):
        assert not (site / runtime_package).exists(), f"{runtime_package} belongs to the Lambda runtime"
    assert (site / ".luna-ha-layer-arch").read_text().strip() == arch

    # cryptography's extension: its wheel tags and its ELF header name the architecture...
    (wheel,) = site.glob("cryptography-*.dist-info/WHEEL")
    tags = [
        line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines() if line.startswith("Tag:")
    ]
    assert tags and all(tag.endswith(f"_{arch}") for tag in tags), tags
    assert elf_machine(site / "cryptography" / "hazmat" / "bindings" / "_rust.abi3.so") == ELF_MACHINE[arch]
    # ... and so does the file name of its cffi backend, for CPython 3.13.
    assert (site / f"_cffi_backend.cpython-313-{arch}-linux-gnu.so").is_file()
    shared = list(site.rglob("*.so"))
    assert len(shared) >= 5
    for path in shared:
        assert elf_machine(path) == ELF_MACHINE[arch], path
        tag = re.search(r"\.cpython-(\d+)-([a-z0-9_]+)-linux-gnu\.so$", path.name)
        assert tag is None or tag.groups() == ("313", arch), path
    # Bytecode for python3.13, unchecked-hash, as Lambda finds the layer (/opt/python).
    assert assert_bytecode(site, "/opt/python") > 500


IMPORT_AS_ON_LAMBDA = """
import importlib._bootstrap_external as external, json, sys
compiled = []
to_code = external.SourceLoader.source_to_code
def spy(self, data, path, *args, **kwargs):
    compiled.append(path)
    return to_code(self, data, path, *args, **kwargs)
external.SourceLoader.source_to_code = spy  # called only where no usable .pyc is found
import luna_ha.app
absent = []
for name in ("luna_ha.sim", "luna_ha.client", "luna_ha.cli", "luna_ha.demo"):
    try:
        __import__(name)
    except ModuleNotFoundError:
        absent.append(name)
files = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}
traced = luna_ha.app.tracer is not None
print(json.dumps({"compiled": compiled, "files": files, "absent": absent, "traced": traced}))
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_built_handler_imports_from_the_build_alone_with_its_bytecode(
    built: tuple[str, Path], tmp_path: Path
) -> None:
    """``import luna_ha.app`` as Lambda does it (tracing on, as deployed), without ``site`` (so not the
    editable luna_ha): the built function first on the path, then, when it is for this machine's
    architecture, the built layer and the runtime's packages (boto3 and its dependencies, linked
    from the venv); else the venv's site-packages. Nothing of the function or the layer is
    compiled: their shipped bytecode is used."""
    architecture, build_dir = built
    if sys.version_info[:2] != (3, 13):
        pytest.skip("the venv is not python3.13, the version of the built bytecode")
    function = (build_dir / "Function").resolve()
    layer = (build_dir / "DepsLayer" / "python").resolve()
    with_layer = platform.machine() == WHEEL_ARCH[architecture]
    venv_site = Path(sysconfig.get_paths()["purelib"]).resolve()
    runtime = tmp_path / "runtime"  # what the Lambda runtime has besides the standard library
    runtime.mkdir()
    for name in RUNTIME_PACKAGES:
        (package,) = [p for p in (venv_site / name, venv_site / f"{name}.py") if p.exists()]
        (runtime / package.name).symlink_to(package)
    path = [function, layer, runtime] if with_layer else [function, venv_site]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(map(str, path)),
        "PYTHONDONTWRITEBYTECODE": "1",  # /var/task and /opt are read-only
        "LAMBDA_TASK_ROOT": str(function),
        "AWS_LAMBDA_FUNCTION_NAME": "luna-ha-provider",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    done = subprocess.run(
        [sys.executable, "-S", "-c", IMPORT_AS_ON_LAMBDA],
        cwd=function,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["traced"], "tracing is on where Lambda runs the function"
    assert sorted(report["absent"]) == ["luna_ha.cli", "luna_ha.client", "luna_ha.demo", "luna_ha.sim"]
    files = {name: Path(file) for name, file in report["files"].items() if file}  # as found on the path
    luna = {name: file for name, file in files.items() if name.split(".")[0] == "luna_ha"}
    assert "luna_ha.engine" in luna and all(file.is_relative_to(function) for file in luna.values()), luna
    shipped = [function, *([layer] if with_layer else [])]
    assert [c for c in report["compiled"] if any(Path(c).is_relative_to(d) for d in shipped)] == []
    if with_layer:
        # The layer is complete: everything else comes from the runtime or the standard library.
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        elsewhere = {
            name: file
            for name, file in files.items()
            if not any(file.is_relative_to(d) for d in (function, layer, runtime, stdlib, stdlib.resolve()))
        }
        assert elsewhere == {}
        assert files["paramiko"].is_relative_to(layer)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sam_build_layer_dependencies_complete(built: tuple[str, Path]) -> None:
    # The layer is installed with --no-deps: every requirement of every distribution in it must be
    # in it too, or provided by the Lambda runtime (boto3 and its dependencies).
    architecture, build_dir = built
    site = build_dir / "DepsLayer" / "python"
    environment = {
        "python_version": "3.13",
        "python_full_version": "3.13.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": WHEEL_ARCH[architecture],
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    runtime = {"boto3", "botocore", "s3transfer", "urllib3", "jmespath", "python-dateutil", "six"}
    present = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions(path=[str(site)])
    }
    assert {"paramiko", "crhelper", "aws-lambda-powertools", "cryptography", "pyyaml"} <= set(present)
    unmet = []
    for dist in importlib.metadata.distributions(path=[str(site)]):
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            name = canonicalize_name(requirement.name)
            if name in present:
                if not requirement.specifier.contains(present[name], prereleases=True):
                    unmet.append(f"{dist.metadata['Name']}: {text} (layer has {present[name]})")
            elif name not in runtime:
                unmet.append(f"{dist.metadata['Name']}: {text}")
    assert unmet == []


# ---------------------------------------------------------------------------------------------
# Example: rollouts wait for each member's bootstrap


def test_example_creation_and_rolling_update_wait_for_bootstrap_signals(example: dict[str, Any]) -> None:
    (name, asg) = next(iter(resources_of(example, "AWS::AutoScaling::AutoScalingGroup").items()))
    creation = asg["CreationPolicy"]
    assert creation["ResourceSignal"] == {
        "Count": {"Ref": "DesiredCapacity"},
        "Timeout": {"Ref": "BootstrapTimeout"},
    }
    assert creation["AutoScalingCreationPolicy"] == {"MinSuccessfulInstancesPercent": 100}
    rolling = asg["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["WaitOnResourceSignals"] is True
    assert rolling["PauseTime"] == {"Ref": "BootstrapTimeout"}
    assert rolling["MinSuccessfulInstancesPercent"] == 100
    assert (rolling["MaxBatchSize"], rolling["MinInstancesInService"]) == (1, 1)
    assert {"HealthCheck", "ReplaceUnhealthy", "AZRebalance"} <= set(rolling["SuspendProcesses"])
    assert re.fullmatch(example["Parameters"]["BootstrapTimeout"]["AllowedPattern"], "PT15M")
    assert f"--resource {name} " in member_user_data(example)


def member_user_data(example: Mapping[str, Any]) -> str:
    (asg,) = resources_of(example, "AWS::AutoScaling::AutoScalingGroup").values()
    template = example["Resources"][asg["Properties"]["LaunchTemplate"]["LaunchTemplateId"]["Ref"]]
    return sub_text(template["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"])


@pytest.mark.parametrize("status", [0, 7])
def test_example_user_data_signals_the_bootstraps_exit_status(
    example: dict[str, Any], tmp_path: Path, status: int
) -> None:
    """The user data run by bash, with a luna-ha that exits ``status`` and a cfn-signal that records
    its arguments: CloudFormation hears the bootstrap's status, and so does cloud-init."""
    values = {
        "AWS::Region": "eu-west-1",
        "AWS::StackName": "payments-ha",
        "GroupLabel": "payments-ha",
        "ClientName": "web",
        "Group.ParameterPath": "/luna-ha/payments",
        "Group.ClientRegistrations": "web=web-abcdef-r0",
    }
    script = re.sub(r"\$\{([^}!]+)\}", lambda m: values[m.group(1)], member_user_data(example))
    log = tmp_path / "bootstrap.log"
    assert "/var/log/luna-ha-bootstrap.log" in script
    script = script.replace("/var/log/luna-ha-bootstrap.log", str(log))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "luna-ha").write_text(f'#!/bin/sh\necho bootstrap "$@"\nexit {status}\n')
    (bin_dir / "cfn-signal").write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "signal"}\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(tmp_path)}

    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)

    assert done.returncode == status, log.read_text()
    signal = (tmp_path / "signal").read_text().split()
    assert signal == [
        *("--exit-code", str(status), "--stack", "payments-ha"),
        *("--resource", "MemberGroup", "--region", "eu-west-1"),
    ]
    assert "bootstrap client bootstrap --parameter-path /luna-ha/payments --client web" in log.read_text()
