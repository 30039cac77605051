"""The resource contract (DESIGN §2): what properties are accepted, what they become, and how a bad one
is reported. Every rejection names the property path as the user wrote it."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from luna_ha.errors import LunaHAError, SpecError
from luna_ha.spec import (
    ApplianceSpec,
    ClientSpec,
    GroupFileError,
    GroupSpec,
    load_group_file,
    parse_properties,
)


def _openssh(public_key: Any) -> str:
    return str(
        public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    )


ED25519_KEY = _openssh(ed25519.Ed25519PrivateKey.generate().public_key())
RSA_KEY = _openssh(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
ECDSA_KEYS = {
    curve.name: _openssh(ec.generate_private_key(curve).public_key())
    for curve in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1())
}
ED25519_BLOB = ED25519_KEY.split()[1]
FINGERPRINT = "SHA256:" + base64.b64encode(
    hashlib.sha256(base64.b64decode(ED25519_BLOB)).digest()
).decode().rstrip("=")
ADMIN_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:luna/admin-AbCdEf"
DELETE = object()


def valid_properties() -> dict[str, Any]:
    """A complete, valid property set as CloudFormation delivers it (every scalar a string)."""
    return {
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:luna-ha-provider",
        "GroupLabel": "payments-ha",
        "PartitionName": "payments",
        "AdminSecretArn": ADMIN_ARN,
        "PartitionSecretArn": "luna/partition",
        "Appliances": [
            {
                "Host": "10.0.1.10",
                "Port": "22",
                "HostKey": ED25519_KEY + " root@hsm-a",
                "ManagerSecretArn": "luna/manager",
                "Initialize": "false",
            },
            {
                "Host": "hsm-b.example.com",
                "HostKeyFingerprint": FINGERPRINT,
                "ManagerSecretArn": "luna/manager",
                "Initialize": "true",
                "HsmLabel": "hsm-b",
                "LegacyAlgorithms": "true",
            },
        ],
        "Clients": [{"Name": "web", "Rotation": "0"}, {"Name": "batch", "Rotation": "2"}],
    }


def with_value(props: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A deep copy of ``props`` with the property at ``path`` (``Appliances[1].Port``) set or deleted."""
    result = copy.deepcopy(props)
    parts = re.findall(r"([^.\[\]]+)(?:\[(\d+)\])?", path)
    target: Any = result
    for name, index in parts[:-1]:
        target = target[name]
        if index:
            target = target[int(index)]
    name, index = parts[-1]
    if index:
        target = target[name]
        name = int(index)
    if value is DELETE:
        del target[name]
    else:
        target[name] = value
    return result


def rejection(props: object) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_properties(props)  # type: ignore[arg-type]
    return caught.value


# --- what a valid property set becomes -----------------------------------------------------------------


def test_valid_properties_become_a_typed_spec() -> None:
    spec = parse_properties(valid_properties())

    assert spec == GroupSpec(
        group_label="payments-ha",
        partition_name="payments",
        admin_secret_arn=ADMIN_ARN,
        partition_secret_arn="luna/partition",
        appliances=(
            ApplianceSpec(
                "10.0.1.10",
                port=22,
                host_key=ED25519_KEY,
                manager_secret_arn="luna/manager",
                initialize=False,
            ),
            ApplianceSpec(
                "hsm-b.example.com",
                host_key_fingerprint=FINGERPRINT,
                manager_secret_arn="luna/manager",
                initialize=True,
                hsm_label="hsm-b",
                legacy_algorithms=True,
            ),
        ),
        clients=(ClientSpec("web", 0), ClientSpec("batch", 2)),
        parameter_path="/luna-ha/payments",
        kms_key_id=None,
        partition_deletion_policy="Retain",
    )
    assert spec.warnings == ()


def test_strings_and_real_types_give_the_same_spec() -> None:
    typed = with_value(valid_properties(), "Appliances[0].Port", 22)
    typed = with_value(typed, "Appliances[0].Initialize", False)
    typed = with_value(typed, "Appliances[1].Initialize", True)
    typed = with_value(typed, "Appliances[1].LegacyAlgorithms", True)
    typed = with_value(typed, "Clients[1].Rotation", 2)

    assert parse_properties(typed) == parse_properties(valid_properties())


@pytest.mark.parametrize("spelling", ["true", "True", "TRUE"])
def test_booleans_accept_any_case_of_true(spelling: str) -> None:
    spec = parse_properties(with_value(valid_properties(), "Appliances[0].LegacyAlgorithms", spelling))
    assert spec.appliances[0].legacy_algorithms is True


