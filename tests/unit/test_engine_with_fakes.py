"""The engine as a specification, on fakes: no socket, no SSH, no moto server.

Each appliance is the simulator's lunash state machine (``ShellSession`` over an ``ApplianceModel``)
behind :class:`SimShell`, an ``ApplianceShell`` of about fifteen lines given to the engine through its
``shell_factory``; uploads and downloads go straight to the model's home directory. The engine's
Secrets Manager, Parameter Store and coordination table adapters take boto3 clients and have no
other seam, so AWS is moto in process (the ``aws`` fixture), which keeps each test well under a
second.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from luna_ha.clock import Deadline
from luna_ha.coordination import Coordinator, create_table
from luna_ha.engine import Engine, GroupRunError
from luna_ha.handshake import SshTarget
from luna_ha.lunash.commands import Command
from luna_ha.lunash.dialect import Outcome
from luna_ha.ownership import ownership_token
from luna_ha.secrets import SecretReader
from luna_ha.shell import CommandRecord, Output
from luna_ha.sim.appliance import ApplianceModel, Journal, ShellSession
from luna_ha.sim.keys import key_line, make_ed25519_host_key
from luna_ha.spec import GroupSpec, host_key_fingerprint, parse_properties
from luna_ha.store import ParameterStore

ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo/1|Group|payments"
TOKEN = ownership_token(ID)
PATH = "/luna-ha/payments"
TABLE = "luna-ha-coordination"
HOSTS = ("127.0.0.1", "127.0.0.2")


class SimShell:
    """An ApplianceShell on the simulator's lunash state machine, without a socket."""

    def __init__(self, model: ApplianceModel, journal: Journal, host: str) -> None:
        self.session, self.files, self.host = ShellSession(model, journal, "fake"), model.files, host

    def __enter__(self) -> SimShell:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, command: Command, *, step: str | None = None, tolerate: Collection[Outcome] = ()) -> Output:
        body = self.session.feed(command.text).replace("\r\n", "\n").rsplit("\n", 1)[0]  # less the prompt
        return Output.parse(body).checked(self.host, step or command.name, command, tolerate)

    def put_file(self, name: str, data: bytes, *, step: str) -> None:
        self.files[name] = data

    def get_file(self, name: str, *, step: str) -> bytes:
        return self.files[name]

    def close(self) -> None:
        self.session.feed("exit")


@dataclass
class Appliance:
    host: str
    model: ApplianceModel
    journal: Journal = field(default_factory=Journal)
    key_line: str = field(default_factory=lambda: key_line(make_ed25519_host_key()))

    def clients(self) -> dict[str, list[str]]:
        return {name: client.partitions for name, client in self.model.clients.items()}

    def sent(self, command: str) -> list[str]:
        return [e.line for e in self.journal.commands() if e.command == command]


@dataclass
class Group:
    """Two initialized appliances, their secrets in moto, and an engine that reaches them by fakes."""

    appliances: dict[str, Appliance]
    admin_password: str = field(repr=False)

    def spec(self, rotation: int = 0) -> GroupSpec:
        return parse_properties(
            {
                "GroupLabel": "payments-ha",
                "PartitionName": "payments",
                "AdminSecretArn": "luna/admin",
                "PartitionSecretArn": "luna/partition",
                "Appliances": [
                    {
                        "Host": a.host,
                        "Port": 22,
                        "HostKey": a.key_line,
                        "ManagerSecretArn": f"luna/manager/{h}",
                    }
                    for h, a in self.appliances.items()
                ],
                "Clients": [{"Name": "web", "Rotation": rotation}],
            }
        )

    def shell(
        self, target: SshTarget, deadline: Deadline, observer: Callable[[CommandRecord], None]
    ) -> SimShell:
        a = self.appliances[target.host]
        return SimShell(a.model, a.journal, target.label)

    def engine(self) -> Engine:
        return Engine(
            secrets=SecretReader(boto3.client("secretsmanager")),
            store=ParameterStore(boto3.client("ssm")),
            coordinator=Coordinator(boto3.client("dynamodb"), TABLE),
            shell_factory=self.shell,
        )

    def parameters(self) -> dict[str, str]:
        pages = boto3.client("ssm").get_paginator("get_parameters_by_path")
        found = pages.paginate(Path=PATH, Recursive=True, WithDecryption=True)
        return {p["Name"]: p["Value"] for page in found for p in page["Parameters"]}

    def mutating(self) -> list[str]:
        return [e.line for a in self.appliances.values() for e in a.journal.mutating()]


