"""Bad input, end to end: through the real Lambda handler and the ``luna-ha`` CLI.

For generated bad ``ResourceProperties`` (Unicode, huge values, wrong types, injection attempts
in names: ``;``, newlines, quotes, lunash option syntax; duplicate hosts) and generated group
files (the same, plus anything at all as file content), every input gets a well-formed answer:

* the handler answers FAILED once, with a Reason that starts ``Property <the path>:`` and is
  short printable ASCII; the rollback Delete that follows succeeds;
* the CLI exits 1 with ``error: Property <the path>: ...`` (or ``error: Group file ...``) and no
  traceback;

and, while validation fails, no appliance is contacted, no lunash command is even built (the
builders are watched), no secret is read and no parameter written. ``tests/unit/test_spec.py``
covers the rules themselves; this module proves nothing gets past them.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from luna_ha import cli
from luna_ha.lunash import commands
from luna_ha.secrets import SecretReader
from luna_ha.sim.server import SimulatedAppliance, start_appliances, stop_appliances
from luna_ha_lab.cloudformation import LocalCloudFormation, Response
from luna_ha_lab.localaws import LabSecrets, group_properties, local_aws, seed_secrets

LOGICAL = "Group"


@dataclass
class Watch:
    """Counts everything validation must prevent."""

    built: list[str] = field(default_factory=list)
    secret_reads: int = 0

    def reset(self) -> None:
        self.built.clear()
        self.secret_reads = 0


@dataclass
class World:
    appliances: list[SimulatedAppliance]
    cfn: LocalCloudFormation
    watch: Watch
    group_file: Path

    def valid(self) -> dict[str, Any]:
        props = group_properties(self.appliances, clients={"web": 0, "batch": 1})
        props["Appliances"][1].update(Initialize=False, HsmLabel="hsm-b")
        return props

    def contacts(self) -> int:
        return sum(a.connections + a.refused for a in self.appliances)

    def parameters(self) -> list[str]:
        ssm = boto3.client("ssm")
        return [
            p["Name"]
            for page in ssm.get_paginator("get_parameters_by_path").paginate(Path="/", Recursive=True)
            for p in page["Parameters"]
        ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    watch = Watch()
    original_build, original_read = commands._build, SecretReader._read

    def build(name: str, *arguments: Any) -> commands.Command:
        watch.built.append(name)
        return original_build(name, *arguments)

    def read(self: SecretReader, arn: str) -> dict[str, Any]:
        watch.secret_reads += 1
        return original_read(self, arn)

    secrets = LabSecrets.generate()
    appliances = start_appliances(
        3,
        distinct_hosts=True,
        initialized=True,
        admin_password=secrets.admin_password,
        domain=secrets.domain,
        key_type="ec",
    )
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        patch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
        patch.setenv("LUNA_HA_RESPONSE_MARGIN_SECONDS", "2")
        patch.setattr(commands, "_build", build)
        patch.setattr(SecretReader, "_read", read)
        try:
            with local_aws():
                seed_secrets(appliances, secrets)
                with LocalCloudFormation(_handler(), timeout_seconds=10, environment_factory=_handler) as cfn:
                    yield World(appliances, cfn, watch, tmp_path_factory.mktemp("bad") / "group")
        finally:
            stop_appliances(appliances)


def _handler() -> Any:
    from luna_ha import app

    return app.build_handler()


# --------------------------------------------------------------------------------------------------
# Bad values, by kind of property (each is bad for every property of its kind)

SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
INJECTIONS = [
    "pay;ments",
    "payments; hsm init -label x -force",
    "pay\nments",
    "payments\r\nclient delete -client web -force",
    "pay'ments",
    'pay"ments',
    "payments -force",
    "payments -partition orders",
    "-force",
    "--help",
    "-partition",
    "pay ments",
    "pay`id`ments",
    "$(reboot)",
    "pay|ments",
    "pay>ments",
    "pay\\ments",
    "pay\tments",
    "pay\x00ments",
    "pay*",
]
unicode_values = st.builds(
    lambda head, char, tail: "p" + head + char + tail,
    st.text(SAFE, max_size=8),
    st.characters(min_codepoint=0x80, exclude_categories=["Cs"]),
    st.text(SAFE, max_size=8),
)
huge_values = st.builds(lambda n, c: c * n, st.integers(600, 300_000), st.sampled_from("ab7-"))
wrong_types = st.one_of(
    st.lists(st.text(SAFE, max_size=5), max_size=3),
    st.dictionaries(st.text(SAFE, min_size=1, max_size=5), st.text(SAFE, max_size=5), max_size=2),
)
injections = st.one_of(
    st.sampled_from(INJECTIONS),
    st.builds(
        lambda head, bad, tail: "a" + head + bad + tail,
        st.text(SAFE, max_size=6),
        st.sampled_from([";", "\n", "\r", '"', "'", " ", "`", "$", "|", "&", "<", ">", "\\", "\x00"]),
        st.text(SAFE, max_size=6),
    ),
)
bad_names = st.one_of(injections, unicode_values, huge_values, wrong_types)
bad_secret_refs = st.one_of(
    st.sampled_from([i for i in INJECTIONS if not set(i) <= set(SAFE + "/_+=.@-")]),
    unicode_values,
    st.builds(lambda n: "a" * n, st.integers(513, 100_000)),
    wrong_types,
)
bad_ports = st.one_of(
    st.sampled_from(
        ["0", "65536", "022", "-1", "+22", "22 -force", "2 2", "0x16", "22;", "1e3", "99999999999999"]
    ),
    unicode_values,
    huge_values,
    wrong_types,
)
BAD: dict[str, st.SearchStrategy[Any]] = {
    "GroupLabel": bad_names,
    "PartitionName": bad_names,
    "Clients[0].Name": bad_names,
    "Clients[1].Name": bad_names,
    "Appliances[1].HsmLabel": bad_names,
    "Appliances[1].Host": bad_names,
    "Appliances[2].Port": bad_ports,
    "Clients[1].Rotation": bad_ports.filter(lambda v: v not in ("0", "65536")) | st.just("1000001"),
    "Appliances[0].ManagerSecretArn": bad_secret_refs,
    "AdminSecretArn": bad_secret_refs,
    "PartitionSecretArn": bad_secret_refs,
    # a path never reaches lunash: "-force" is a fine path segment
    "ParameterPath": st.one_of(
        injections.filter(lambda v: not re.fullmatch(r"[A-Za-z0-9_.-]+", v)).map(lambda v: "/luna-ha/" + v),
        unicode_values,
        wrong_types,
    ),
    "KmsKeyId": bad_names,
    "PartitionDeletionPolicy": bad_names,
    "Appliances[1].Initialize": bad_names,
    "Appliances[0].HostKey": bad_names,
}


def put(props: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``props`` with the property at ``path`` (``Appliances[1].Port``) set to ``value``."""
    target: Any = props
    parts = path.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    target[parts[-1]] = value
    return props