def test_service_token_and_service_timeout_are_ignored() -> None:
    with_cfn = with_value(valid_properties(), "ServiceTimeout", "300")
    without = with_value(valid_properties(), "ServiceToken", DELETE)

    assert parse_properties(with_cfn) == parse_properties(without)


def test_omitted_optional_properties_take_their_defaults() -> None:
    props = valid_properties()
    props["Appliances"] = [{"Host": "10.0.1.10", "HostKey": ED25519_KEY, "ManagerSecretArn": "m"}] * 1
    props["Appliances"].append({"Host": "10.0.1.11", "HostKey": ED25519_KEY, "ManagerSecretArn": "m"})
    del props["Clients"]

    spec = parse_properties(props)

    appliance = spec.appliances[0]
    assert (appliance.port, appliance.initialize, appliance.hsm_label, appliance.legacy_algorithms) == (
        22,
        False,
        None,
        False,
    )
    assert spec.clients == ()
    assert spec.parameter_path == "/luna-ha/payments"
    assert spec.kms_key_id is None
    assert spec.partition_deletion_policy == "Retain"


def test_client_rotation_defaults_to_zero() -> None:
    spec = parse_properties(with_value(valid_properties(), "Clients[0].Rotation", DELETE))
    assert spec.clients[0] == ClientSpec("web", 0)


@pytest.mark.parametrize("empty", ["", None])
@pytest.mark.parametrize(
    "path",
    [
        "KmsKeyId",
        "ParameterPath",
        "Clients",
        "PartitionDeletionPolicy",
        "Appliances[0].Port",
        "Clients[0].Rotation",
    ],
)
def test_an_optional_property_given_empty_or_null_counts_as_absent(path: str, empty: object) -> None:
    given_empty = parse_properties(with_value(valid_properties(), path, empty))
    try:
        omitted = with_value(valid_properties(), path, DELETE)
    except KeyError:  # not in the base set at all
        omitted = valid_properties()

    assert given_empty == parse_properties(omitted)


def test_host_key_comment_is_dropped_from_the_canonical_key() -> None:
    spec = parse_properties(valid_properties())
    assert spec.appliances[0].host_key == ED25519_KEY
    assert "root@hsm-a" not in json.dumps(spec.to_properties())


@pytest.mark.parametrize(
    "host_key",
    [ED25519_KEY, RSA_KEY, *ECDSA_KEYS.values(), ED25519_KEY + " a comment with spaces"],
    ids=["ed25519", "rsa", "nistp256", "nistp384", "nistp521", "comment"],
)
def test_every_supported_host_key_algorithm_is_accepted(host_key: str) -> None:
    spec = parse_properties(with_value(valid_properties(), "Appliances[0].HostKey", host_key))
    assert spec.appliances[0].host_key == " ".join(host_key.split()[:2])


@pytest.mark.parametrize(
    "host",
    [
        "10.0.1.10",
        "fd00::10",
        "::ffff:10.0.0.1",
        "hsm",
        "hsm-a.example.com",
        "a" * 63 + ".example",
        "1hsm.example",
    ],
)
def test_hosts_are_addresses_or_dns_names(host: str) -> None:
    assert (
        parse_properties(with_value(valid_properties(), "Appliances[0].Host", host)).appliances[0].host
        == host
    )


@pytest.mark.parametrize(
    "key_id",
    [
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "mrk-1234abcd12ab34cd56ef1234567890ab",
        "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        "alias/luna-ha",
        "alias/aws/ssm",
        "arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/team/luna_ha",
    ],
)
def test_kms_key_id_accepts_ids_arns_and_aliases(key_id: str) -> None:
    assert parse_properties(with_value(valid_properties(), "KmsKeyId", key_id)).kms_key_id == key_id


@pytest.mark.parametrize(
    "secret",
    [
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:admin-AbCdEf",
        "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:a/b_c+d=e.f@g-h",
        "luna/admin",
        "x" * 512,
    ],
)
def test_secrets_are_arns_or_names(secret: str) -> None:
    assert (
        parse_properties(with_value(valid_properties(), "AdminSecretArn", secret)).admin_secret_arn == secret
    )


def test_parameter_path_may_be_given() -> None:
    path = "/teams/payments/luna-ha.v2"
    assert parse_properties(with_value(valid_properties(), "ParameterPath", path)).parameter_path == path