@pytest.fixture
def group(aws: None) -> Iterator[Group]:
    admin, domain, partition = ("s" + secrets.token_urlsafe(12) for _ in range(3))
    appliances = {
        host: Appliance(host, _model(f"hsm-{i}", f"15000{i}", admin, domain)) for i, host in enumerate(HOSTS)
    }
    every = [host_key_fingerprint(a.key_line) for a in appliances.values()]
    sm = boto3.client("secretsmanager")
    sm.create_secret(Name="luna/admin", SecretString=_json(password=admin, domain=domain, appliances=every))
    sm.create_secret(Name="luna/partition", SecretString=_json(password=partition, appliances=every))
    for host, a in appliances.items():
        manager = _json(username="manager", password="unused", appliances=[host_key_fingerprint(a.key_line)])
        sm.create_secret(Name=f"luna/manager/{host}", SecretString=manager)
    create_table(boto3.client("dynamodb"), TABLE)
    yield Group(appliances, admin)


def _model(hostname: str, serial: str, admin: str, domain: str) -> ApplianceModel:
    return ApplianceModel.create(
        hostname=hostname, serial=serial, key_type="ec", initialized=True, admin_password=admin, domain=domain
    )


def _json(**values: Any) -> str:
    return json.dumps(values)


def web(rotation: int) -> str:
    return f"web-{TOKEN}-r{rotation}"


# -- the specification ---------------------------------------------------------------------------


def test_a_create_brings_both_appliances_to_the_goal_and_publishes_the_group(group: Group) -> None:
    assert group.engine().apply(group.spec(), ID).ok
    assert [a.clients() for a in group.appliances.values()] == [{web(0): ["payments"]}] * 2
    document = json.loads(group.parameters()[f"{PATH}/group"])
    assert [m["serial"] for m in document["members"]] == [
        a.model.partitions["payments"].serial for a in group.appliances.values()
    ]


def test_a_second_apply_does_nothing(group: Group) -> None:
    group.engine().apply(group.spec(), ID)
    before = group.mutating()
    assert group.engine().apply(group.spec(), ID).parameters_put == ()
    assert group.mutating() == before


def test_a_rotation_registers_the_new_certificate_before_revoking_the_old(group: Group) -> None:
    for rotation in (0, 1, 2):
        group.engine().apply(group.spec(rotation), ID)
    lines = [e.line for e in next(iter(group.appliances.values())).journal.mutating()]
    registered = next(
        i for i, line in enumerate(lines) if line.startswith(f"client register -client {web(2)}")
    )
    revoked = next(
        i for i, line in enumerate(lines) if line.startswith(f"client revokePartition -client {web(0)}")
    )
    assert registered < revoked


def test_a_destroy_keeps_the_partition(group: Group) -> None:
    group.engine().apply(group.spec(), ID)
    assert group.engine().destroy(group.spec(), ID).ok
    assert all("payments" in a.model.partitions and not a.clients() for a in group.appliances.values())
    assert group.parameters() == {}


def test_a_wrong_admin_password_logs_in_once_and_fails_naming_appliance_and_step(group: Group) -> None:
    first = group.appliances[HOSTS[0]]
    first.model.admin_password = "not-" + group.admin_password
    with pytest.raises(GroupRunError, match=r"Appliance 127\.0\.0\.1, step 'hsm login'"):
        group.engine().apply(group.spec(), ID)
    assert len(first.sent("hsm login")) == 1 and first.model.attempts_left == 2


def test_an_appliances_failure_leaves_the_other_converged(group: Group) -> None:
    group.appliances[HOSTS[0]].model.admin_password = "not-" + group.admin_password
    with pytest.raises(GroupRunError) as caught:
        group.engine().apply(group.spec(), ID)
    assert [a.ok for a in caught.value.report.appliances] == [False, True]
    assert group.appliances[HOSTS[1]].clients() == {web(0): ["payments"]}