@st.composite
def bad_properties(draw: st.DrawFn, world: World) -> tuple[str, dict[str, Any]]:
    """A valid property set with one property made bad; the path the error must name."""
    path = draw(st.sampled_from(sorted(BAD)))
    value = draw(BAD[path])
    # CloudFormation delivers every scalar as a string: a value that stringifies to a valid one is not bad
    assume(not (path == "Appliances[1].Initialize" and value in ("true", "false", "True", "FALSE")))
    return path, put(world.valid(), path, value)


duplicate_hosts = st.sampled_from(
    [
        ("127.0.0.1", "127.0.0.1"),
        ("hsm-a.example.com", "HSM-A.example.COM"),
        ("::1", "0:0:0:0:0:0:0:1"),
        ("2001:db8::10", "2001:DB8:0:0::10"),
    ]
)


# --------------------------------------------------------------------------------------------------
# Through the handler


def create_and_roll_back(world: World, props: dict[str, Any]) -> Response:
    """A Create with ``props``, then the rollback Delete CloudFormation sends after a FAILED one."""
    event = world.cfn.create_event(LOGICAL, props)
    response = world.cfn.invoke(event)
    assert world.cfn.receiver.counts()[event["RequestId"]] == 1
    if response.status == "FAILED":
        rollback = world.cfn.invoke(world.cfn.delete_event(LOGICAL, response.physical_resource_id, props))
        assert rollback.status == "SUCCESS", rollback.describe()
    return response


def assert_well_formed_reason(reason: str, path: str) -> None:
    assert reason.startswith(f"Property {path}: "), reason
    assert len(reason) <= 256 and reason.isascii() and reason.isprintable(), reason


def assert_nothing_reached(world: World, before: tuple[int, list[str]]) -> None:
    contacts, parameters = before
    assert world.contacts() == contacts, "an appliance was contacted"
    assert world.watch.built == [], f"lunash commands were built: {world.watch.built}"
    assert world.watch.secret_reads == 0, "a secret was read"
    assert world.parameters() == parameters, "a parameter was written"


def observe(world: World) -> tuple[int, list[str]]:
    world.watch.reset()
    return world.contacts(), world.parameters()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_bad_properties_fail_naming_the_property_and_reach_nothing(world: World, data: st.DataObject) -> None:
    path, props = data.draw(bad_properties(world))
    before = observe(world)

    response = create_and_roll_back(world, props)

    assert response.status == "FAILED", f"{path} accepted: {response.describe()}"
    assert_well_formed_reason(response.reason, path)
    assert response.physical_resource_id.startswith("luna-ha/")
    assert response.body_size < 4096
    assert_nothing_reached(world, before)