def test_partition_deletion_policy_delete_is_honoured() -> None:
    spec = parse_properties(with_value(valid_properties(), "PartitionDeletionPolicy", "Delete"))
    assert spec.partition_deletion_policy == "Delete"


def test_limits_are_inclusive() -> None:
    props = valid_properties()
    props["Appliances"] = [
        {"Host": f"10.0.1.{i}", "HostKeyFingerprint": FINGERPRINT, "ManagerSecretArn": "m"} for i in range(16)
    ]
    props["Clients"] = [{"Name": f"c{i}", "Rotation": "1000000"} for i in range(20)]
    props["Clients"][0]["Rotation"] = "0"
    props["Appliances"][0]["Port"] = "65535"
    props["Appliances"][1]["Port"] = "1"
    props["GroupLabel"] = "g" * 32
    props["Clients"][1]["Name"] = "c" * 16

    spec = parse_properties(props)

    assert (len(spec.appliances), len(spec.clients)) == (16, 20)


def test_a_single_appliance_is_allowed_with_a_warning() -> None:
    props = valid_properties()
    props["Appliances"] = props["Appliances"][:1]

    spec = parse_properties(props)

    assert len(spec.appliances) == 1
    assert len(spec.warnings) == 1
    assert "at least 2" in spec.warnings[0]


def test_spec_round_trips_through_its_canonical_properties() -> None:
    spec = parse_properties(with_value(valid_properties(), "KmsKeyId", "alias/luna-ha"))
    canonical = spec.to_properties()

    assert parse_properties(canonical) == spec
    assert json.loads(json.dumps(canonical)) == canonical
    assert canonical["Appliances"][0] == {  # type: ignore[index]
        "Host": "10.0.1.10",
        "Port": 22,
        "HostKey": ED25519_KEY,
        "ManagerSecretArn": "luna/manager",
        "Initialize": False,
        "LegacyAlgorithms": False,
    }


def test_specs_are_hashable_values_and_warnings_do_not_affect_equality() -> None:
    first = parse_properties(valid_properties())
    second = parse_properties(copy.deepcopy(valid_properties()))
    annotated = GroupSpec(**{**first.__dict__, "warnings": ("advice",)})

    assert first == second == annotated
    assert len({first, second, annotated}) == 1
    assert first != parse_properties(with_value(valid_properties(), "Clients[0].Rotation", "1"))


def test_hand_built_specs_get_tuples_and_the_default_parameter_path() -> None:
    spec = GroupSpec(
        "g",
        "orders",
        "a",
        "p",
        [ApplianceSpec("h", host_key_fingerprint=FINGERPRINT, manager_secret_arn="m")],  # type: ignore[arg-type]
    )
    assert isinstance(spec.appliances, tuple)
    assert spec.parameter_path == "/luna-ha/orders"
    hash(spec)


# --- what is rejected, and how it is reported ----------------------------------------------------------

LONG_HOST = ".".join(["a" * 63] * 4)  # 255 characters
BAD = [
    # (path to change, new value, property named in the error, words the problem must contain)
    ("GroupLabel", DELETE, "GroupLabel", "is required"),
    ("GroupLabel", "", "GroupLabel", "is required"),
    ("GroupLabel", "1payments", "GroupLabel", "a letter"),
    ("GroupLabel", "g" * 33, "GroupLabel", "up to 31"),
    ("GroupLabel", "pay ments", "GroupLabel", "a letter"),
    ("GroupLabel", "payé", "GroupLabel", "non-ASCII"),
    ("GroupLabel", 42, "GroupLabel", "expected a string, got an integer"),
    ("GroupLabel", ["a"], "GroupLabel", "expected a string, got a list"),
    ("PartitionName", DELETE, "PartitionName", "is required"),
    ("PartitionName", "pay/ments", "PartitionName", "a letter"),
    ("PartitionName", {"Ref": "X"}, "PartitionName", "got a mapping"),
    ("AdminSecretArn", DELETE, "AdminSecretArn", "is required"),
    (
        "AdminSecretArn",
        "arn:aws:secretsmanager:us-east-1:12345:secret:x",
        "AdminSecretArn",
        "Secrets Manager ARN",
    ),
    (
        "AdminSecretArn",
        "arn:aws:ssm:us-east-1:123456789012:parameter/x",
        "AdminSecretArn",
        "Secrets Manager ARN",
    ),
    ("AdminSecretArn", "luna admin", "AdminSecretArn", "secret name"),
    ("AdminSecretArn", "x" * 513, "AdminSecretArn", "1-512"),
    ("PartitionSecretArn", DELETE, "PartitionSecretArn", "is required"),
    ("PartitionSecretArn", "secret\n", "PartitionSecretArn", "control character"),
    ("Appliances", DELETE, "Appliances", "is required"),
    ("Appliances", [], "Appliances", "at least 1"),
    ("Appliances", "10.0.1.10", "Appliances", "expected a list of appliances"),
    ("Appliances", {"Host": "x"}, "Appliances", "expected a list"),
    ("Appliances[1]", "10.0.1.11", "Appliances[1]", "expected a mapping"),
    ("Appliances[0].Host", DELETE, "Appliances[0].Host", "is required"),
    ("Appliances[0].Host", "hsm_a", "Appliances[0].Host", "DNS host name"),
    ("Appliances[0].Host", "-oProxyCommand=x", "Appliances[0].Host", "DNS host name"),
    ("Appliances[0].Host", "hsm..example", "Appliances[0].Host", "DNS host name"),
    ("Appliances[0].Host", "hsm.example.", "Appliances[0].Host", "DNS host name"),
    ("Appliances[0].Host", "a" * 64, "Appliances[0].Host", "DNS host name"),
    ("Appliances[0].Host", LONG_HOST, "Appliances[0].Host", "at most 253"),
    ("Appliances[0].Host", "10.0.1.300", "Appliances[0].Host", "IPv4/IPv6"),
    ("Appliances[0].Host", "[fd00::10]", "Appliances[0].Host", "no brackets"),
    ("Appliances[0].Host", "fe80::1%eth0", "Appliances[0].Host", "zone ids"),
    ("Appliances[0].Host", "hsm a", "Appliances[0].Host", "DNS host name"),
    ("Appliances[0].Host", "hsm\u0430.example", "Appliances[0].Host", "non-ASCII"),
    ("Appliances[1].Host", "10.0.1.10", "Appliances[1].Host", "already Appliances[0].Host"),
    ("Appliances[0].Port", "0", "Appliances[0].Port", "from 1 to 65535"),
    ("Appliances[0].Port", 65536, "Appliances[0].Port", "from 1 to 65535, got 65536"),
    ("Appliances[0].Port", 22.5, "Appliances[0].Port", "got the number 22.5"),
    ("Appliances[0].Port", 22.0, "Appliances[0].Port", "got the number 22.0"),
    ("Appliances[0].Port", "22.5", "Appliances[0].Port", "decimal digits"),
    ("Appliances[0].Port", True, "Appliances[0].Port", "got the boolean true"),
    ("Appliances[0].Port", "true", "Appliances[0].Port", "decimal digits"),
    ("Appliances[0].Port", "+22", "Appliances[0].Port", "no sign"),
    ("Appliances[0].Port", "022", "Appliances[0].Port", "leading zeros"),
    ("Appliances[0].Port", " 22", "Appliances[0].Port", "decimal digits"),
    ("Appliances[0].Port", [22], "Appliances[0].Port", "got a list"),
    ("Appliances[0].Port", "9" * 5000, "Appliances[0].Port", "decimal digits"),
    ("Appliances[0].HostKey", DELETE, "Appliances[0].HostKey", "is required (or HostKeyFingerprint)"),
    ("Appliances[1].HostKey", ED25519_KEY, "Appliances[1].HostKeyFingerprint", "exactly one"),
    (
        "Appliances[0].HostKey",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        "Appliances[0].HostKey",
        "<algorithm> <base64>",
    ),
    ("Appliances[0].HostKey", ED25519_BLOB, "Appliances[0].HostKey", "<algorithm> <base64>"),
    ("Appliances[0].HostKey", "ssh-rsa " + ED25519_BLOB, "Appliances[0].HostKey", "names 'ssh-ed25519'"),
    ("Appliances[0].HostKey", "ssh-ed25519 not*base64", "Appliances[0].HostKey", "not valid base64"),
    (
        "Appliances[0].HostKey",
        "ssh-ed25519 " + ED25519_BLOB[:-4],
        "Appliances[0].HostKey",
        "malformed or truncated",
    ),
    (
        "Appliances[0].HostKey",
        "ssh-ed25519 " + ED25519_BLOB[:-1],
        "Appliances[0].HostKey",
        "not valid base64",
    ),
    ("Appliances[0].HostKey", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "Appliances[0].HostKey", "malformed"),
    ("Appliances[0].HostKey", "ssh-ed25519 AAAA", "Appliances[0].HostKey", "names nothing readable"),
    ("Appliances[0].HostKey", ED25519_KEY + "\nssh-rsa x", "Appliances[0].HostKey", "control character"),
    ("Appliances[1].HostKeyFingerprint", "MD5:ab:cd", "Appliances[1].HostKeyFingerprint", "'SHA256:'"),
    ("Appliances[1].HostKeyFingerprint", FINGERPRINT[:-1], "Appliances[1].HostKeyFingerprint", "43 base64"),
    (
        "Appliances[1].HostKeyFingerprint",
        FINGERPRINT + "=",
        "Appliances[1].HostKeyFingerprint",
        "without padding",
    ),
    (
        "Appliances[1].HostKeyFingerprint",
        "SHA256:" + "A" * 42 + "B",
        "Appliances[1].HostKeyFingerprint",
        "canonical",
    ),
    ("Appliances[0].ManagerSecretArn", DELETE, "Appliances[0].ManagerSecretArn", "is required"),
    ("Appliances[0].ManagerSecretArn", "a;b", "Appliances[0].ManagerSecretArn", "secret name"),
    ("Appliances[0].Initialize", "yes", "Appliances[0].Initialize", "expected true or false, got 'yes'"),
    ("Appliances[0].Initialize", 1, "Appliances[0].Initialize", "expected true or false, got an integer"),
    ("Appliances[0].Initialize", "1", "Appliances[0].Initialize", "expected true or false"),
    ("Appliances[1].HsmLabel", DELETE, "Appliances[1].HsmLabel", "required when Initialize is true"),
    ("Appliances[1].HsmLabel", "-force", "Appliances[1].HsmLabel", "a letter"),
    ("Appliances[0].LegacyAlgorithms", "maybe", "Appliances[0].LegacyAlgorithms", "expected true or false"),
    ("Clients", "web", "Clients", "expected a list of clients"),
    ("Clients", [{"Name": f"c{i}"} for i in range(21)], "Clients", "at most 20"),
    ("Clients[1]", "batch", "Clients[1]", "expected a mapping"),
    ("Clients[0].Name", DELETE, "Clients[0].Name", "is required"),
    ("Clients[0].Name", "1web", "Clients[0].Name", "a letter, then up to 15"),
    ("Clients[0].Name", "web.1", "Clients[0].Name", "a letter, then up to 15"),
    ("Clients[0].Name", "w" * 17, "Clients[0].Name", "up to 15"),
    ("Clients[0].Name", "web server", "Clients[0].Name", "a letter"),
    ("Clients[0].Name", False, "Clients[0].Name", "got the boolean false"),
    ("Clients[1].Name", "WEB", "Clients[1].Name", "already Clients[0].Name"),
    ("Clients[0].Rotation", "-1", "Clients[0].Rotation", "from 0 to 1000000"),
    ("Clients[0].Rotation", 1000001, "Clients[0].Rotation", "from 0 to 1000000"),
    ("Clients[0].Rotation", "1.5", "Clients[0].Rotation", "decimal digits"),
    ("Clients[0].Rotation", True, "Clients[0].Rotation", "boolean"),
    ("ParameterPath", "luna-ha/payments", "ParameterPath", "SSM path"),
    ("ParameterPath", "/luna-ha/payments/", "ParameterPath", "no trailing '/'"),
    ("ParameterPath", "//luna-ha", "ParameterPath", "SSM path"),
    ("ParameterPath", "/luna ha", "ParameterPath", "SSM path"),
    ("ParameterPath", "/aws/luna", "ParameterPath", "/aws or /ssm"),
    ("ParameterPath", "/SSM/luna", "ParameterPath", "/aws or /ssm"),
    ("ParameterPath", "/AwsLuna", "ParameterPath", "/aws or /ssm"),
    ("ParameterPath", "/a/b/c/d/e/f/g/h/i", "ParameterPath", "at most 8"),
    ("ParameterPath", "/" + "p" * 900, "ParameterPath", "at most 900"),
    ("ParameterPath", "/luna-ha/../x", "ParameterPath", "'..'"),
    ("KmsKeyId", "key", "KmsKeyId", "KMS key id"),
    ("KmsKeyId", "alias/", "KmsKeyId", "KMS key id"),
    ("KmsKeyId", "1234ABCD-12AB-34CD-56EF-1234567890AB", "KmsKeyId", "KMS key id"),
    ("KmsKeyId", "arn:aws:kms:us-east-1:123456789012:key/nope", "KmsKeyId", "key ARN"),
    ("PartitionDeletionPolicy", "delete", "PartitionDeletionPolicy", "Retain or Delete, got 'delete'"),
    ("PartitionDeletionPolicy", "Destroy", "PartitionDeletionPolicy", "Retain or Delete"),
    ("PartitionDeletionPolicy", True, "PartitionDeletionPolicy", "expected a string"),
    ("Partition", "payments", "Partition", "unknown property (did you mean PartitionName?)"),
    ("grouplabel", "x", "grouplabel", "did you mean GroupLabel? names are case-sensitive"),
    ("Appliances[1].Hots", "x", "Appliances[1].Hots", "unknown property (did you mean Host?)"),
    ("Clients[0].Nmae", "x", "Clients[0].Nmae", "unknown property (did you mean Name?)"),
    ("Appliances[0].Comment", "x", "Appliances[0].Comment", "expected one of Host, Port, HostKey"),
]