@settings(max_examples=15, deadline=None)
@given(hosts=duplicate_hosts, port=st.sampled_from(["22", "2222"]))
def test_duplicate_hosts_fail_naming_the_second_one(world: World, hosts: tuple[str, str], port: str) -> None:
    props = world.valid()
    props["Appliances"][0]["Host"], props["Appliances"][2]["Host"] = hosts
    props["Appliances"][2]["Port"] = port
    before = observe(world)

    response = create_and_roll_back(world, props)

    assert response.status == "FAILED"
    assert_well_formed_reason(response.reason, "Appliances[2].Host")
    assert "may appear only once" in response.reason
    assert_nothing_reached(world, before)


def test_an_update_to_bad_properties_fails_naming_them_and_reaches_nothing(world: World) -> None:
    good, bad = world.valid(), put(world.valid(), "Clients[0].Name", "web\nclient delete -client x -force")
    before = observe(world)

    response = world.cfn.invoke(world.cfn.update_event(LOGICAL, "luna-ha/x/Group/payments/0", bad, good))

    assert response.status == "FAILED"
    assert_well_formed_reason(response.reason, "Clients[0].Name")
    assert response.physical_resource_id == "luna-ha/x/Group/payments/0"
    assert_nothing_reached(world, before)


# --------------------------------------------------------------------------------------------------
# Through the CLI


def run_cli(world: World, content: bytes, command: str = "apply") -> tuple[int, str, str]:
    world.group_file.write_bytes(content)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main([command, "-c", str(world.group_file)], out=out)
    return code, out.getvalue(), err.getvalue()


def serialize(props: dict[str, Any], form: str) -> bytes:
    if form == "json":
        return json.dumps(props).encode()
    return yaml.safe_dump(props, sort_keys=False, allow_unicode=True, width=1 << 20).encode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    form=st.sampled_from(["yaml", "json"]),
    command=st.sampled_from(["plan", "apply", "destroy"]),
)
def test_bad_group_files_fail_naming_the_property_and_reach_nothing(
    world: World, data: st.DataObject, form: str, command: str
) -> None:
    path, props = data.draw(bad_properties(world))
    props = {k: v for k, v in props.items() if k != "ServiceToken"}
    before = observe(world)

    code, out, err = run_cli(world, serialize(props, form), command)

    assert code == 1, out + err
    line = err.strip()
    assert line.startswith(f"error: Property {path}: ") or line.startswith("error: Group file "), line
    assert "\n" not in line and line.isascii() and len(line) < 700, line
    assert_nothing_reached(world, before)


group_file_noise = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=2000).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"",
            b"\xef\xbb\xbf",
            b"- a\n- b\n",
            b"GroupLabel: [\n",
            b'{"GroupLabel": "a", "GroupLabel": "b"}',
            b"GroupLabel: a\nGroupLabel: b\n",
            b"!!python/object/apply:os.system ['echo pwned']\n",
            b"GroupLabel: !!python/name:os.system\n",
            b"a: &a [*a]\n",
            b"x: &x ['lol','lol']\ny: &y [*x,*x,*x,*x,*x,*x,*x,*x,*x]\nz: [*y,*y,*y,*y,*y,*y,*y,*y,*y]\n",
            b"[" * 50_000 + b"]" * 50_000,
            b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
            b"? [a, b]\n: c\n",
            b"1: one\n",
            b"\x00\x01\x02",
            "GroupLabel: p\u00e4yments\n".encode("utf-16"),
            b"a" * (1 << 20) + b"a",
        ]
    ),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=group_file_noise)
def test_any_file_content_gets_an_error_not_a_traceback(world: World, content: bytes) -> None:
    before = observe(world)

    code, out, err = run_cli(world, content, "plan")

    assert code == 1, out + err
    line = err.strip()
    assert line.startswith(("error: Property ", "error: Group file ")), line
    assert "Traceback" not in err and line.isascii() and len(line) < 700, line
    assert_nothing_reached(world, before)


def test_the_valid_file_used_above_is_valid_and_does_reach_the_appliances(world: World) -> None:
    """The counterpart: the same file without the bad value passes validation (so the tests above
    fail because of the value they change, not because of something else in the file)."""
    props = {k: v for k, v in world.valid().items() if k != "ServiceToken"}
    world.watch.reset()
    code, out, err = run_cli(world, serialize(props, "yaml"), "plan")
    assert code == 3, out + err  # plan: valid, and changes pending
    assert world.watch.built and world.contacts() > 0