@pytest.mark.parametrize(("path", "value", "prop", "problem"), BAD, ids=[f"{r[0]}={r[1]!r:.30}" for r in BAD])
def test_invalid_property_is_rejected_by_name(path: str, value: object, prop: str, problem: str) -> None:
    error = rejection(with_value(valid_properties(), path, value))

    assert error.prop == prop
    assert problem in error.problem
    assert str(error).startswith(f"Property {prop}: ")


def test_same_host_on_another_port_is_still_a_duplicate() -> None:
    props = with_value(valid_properties(), "Appliances[1].Host", "HSM-A.example.com")
    props = with_value(props, "Appliances[0].Host", "hsm-a.example.com")
    props = with_value(props, "Appliances[1].Port", "2222")

    error = rejection(props)

    assert error.prop == "Appliances[1].Host"
    assert "whatever its Port" in error.problem


def test_ipv6_hosts_are_compared_as_addresses() -> None:
    props = with_value(valid_properties(), "Appliances[0].Host", "fd00::10")
    assert rejection(with_value(props, "Appliances[1].Host", "FD00:0:0::10")).prop == "Appliances[1].Host"


def test_more_than_sixteen_appliances_are_rejected() -> None:
    appliance = {"HostKeyFingerprint": FINGERPRINT, "ManagerSecretArn": "m"}
    props = with_value(
        valid_properties(), "Appliances", [{**appliance, "Host": f"10.0.0.{i}"} for i in range(17)]
    )
    error = rejection(props)
    assert (error.prop, error.problem) == ("Appliances", "has 17 entries; at most 16 appliances are allowed")


def test_properties_must_be_a_mapping() -> None:
    assert rejection(["GroupLabel"]).prop == "Properties"


def test_property_names_must_be_strings() -> None:
    props: dict[Any, Any] = valid_properties()
    props["Appliances"][0][7] = "x"
    error = rejection(props)
    assert (error.prop, error.problem) == ("Appliances[0]", "property names must be strings, got an integer")


def test_errors_never_echo_a_huge_value() -> None:
    huge = "x" * 10_000 + "\x00"
    error = rejection(with_value(valid_properties(), "GroupLabel", huge))

    assert len(str(error)) < 300
    assert "x" * 41 not in str(error)
    assert "(10001 characters)" in str(error)


def test_errors_escape_control_and_non_ascii_characters() -> None:
    error = rejection(with_value(valid_properties(), "Clients[0].Name", "web\n\x1b[31m\u202e"))

    assert "'web\\n\\x1b[31m\\u202e'" in str(error)
    assert str(error).isascii() and str(error).isprintable()


def test_an_unknown_property_name_is_shown_safely() -> None:
    props = valid_properties()
    props["Evil\nName" * 20] = 1
    error = rejection(props)

    assert "\n" not in str(error)
    assert error.prop.startswith("'Evil\\nName")
    assert len(error.prop) < 80


# --- group files ---------------------------------------------------------------------------------------

YAML_GROUP = f"""\
# payments HA group
GroupLabel: payments-ha
PartitionName: payments
AdminSecretArn: {ADMIN_ARN}
PartitionSecretArn: luna/partition
Appliances:
  - Host: 10.0.1.10
    Port: 22
    HostKey: {ED25519_KEY} root@hsm-a
    ManagerSecretArn: luna/manager
  - Host: hsm-b.example.com
    HostKeyFingerprint: {FINGERPRINT}
    ManagerSecretArn: luna/manager
    Initialize: true
    HsmLabel: hsm-b
    LegacyAlgorithms: true
Clients:
  - Name: web
  - Name: batch
    Rotation: 2
"""


def test_a_yaml_group_file_is_read_like_resource_properties(tmp_path: Path) -> None:
    path = tmp_path / "group.yaml"
    path.write_text(YAML_GROUP)

    assert load_group_file(path) == parse_properties(valid_properties())


def test_a_json_group_file_is_recognised_by_its_content(tmp_path: Path) -> None:
    path = tmp_path / "group.conf"
    path.write_text(json.dumps(valid_properties(), indent=2))

    assert load_group_file(str(path)) == parse_properties(valid_properties())


def test_yaml_files_use_json_like_scalars(tmp_path: Path) -> None:
    path = tmp_path / "group.yaml"
    path.write_text(YAML_GROUP.replace("  - Name: web", "  - Name: no").replace("Port: 22", "Port: 0x16"))
    with pytest.raises(SpecError) as caught:
        load_group_file(path)
    assert caught.value.prop == "Appliances[0].Port"  # 0x16 is the string "0x16", not 22

    path.write_text(YAML_GROUP.replace("  - Name: web", "  - Name: no"))
    assert load_group_file(path).clients[0].name == "no"  # not the boolean false


def test_yaml_octal_looking_port_is_not_read_as_octal(tmp_path: Path) -> None:
    path = tmp_path / "group.yaml"
    path.write_text(YAML_GROUP.replace("Port: 22", "Port: 022"))
    with pytest.raises(SpecError, match="leading zeros"):
        load_group_file(path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (YAML_GROUP + "GroupLabel: other\n", "repeats the key 'GroupLabel'"),
        ('{"GroupLabel": "a", "GroupLabel": "b"}', "repeats the key 'GroupLabel'"),
        ("GroupLabel: [unclosed\n", "not valid YAML"),
        ('{"GroupLabel": "a"', "not valid JSON"),
        ("- GroupLabel: a\n", "mapping of properties at the top level, got a list"),
        ("", "mapping of properties at the top level, got null"),
    ],
)
def test_unreadable_group_files_are_reported_as_file_errors(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "group.yaml"
    path.write_text(content)

    with pytest.raises(GroupFileError) as caught:
        load_group_file(path)

    assert problem in str(caught.value)
    assert str(caught.value).startswith("Group file ")
    assert isinstance(caught.value, SpecError)


def test_a_missing_group_file_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(GroupFileError, match="cannot be read"):
        load_group_file(tmp_path / "absent.yaml")


def test_a_yaml_flow_mapping_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "group.yaml"
    path.write_text("{GroupLabel: g, PartitionName: p}\n")
    with pytest.raises(SpecError) as caught:
        load_group_file(path)
    assert caught.value.prop == "AdminSecretArn"  # read as YAML, then validated


def test_a_property_error_in_a_file_names_the_property(tmp_path: Path) -> None:
    path = tmp_path / "group.yaml"
    path.write_text(YAML_GROUP.replace("    Port: 22\n", "    Prot: 22\n"))
    with pytest.raises(SpecError) as caught:
        load_group_file(path)
    assert caught.value.prop == "Appliances[0].Prot"


# --- properties that hold for any input ----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=60),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

GROUP_KEYS = ["GroupLabel", "PartitionName", "AdminSecretArn", "PartitionSecretArn", "Appliances", "Clients"]
GROUP_KEYS += [
    "ParameterPath",
    "KmsKeyId",
    "PartitionDeletionPolicy",
    "ServiceToken",
    "ServiceTimeout",
    "Extra",
]
APPLIANCE_KEYS = [
    "Host",
    "Port",
    "HostKey",
    "HostKeyFingerprint",
    "ManagerSecretArn",
    "Initialize",
    "HsmLabel",
]
APPLIANCE_KEYS += ["LegacyAlgorithms"]
PLACES = [
    *GROUP_KEYS,
    *(f"Appliances[{i}].{key}" for i in (0, 1) for key in APPLIANCE_KEYS),
    "Appliances[0]",
    "Appliances[1]",
    "Clients[0]",
    "Clients[1].Name",
    "Clients[1].Rotation",
    "Clients[0].Other",
]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(place=st.sampled_from(PLACES), value=json_values)
def test_any_json_value_anywhere_either_parses_or_raises_spec_error(place: str, value: object) -> None:
    props = with_value(valid_properties(), place, value)
    try:
        spec = parse_properties(props)
    except SpecError as error:
        assert len(str(error)) < 600
        assert str(error).isascii()
    else:
        assert parse_properties(spec.to_properties()) == spec


@given(
    value=json_values,
    keys=st.lists(st.text(max_size=20) | st.integers(), min_size=1, max_size=3),
)
def test_arbitrary_documents_never_raise_anything_but_spec_error(value: object, keys: list[object]) -> None:
    document: object = value
    for key in keys:
        document = {key: document}
    for candidate in (value, document):
        with contextlib.suppress(SpecError):
            parse_properties(candidate)  # type: ignore[arg-type]


@given(value=st.text(min_size=100, max_size=2000), place=st.sampled_from(PLACES))
def test_long_values_are_never_echoed_in_full(value: str, place: str) -> None:
    try:
        parse_properties(with_value(valid_properties(), place, value))
    except SpecError as error:
        assert value[:60] not in str(error)


SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
INJECTIONS = [";", "\n", "\r", '"', "'", " ", "\t", "`", "$", "|", "&", "<", ">", "\\", "*", "\x00", "#"]
injected_names = st.one_of(
    st.builds(
        lambda head, bad, tail: "a" + head + bad + tail,
        st.text(SAFE, max_size=6),
        st.sampled_from(INJECTIONS),
        st.text(SAFE, max_size=6),
    ),
    st.builds(lambda tail: "-" + tail, st.sampled_from(["force", "f", "password x", "client web"])),
    st.builds(
        lambda head, char: "a" + head + char,
        st.text(SAFE, max_size=6),
        st.characters(min_codepoint=0x80, exclude_categories=["Cs"]),
    ),
)
NAME_PLACES = [
    "GroupLabel",
    "PartitionName",
    "Appliances[1].HsmLabel",
    "Clients[0].Name",
    "Appliances[0].Host",
]


@given(name=injected_names, place=st.sampled_from(NAME_PLACES))
def test_injection_strings_in_names_are_always_rejected(name: str, place: str) -> None:
    error = rejection(with_value(valid_properties(), place, name))
    assert error.prop == place


label_text = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,31}", fullmatch=True).filter(str.isascii)
client_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,15}", fullmatch=True).filter(str.isascii)


@st.composite
def valid_property_sets(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 4))
    appliances = []
    for index in range(count):
        appliance: dict[str, Any] = {"Host": f"10.0.{index}.1", "ManagerSecretArn": "luna/manager"}
        if draw(st.booleans()):
            appliance["HostKey"] = ED25519_KEY
        else:
            appliance["HostKeyFingerprint"] = FINGERPRINT
        if draw(st.booleans()):
            appliance["Port"] = draw(st.integers(1, 65535))
        if draw(st.booleans()):
            appliance["Initialize"] = True
            appliance["HsmLabel"] = draw(label_text)
        appliances.append(appliance)
    names = draw(st.lists(client_names, max_size=5, unique_by=str.lower))
    return {
        "GroupLabel": draw(label_text),
        "PartitionName": draw(label_text),
        "AdminSecretArn": ADMIN_ARN,
        "PartitionSecretArn": "luna/partition",
        "Appliances": appliances,
        "Clients": [{"Name": name, "Rotation": draw(st.integers(0, 1_000_000))} for name in names],
        "PartitionDeletionPolicy": draw(st.sampled_from(["Retain", "Delete"])),
    }


def _stringify(value: object) -> object:
    """What CloudFormation does to a template's properties: every scalar becomes a string."""
    if isinstance(value, dict):
        return {key: _stringify(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_stringify(item) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@given(props=valid_property_sets())
def test_stringified_properties_mean_the_same_as_typed_ones(props: dict[str, Any]) -> None:
    spec = parse_properties(props)

    assert parse_properties(_stringify(props)) == spec  # type: ignore[arg-type]
    assert parse_properties(spec.to_properties()) == spec


def test_spec_error_is_a_luna_ha_error() -> None:
    assert isinstance(rejection({}), LunaHAError)


@pytest.mark.parametrize("content", ["[" * 100_000, "a: " + "[" * 100_000, '{"a": ' + "[" * 100_000])
def test_a_pathologically_nested_file_is_a_file_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "group.yaml"
    path.write_text(content)
    with pytest.raises(GroupFileError):
        load_group_file(path)
