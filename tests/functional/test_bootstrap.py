"""The ASG-member bootstrap against moto (SSM, Secrets Manager) and the simulated vtl / lunacm."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from luna_ha.certs import ClientCredential, generate_client_credential
from luna_ha.client.bootstrap import (
    LUNA_PROVIDER,
    BootstrapParameterError,
    BootstrapReport,
    MalformedParameter,
    MissingParameter,
    bootstrap,
)
from luna_ha.client.chrystoki import find_ha_group, parse_chrystoki, registered_servers
from luna_ha.client.cli import bootstrap_main
from luna_ha.client.tools import ClientTools, CompletedRun
from luna_ha.errors import ClientToolError, PartitionNotReady, SecretError
from luna_ha.layout import (
    GroupDocument,
    Member,
    Parameter,
    build_layout,
    client_key_name,
    plan_parameters,
    server_cert_name,
)
from luna_ha.sim.client_tools import install_simulated_client, partitions_json
from luna_ha.sim.state import ApplianceModel, RegisteredClient
from luna_ha.store import ParameterStore

PATH = "/luna-ha/payments"
LABEL = "payments-ha"
HOSTS = ("10.0.1.10", "10.0.1.11", "fd00::12")
SERIALS = ("150", "151", "152")
PASSWORD = "Partition-Pa55-NEVER-SHOWN"
GEN0, GEN1 = "web-3f2a1c-r0", "web-3f2a1c-r1"
GENERATIONS = ("5.1", "5.3", "7")


@dataclass(frozen=True)
class Material:
    clients: dict[str, ClientCredential]
    servers: dict[str, str]
    other_server: str

    def key_markers(self) -> list[str]:
        """Distinctive lines of every private key: none may appear anywhere but in a key file."""
        return [c.key_pem.splitlines()[3] for c in self.clients.values()]


@pytest.fixture(scope="module")
def material() -> Material:
    now = datetime.now(UTC)
    clients = {g: generate_client_credential(g, now=now) for g in (GEN0, GEN1, "api-3f2a1c-r0")}
    servers = {h: generate_client_credential(f"hsm-{i}", now=now).cert_pem for i, h in enumerate(HOSTS)}
    other = generate_client_credential("hsm-regenerated", now=now).cert_pem
    return Material(clients, servers, other)


@dataclass
class World:
    tmp: Path
    material: Material
    ssm: Any
    secrets: Any
    arn: str
    generation: str = "5.3"
    root: Path = field(init=False)
    config: Path = field(init=False)
    env_file: Path = field(init=False)
    journal: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.tmp / ("usr/lunasa" if self.generation == "5.1" else "usr/safenet/lunaclient")
        self.config = install_simulated_client(
            self.root, self.generation, config_path=self.tmp / "etc/Chrystoki.conf"
        )
        self.env_file = self.tmp / "etc/luna-ha.env"
        self.journal = self.tmp.parent / f"{self.tmp.name}-journal.jsonl"

    def publish(
        self,
        *,
        current: str = GEN0,
        hosts: tuple[str, ...] = HOSTS,
        servers: dict[str, str] | None = None,
        clients: tuple[str, ...] = ("web",),
        serials: Mapping[str, str] | None = None,
    ) -> None:
        serial_of = dict(serials or zip(HOSTS, SERIALS, strict=True))
        document = GroupDocument(
            owner="stack-Group-payments-1a2b3c",
            label=LABEL,
            partition="payments",
            members=tuple(Member(h, serial_of[h], server_cert_name(PATH, h)) for h in hosts),
            ha_group_serial="1" + serial_of[hosts[0]],
            partition_secret_arn=self.arn,
            kms_key_id=None,
            clients={name: (current if name == "web" else "api-3f2a1c-r0") for name in clients},
        )
        certs = servers or self.material.servers
        generations: dict[str, dict[str, tuple[str, str]]] = {}
        for name in clients:
            gens = [GEN0, GEN1][: 2 if current == GEN1 else 1] if name == "web" else ["api-3f2a1c-r0"]
            generations[name] = {
                g: (self.material.clients[g].cert_pem, self.material.clients[g].key_pem) for g in gens
            }
        desired = build_layout(PATH, document, {h: certs[h] for h in hosts}, generations)
        store = ParameterStore(self.ssm)
        store.apply(plan_parameters(desired, store.read(PATH), rewrite_secure=False))

    def tools(self) -> ClientTools:
        return ClientTools(self.root, self.generation, config_path=self.config, timeout=20)

    def run(self, client: str | None = "web", **kwargs: Any) -> BootstrapReport:
        return bootstrap(
            PATH,
            client,
            ssm_client=self.ssm,
            secrets_client=self.secrets,
            luna_root=self.root,
            config_path=self.config,
            env_file=self.env_file,
            tools=kwargs.pop("tools", None) or self.tools(),
            **kwargs,
        )

    def conf(self) -> Any:
        return parse_chrystoki(self.config.read_text())

    def snapshot(self) -> dict[str, tuple[int, int, int, bytes]]:
        """Every file under the tree: inode, mtime, mode and bytes."""
        out = {}
        for path in sorted(self.tmp.rglob("*")):
            if path.is_file():
                st = path.stat()
                out[str(path.relative_to(self.tmp))] = (
                    st.st_ino,
                    st.st_mtime_ns,
                    st.st_mode,
                    path.read_bytes(),
                )
        return out

    def sim_journal(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines()]


@pytest.fixture
def make_world(
    aws: None, tmp_path: Path, material: Material, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    ssm = boto3.client("ssm")
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name="luna/partition", SecretString=json.dumps({"password": PASSWORD}))["ARN"]
    monkeypatch.setenv(
        "LUNA_HA_SIM_PARTITIONS",
        json.dumps({h: {s: "payments"} for h, s in zip(HOSTS, SERIALS, strict=True)}),
    )
    monkeypatch.setenv("LUNA_HA_SIM_PASSWORD", PASSWORD)
    monkeypatch.delenv("LUNA_HA_SIM_FAULTS", raising=False)
    count = iter(range(100))

    def make(generation: str = "5.3", publish: bool = True) -> World:
        tree = tmp_path / f"tree{next(count)}"
        tree.mkdir()
        world = World(tree, material, ssm, secrets, arn, generation)
        monkeypatch.setenv("LUNA_HA_SIM_JOURNAL", str(world.journal))
        if publish:
            world.publish()
        return world

    yield make


def assert_no_secret(text: str, material: Material, where: str) -> None:
    assert PASSWORD not in text, where
    for marker in material.key_markers():
        assert marker not in text, where


# --- first boot, per client generation -----------------------------------------------------------

HA_COMMANDS = {
    "5.1": [
        ["haAdmin", "-newGroup", "-serialNum", "150", "-label", LABEL],
        ["haAdmin", "-addMember", "-serialNum", "151", "-group", "1150"],
        ["haAdmin", "-addMember", "-serialNum", "152", "-group", "1150"],
        ["haAdmin", "-HAOnly", "-enable"],
        ["haAdmin", "-autoRecovery", "-retry", "500"],
    ],
    "5.3": [
        ["haAdmin", "newGroup", "-serialNum", "150", "-label", LABEL],
        ["haAdmin", "addMember", "-group", "1150", "-serialNum", "151"],
        ["haAdmin", "addMember", "-group", "1150", "-serialNum", "152"],
        ["haAdmin", "HAOnly", "-enable"],
        ["haAdmin", "autoRecovery", "-retry", "500"],
    ],
    "7": [
        ["-c", "hagroup", "createGroup", "-label", LABEL, "-serialNumber", "150"],
        ["-c", "hagroup", "addMember", "-group", LABEL, "-serialNumber", "151"],
        ["-c", "hagroup", "addMember", "-group", LABEL, "-serialNumber", "152"],
        ["-c", "hagroup", "haonly", "-enable"],
        ["-c", "hagroup", "recoveryMode", "-mode", "activeEnhanced"],
    ],
}


@pytest.mark.parametrize("generation", GENERATIONS)
def test_first_boot_configures_the_client(make_world: Any, generation: str) -> None:
    world: World = make_world(generation)
    report = world.run()

    cert_dir = world.root / "cert" / "client"
    key_file, cert_file = cert_dir / f"{GEN0}Key.pem", cert_dir / f"{GEN0}.pem"
    assert key_file.read_text() == world.material.clients[GEN0].key_pem
    assert cert_file.read_text() == world.material.clients[GEN0].cert_pem
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert cert_file.stat().st_mode & 0o777 == 0o644
    server_files = sorted(p.name for p in (world.root / "cert" / "server").glob("*.pem"))
    assert server_files == ["10.0.1.10.pem", "10.0.1.11.pem", "CAFile.pem", "fd00_3a_3a12.pem"]
    assert (world.root / "cert/server/CAFile.pem").read_text().count("BEGIN CERTIFICATE") == 3
    assert not list(world.tmp.rglob(".*.tmp"))  # no temporary file left behind

    conf = world.conf()
    assert conf.get("LunaSA Client", "ClientCertFile") == str(cert_file)
    assert conf.get("LunaSA Client", "ClientPrivKeyFile") == str(key_file)
    assert registered_servers(conf) == list(HOSTS)
    assert conf.get("LunaSA Client", "ServerPort02") == "1792"
    group = find_ha_group(conf, LABEL)
    assert group is not None and group.serial == "1150" and group.members == SERIALS
    assert conf.get("HASynchronize", LABEL) == "1"
    assert conf.get("HAConfiguration", "HAOnly") == "1"
    if generation == "7":
        assert conf.get("VirtualToken", "VirtualTokenActiveRecovery") == "activeEnhanced"
    else:
        assert conf.get("HAConfiguration", "reconnAtt") == "500"
    assert conf.get("Luna", "DefaultTimeOut") == "500000"  # the rest of the file is untouched

    assert world.env_file.read_text() == (
        "# Written by luna-ha client bootstrap; re-run it rather than editing this file.\n"
        f"LUNA_HA_GROUP_LABEL={LABEL}\nLUNA_HA_GROUP_SERIAL=1150\nLUNA_HA_SLOT=1\n"
        f"LUNA_HA_CLIENT_GENERATION={GEN0}\n"
    )
    assert (report.group_serial, report.slot, report.client, report.generation) == ("1150", 1, "web", GEN0)
    assert report.client_generation == generation
    assert report.warnings == ()

    journal = world.sim_journal()
    ha = [entry["args"] for entry in journal if entry["tool"] == ("lunacm" if generation == "7" else "vtl")]
    assert [args for args in ha if args[0] in {"haAdmin", "-c"}] == HA_COMMANDS[generation]
    adds = [entry["args"] for entry in journal if entry["command"] == "addServer"]
    assert [a[2] for a in adds] == list(HOSTS)
    assert len(report.mutating_commands) == 3 + 5
    assert not any(entry["secret_on_command_line"] for entry in journal)
    with_password = [entry["command"] for entry in journal if entry["password_from"]]
    assert len(with_password) == 3  # the group and its two other members
    assert {entry["password_from"] for entry in journal if entry["password_from"]} == {"prompt"}


# --- idempotency ---------------------------------------------------------------------------------


@pytest.mark.parametrize("generation", GENERATIONS)
def test_rerun_with_nothing_changed_writes_nothing_and_mutates_nothing(
    make_world: Any, generation: str
) -> None:
    world: World = make_world(generation)
    world.run()
    before = world.snapshot()
    marks = len(world.sim_journal())

    report = world.run()

    assert world.snapshot() == before
    assert report.changes == () and report.files_written == () and not report.changed
    assert report.mutating_commands == ()
    assert report.commands == ("vtl listServers", "vtl verify", "vtl listSlots")
    assert [e for e in world.sim_journal()[marks:] if e["mutating"]] == []


def test_rerun_reads_no_secret_when_the_group_is_complete(make_world: Any) -> None:
    world: World = make_world()
    world.run()
    world.secrets.delete_secret(SecretId=world.arn, ForceDeleteWithoutRecovery=True)
    assert not world.run().changed


# --- rotation and other published changes --------------------------------------------------------


def test_rotation_switches_cert_key_and_chrystoki_to_the_new_generation(make_world: Any) -> None:
    world: World = make_world()
    world.run()
    world.publish(current=GEN1)
    marks = len(world.sim_journal())

    report = world.run()

    cert_dir = world.root / "cert" / "client"
    conf = world.conf()
    assert conf.get("LunaSA Client", "ClientCertFile") == str(cert_dir / f"{GEN1}.pem")
    assert conf.get("LunaSA Client", "ClientPrivKeyFile") == str(cert_dir / f"{GEN1}Key.pem")
    assert (cert_dir / f"{GEN1}Key.pem").read_text() == world.material.clients[GEN1].key_pem
    assert (cert_dir / f"{GEN1}Key.pem").stat().st_mode & 0o777 == 0o600
    assert f"LUNA_HA_CLIENT_GENERATION={GEN1}\n" in world.env_file.read_text()
    assert report.generation == GEN1
    assert report.mutating_commands == ()  # servers and group stay as they are
    assert [e for e in world.sim_journal()[marks:] if e["mutating"]] == []
    assert sorted(Path(f).name for f in report.files_written) == sorted(
        [f"{GEN1}.pem", f"{GEN1}Key.pem", "Chrystoki.conf", "luna-ha.env"]
    )
    # and once switched, a re-run is quiet again
    assert not world.run().changed


def test_added_appliance_is_registered_and_added_to_the_group(make_world: Any) -> None:
    world: World = make_world(publish=False)
    world.publish(hosts=HOSTS[:2])
    world.run()
    world.publish(hosts=HOSTS)

    report = world.run()

    assert [c.split()[1] for c in report.mutating_commands] == ["addServer", "haAdmin"]
    assert "addMember" in report.mutating_commands[1] and "152" in report.mutating_commands[1]
    group = find_ha_group(world.conf(), LABEL)
    assert group is not None and group.members == SERIALS


def test_changed_server_certificate_is_registered_again(make_world: Any) -> None:
    world: World = make_world()
    world.run()
    servers = dict(world.material.servers)
    servers[HOSTS[1]] = world.material.other_server
    world.publish(servers=servers)

    report = world.run()

    assert report.mutating_commands == (
        f"vtl deleteServer -n {HOSTS[1]}",
        f"vtl addServer -n {HOSTS[1]} -c {world.root}/cert/server/{HOSTS[1]}.pem",
    )
    ca = (world.root / "cert/server/CAFile.pem").read_text()
    assert world.material.other_server.strip() in ca and world.material.servers[HOSTS[1]].strip() not in ca
    assert registered_servers(world.conf()) == [HOSTS[0], HOSTS[2], HOSTS[1]]


def test_removed_first_member_rebuilds_the_group(make_world: Any) -> None:
    world: World = make_world()
    world.run()
    world.publish(hosts=HOSTS[1:])

    report = world.run()

    group = find_ha_group(world.conf(), LABEL)
    assert group is not None and group.members == ("151", "152") and group.serial == "1151"
    assert report.group_serial == "1151"
    assert "LUNA_HA_GROUP_SERIAL=1151\n" in world.env_file.read_text()


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "parameter", "error"),
    [
        ("delete_server_cert", f"{PATH}/servers/fd00_3a_3a12/cert", MissingParameter),
        ("delete_key", f"{PATH}/clients/web/{GEN0}/key", MissingParameter),
        ("delete_group", f"{PATH}/group", MissingParameter),
        ("garble_group", f"{PATH}/group", MalformedParameter),
        ("garble_current", f"{PATH}/clients/web/current", MalformedParameter),
        ("garble_cert", f"{PATH}/clients/web/{GEN0}/cert", MalformedParameter),
    ],
)
def test_missing_or_malformed_parameter_fails_before_anything_is_written(
    make_world: Any, damage: str, parameter: str, error: type[Exception]
) -> None:
    world: World = make_world()
    ssm = world.ssm
    if damage == "delete_server_cert":
        ssm.delete_parameter(Name=server_cert_name(PATH, HOSTS[2]))
    elif damage == "delete_key":
        ssm.delete_parameter(Name=client_key_name(PATH, "web", GEN0))
    elif damage == "delete_group":
        ssm.delete_parameter(Name=f"{PATH}/group")
    elif damage == "garble_group":
        ssm.put_parameter(Name=f"{PATH}/group", Value='{"label": 1}', Type="String", Overwrite=True)
    elif damage == "garble_current":
        ssm.put_parameter(
            Name=f"{PATH}/clients/web/current", Value="../../etc", Type="String", Overwrite=True
        )
    else:
        ssm.put_parameter(
            Name=f"{PATH}/clients/web/{GEN0}/cert", Value="not a cert", Type="String", Overwrite=True
        )
    before = world.snapshot()

    with pytest.raises(error) as info:
        world.run()

    assert isinstance(info.value, BootstrapParameterError) and info.value.parameter == parameter
    assert parameter in str(info.value)
    assert world.snapshot() == before
    assert [e for e in world.sim_journal() if e["mutating"]] == []


def test_unreadable_partition_secret_fails_before_anything_is_written(make_world: Any) -> None:
    world: World = make_world()
    world.secrets.delete_secret(SecretId=world.arn, ForceDeleteWithoutRecovery=True)
    before = world.snapshot()
    with pytest.raises(SecretError, match="cannot be read: ResourceNotFoundException"):
        world.run()
    assert world.snapshot() == before


def test_client_choice(make_world: Any) -> None:
    world: World = make_world(publish=False)
    world.publish(clients=("web", "api"))
    with pytest.raises(BootstrapParameterError, match=r"2 clients are published \(api, web\): pass --client"):
        world.run(client=None)
    with pytest.raises(MissingParameter, match=f"{PATH}/clients/db/current"):
        world.run(client="db")
    assert world.run(client="api").generation == "api-3f2a1c-r0"


def test_only_client_is_used_without_client_option(make_world: Any) -> None:
    world: World = make_world()
    assert world.run(client=None).client == "web"


@pytest.mark.parametrize(
    ("fault", "command"),
    [
        (
            "haAdmin newGroup=error0",
            "vtl haAdmin newGroup -serialNum 150 -label payments-ha",
        ),
        ("verify=error0", "vtl verify"),
        ("addServer=exit3", "vtl addServer -n 10.0.1.10"),
    ],
)
def test_tool_failure_is_named(
    make_world: Any, monkeypatch: pytest.MonkeyPatch, fault: str, command: str
) -> None:
    world: World = make_world()
    monkeypatch.setenv("LUNA_HA_SIM_FAULTS", fault)
    with pytest.raises(ClientToolError) as info:
        world.run()
    message = str(info.value)
    assert message.startswith(command)
    assert ("exit status 0): Error: simulated fault" in message) or (
        "exit status 3): simulated failure" in message
    )
    assert PASSWORD not in message
    monkeypatch.delenv("LUNA_HA_SIM_FAULTS")
    assert world.run().changed  # the next run converges the rest
    assert not world.run().changed


def test_unreachable_partition_fails_verify_before_any_group_command(
    make_world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world: World = make_world()
    monkeypatch.setenv("LUNA_HA_SIM_PARTITIONS", json.dumps({HOSTS[0]: ["150"], HOSTS[1]: ["151"]}))
    with pytest.raises(ClientToolError, match=r"vtl verify does not list the partition\(s\) 152 of fd00::12"):
        world.run()
    assert not [e for e in world.sim_journal() if e["command"].startswith("haAdmin")]


def test_wrong_partition_password_fails_without_showing_it(
    make_world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world: World = make_world()
    monkeypatch.setenv("LUNA_HA_SIM_PASSWORD", "the-right-one")
    with pytest.raises(ClientToolError, match="CKR_PIN_INCORRECT") as info:
        world.run()
    assert PASSWORD not in str(info.value)


def test_tool_timeout(make_world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    world: World = make_world()
    monkeypatch.setenv("LUNA_HA_SIM_FAULTS", "listServers=hang")
    tools = ClientTools(world.root, world.generation, config_path=world.config, timeout=1)
    with pytest.raises(ClientToolError, match=r"vtl listServers: no answer within 1 s"):
        world.run(tools=tools)


# --- no secret on a command line ----------------------------------------------------------------


@pytest.mark.parametrize("generation", GENERATIONS)
def test_no_tool_ever_has_the_partition_password_on_its_command_line(
    make_world: Any, generation: str
) -> None:
    """What any local user sees in /proc/<pid>/cmdline of every tool the bootstrap starts, read
    while the tool runs (an HA command waits at its password prompt until stdin is written)."""
    world: World = make_world(generation)
    seen: list[tuple[set[str], bytes]] = []

    def spying_runner(
        argv: Sequence[str], stdin: str | None, env: Mapping[str, str], timeout: float
    ) -> CompletedRun:
        with subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(env),
        ) as child:
            cmdline = b""
            until = time.monotonic() + 10
            # Until the kernel shows the new program's arguments, or the tool has finished.
            while argv[-1].encode() not in cmdline and child.poll() is None and time.monotonic() < until:
                cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes()
            seen.append((set(argv), cmdline))
            out, err = child.communicate(stdin or "", timeout=timeout)
        return CompletedRun(child.returncode, out, err)

    tools = ClientTools(world.root, world.generation, config_path=world.config, runner=spying_runner)
    world.run(tools=tools)

    prompting = {"newGroup", "-newGroup", "createGroup", "addMember", "-addMember"}
    asking = [cmdline for args, cmdline in seen if args & prompting]
    assert len(asking) == 3 and all(asking)  # each seen while it waited at its password prompt
    assert not any(PASSWORD.encode() in cmdline for _, cmdline in seen)
    assert [e["password_from"] for e in world.sim_journal() if e["password_from"]] == ["prompt"] * 3


def test_the_simulated_tools_refuse_a_password_on_their_command_line(make_world: Any) -> None:
    """The check the test above relies on can fail: the simulator reads its own /proc/self/cmdline."""
    world: World = make_world("7")
    done = subprocess.run(
        [str(world.root / "bin/lunacm"), "-c", "hagroup", "listGroups", "-password", PASSWORD],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 97
    assert "Error: the partition password is on the command line of process" in done.stdout
    assert PASSWORD not in done.stdout
    assert world.sim_journal()[-1]["secret_on_command_line"] is True
    assert PASSWORD not in world.journal.read_text()


# --- Luna Network HSM 7 appliances ----------------------------------------------------------------
#
# The appliances are simulated models (dialect 7.8) whose partitions are brought along straight
# through the model, as the provider would leave them; the group document publishes their serials
# and server certificates as the provider does. The simulated client sees each model through
# LUNA_HA_SIM_PARTITIONS (what NTLS shows the registered client).

HSM_SERIALS_7 = ("154704", "154705", "154706")
STAGES_7 = ("uninitialized", "co_uninitialized", "pin_to_be_changed", "ready")
PSO_PASSWORD = "Pso-Pa55-NEVER-SHOWN"
CO_TEMPORARY = "Co-Temp-Pa55-NEVER-SHOWN"
DOMAIN_7 = "Domain-NEVER-SHOWN"


def luna7_appliances(
    stages: Sequence[str] = ("ready",) * 3, co_initial: str = CO_TEMPORARY
) -> dict[str, ApplianceModel]:
    """One 7.8 appliance per host, its partition ``payments`` at ``stages[i]``, assigned to GEN0."""
    models = {}
    for host, hsm_serial, stage in zip(HOSTS, HSM_SERIALS_7, stages, strict=True):
        model = ApplianceModel.create(
            hostname=f"hsm7-{hsm_serial}",
            serial=hsm_serial,
            dialect="7.8",
            key_type="ec",
            initialized=True,
            admin_password="Adm1n-NEVER-SHOWN",
            domain=DOMAIN_7,
        )
        model.add_uninitialized_partition("payments")
        model.clients[GEN0] = RegisteredClient(GEN0, GEN0, False, b"", ["payments"])
        advance_7(model, stage, co_initial)
        models[host] = model
    return models


def advance_7(model: ApplianceModel, stage: str, co_initial: str = CO_TEMPORARY) -> None:
    """Bring the partition ``payments`` on to ``stage`` (the provider's work, in the model); the
    Crypto Officer starts with ``co_initial`` and is then changed to the members' password."""
    partition = model.partitions["payments"]
    target = STAGES_7.index(stage)
    if target >= 1 and not partition.initialized:
        model.init_partition("payments", "payments", PSO_PASSWORD, DOMAIN_7)
    if target >= 2 and not partition.co.initialized:
        model.init_co("payments", co_initial)
    if target >= 3 and partition.co.pin_to_be_changed:
        assert model.change_co_password("payments", partition.co.password or "", PASSWORD)


def publish_7(world: World, models: dict[str, ApplianceModel], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    serials = {host: model.partitions["payments"].serial for host, model in models.items()}
    world.publish(serials=serials, servers={h: m.server_cert.cert_pem.decode() for h, m in models.items()})
    monkeypatch.setenv("LUNA_HA_SIM_PARTITIONS", partitions_json(models, client=GEN0))
    return [serials[h] for h in HOSTS]


def ha_commands(world: World) -> list[tuple[list[str], int]]:
    return [(e["args"], e["exit"]) for e in world.sim_journal() if e["command"].startswith("hagroup")]


def test_luna7_member_builds_the_group_from_13_digit_serials_as_crypto_officer(
    make_world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = luna7_appliances()
    world: World = make_world("7", publish=False)
    serials = publish_7(world, models, monkeypatch)
    for serial, hsm_serial in zip(serials, HSM_SERIALS_7, strict=True):
        assert len(serial) == 13 and serial.isdigit() and not serial.startswith(hsm_serial)

    report = world.run()

    group = find_ha_group(world.conf(), LABEL)
    assert group is not None and group.members == tuple(serials) and group.serial == "1" + serials[0]
    assert report.group_serial == "1" + serials[0] and report.warnings == ()
    assert ha_commands(world) == [
        (["-c", "hagroup", "createGroup", "-label", LABEL, "-serialNumber", serials[0]], 0),
        (["-c", "hagroup", "addMember", "-group", LABEL, "-serialNumber", serials[1]], 0),
        (["-c", "hagroup", "addMember", "-group", LABEL, "-serialNumber", serials[2]], 0),
        (["-c", "hagroup", "haonly", "-enable"], 0),
        (["-c", "hagroup", "recoveryMode", "-mode", "activeEnhanced"], 0),
    ]
    assert [e["password_from"] for e in world.sim_journal() if e["password_from"]] == ["prompt"] * 3
    # HA-only: lunacm shows the group's virtual slot, no longer the members' own slots
    assert [(s.serial, s.label, s.ha_virtual) for s in world.tools().slot_list()] == [
        ("1" + serials[0], LABEL, True)
    ]
    assert not world.run().changed


def test_luna7_slot_list_shows_each_partition_as_the_luna_7_client_does(
    make_world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = luna7_appliances(("ready", "uninitialized", "pin_to_be_changed"))
    world: World = make_world("7", publish=False)
    serials = publish_7(world, models, monkeypatch)
    with pytest.raises(PartitionNotReady):
        world.run()  # registers the servers, then stops at the partition without a label

    slots = world.tools().slot_list()
    assert [(s.slot_id, s.serial, s.label) for s in slots] == [
        (0, serials[0], "payments"),
        (1, serials[1], ""),
        (2, serials[2], "payments"),
    ]
    assert all(s.has_partition_so and s.firmware == "7.8.4" and s.model == "LunaSA 7.8.5" for s in slots)
    assert [s.initialized for s in slots] == [True, False, True]
    assert [(s.slot, s.serial, s.label) for s in world.tools().verify()] == [
        ("0", serials[0], "payments"),
        ("1", serials[1], ""),
        ("2", serials[2], "payments"),
    ]


@pytest.mark.parametrize(
    ("stage", "where", "reason"),
    [
        ("uninitialized", 1, "no label"),
        ("co_uninitialized", 0, "CKR_USER_PIN_NOT_INITIALIZED"),
        ("pin_to_be_changed", 1, "CKR_PIN_EXPIRED"),
        ("pin_to_be_changed", 2, "CKR_PIN_EXPIRED"),
    ],
)
def test_luna7_partition_the_provider_has_not_finished_fails_clearly_and_builds_nothing(
    make_world: Any, monkeypatch: pytest.MonkeyPatch, stage: str, where: int, reason: str
) -> None:
    """CKR_PIN_EXPIRED: the Crypto Officer was initialized with the members' password itself and
    has not made its first change yet (policy 21)."""
    stages = ["ready"] * 3
    stages[where] = stage
    models = luna7_appliances(stages, co_initial=PASSWORD)
    world: World = make_world("7", publish=False)
    serials = publish_7(world, models, monkeypatch)

    with pytest.raises(PartitionNotReady) as info:
        world.run()

    error = info.value
    assert (error.host, error.serial, error.reason) == (HOSTS[where], serials[where], reason)
    message = str(error)
    assert message.startswith(f"Partition {serials[where]} on {HOSTS[where]}: ")
    assert "the provider has not finished this partition; re-run the stack update" in message
    assert message.endswith("the HA group is left as it was before this run")
    for secret in (PASSWORD, PSO_PASSWORD, CO_TEMPORARY, DOMAIN_7):
        assert secret not in message
    text = world.config.read_text()
    assert "VirtualToken" not in text and "HASynchronize" not in text and "HAOnly" not in text
    # the failed member was the last HA command: nothing after it, and no setting changed
    commands = ha_commands(world)
    if reason == "no label":
        assert commands == []
    else:
        sub, option = ("createGroup", "-label") if where == 0 else ("addMember", "-group")
        assert commands[-1] == (["-c", "hagroup", sub, option, LABEL, "-serialNumber", serials[where]], 1)
        assert [ok for _args, ok in commands[:-1]] == [0] * where

    # once the provider has finished the partition, the next run builds the whole group
    advance_7(models[HOSTS[where]], "ready")
    monkeypatch.setenv("LUNA_HA_SIM_PARTITIONS", partitions_json(models, client=GEN0))
    world.run()
    group = find_ha_group(world.conf(), LABEL)
    assert group is not None and group.members == tuple(serials)


def test_luna7_login_uses_the_crypto_officers_password(
    make_world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The partition secret holds the CO's password; the PSO's or the temporary one is refused."""
    models = luna7_appliances()
    world: World = make_world("7", publish=False)
    publish_7(world, models, monkeypatch)
    world.secrets.put_secret_value(SecretId=world.arn, SecretString=json.dumps({"password": CO_TEMPORARY}))
    with pytest.raises(ClientToolError, match="CKR_PIN_INCORRECT") as info:
        world.run()
    assert not isinstance(info.value, PartitionNotReady)
    assert find_ha_group(world.conf(), LABEL) is None


# --- java.security -------------------------------------------------------------------------------


def test_java_security_provider_is_added_once(make_world: Any) -> None:
    world: World = make_world()
    target = world.tmp / "etc/java/security/java.security"
    target.parent.mkdir(parents=True)
    java = world.tmp / "jdk/conf/security/java.security"  # a link, as Debian's JDKs ship it
    java.parent.mkdir(parents=True)
    java.symlink_to(target)
    original = (
        "# providers\nsecurity.provider.1=SUN\nsecurity.provider.2=SunRsaSign\n"
        "security.provider.13=SunPKCS11\n\nsecurerandom.source=file:/dev/random\n"
    )
    target.write_text(original)
    target.chmod(0o640)
    world.run(java_security=java)
    assert target.read_text() == original.replace(
        "SunPKCS11\n", f"SunPKCS11\nsecurity.provider.14={LUNA_PROVIDER}\n"
    )
    assert target.stat().st_mode & 0o777 == 0o640
    assert java.is_symlink()
    before = world.snapshot()
    assert not world.run(java_security=java).changed
    assert world.snapshot() == before


def test_missing_java_security_fails_before_writing(make_world: Any) -> None:
    world: World = make_world()
    before = world.snapshot()
    with pytest.raises(ClientToolError, match="java.security file not found"):
        world.run(java_security=world.tmp / "nope")
    assert world.snapshot() == before


# --- CLI, secret scan, imports -------------------------------------------------------------------


def test_cli_bootstrap_detects_the_generation_and_prints_what_changed(
    make_world: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    world: World = make_world("7")
    argv = [
        "--parameter-path",
        PATH,
        "--luna-root",
        str(world.root),
        "--config",
        str(world.config),
        "--env-file",
        str(world.env_file),
    ]
    out = io.StringIO()
    assert bootstrap_main(argv, out=out) == 0
    first = out.getvalue()
    assert f"HA group {LABEL} (serial 1150, slot 1) for client web, generation {GEN0}, Luna client 7" in first
    assert "changed: created HA group payments-ha with 150" in first

    out = io.StringIO()
    assert bootstrap_main(argv, out=out) == 0
    assert "nothing changed" in out.getvalue()

    world.ssm.delete_parameter(Name=f"{PATH}/group")
    assert bootstrap_main(argv, out=io.StringIO()) == 1
    assert f"error: Parameter {PATH}/group: is missing" in capsys.readouterr().err
    assert bootstrap_main(["--client", "web"], out=io.StringIO()) == 2


def test_nothing_secret_is_printed_or_written_outside_the_key_file(
    make_world: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world: World = make_world("5.3")
    texts = []
    argv = ["--parameter-path", PATH, "--luna-root", str(world.root), "--config", str(world.config)]
    argv += ["--env-file", str(world.env_file), "--client-generation", "5.3"]
    for step in ("first", "again", "rotate", "fail"):
        if step == "rotate":
            world.publish(current=GEN1)
        if step == "fail":
            monkeypatch.setenv("LUNA_HA_SIM_PASSWORD", "other")
            world.config.write_text(
                world.config.read_text().replace("VirtualToken00Members = 150,151,152;", "")
            )
        out = io.StringIO()
        code = bootstrap_main(argv, out=out)
        assert code == (1 if step == "fail" else 0)
        texts.append(out.getvalue())
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    for text in texts:
        assert_no_secret(text, world.material, "output")
    for path in [*world.tmp.rglob("*"), world.journal]:
        if path.is_file() and not path.name.endswith("Key.pem"):
            assert_no_secret(path.read_text(errors="replace"), world.material, str(path))
    keys = sorted(p.name for p in world.tmp.rglob("*Key.pem"))
    assert keys == [f"{GEN0}Key.pem", f"{GEN1}Key.pem"]


def test_report_repr_holds_no_secret(make_world: Any) -> None:
    world: World = make_world()
    report = world.run()
    assert_no_secret(repr(report), world.material, "report")


def test_importing_the_client_does_not_import_paramiko() -> None:
    code = (
        "import sys, luna_ha.client.bootstrap, luna_ha.client.cli, luna_ha.client.tools, "
        "luna_ha.client.chrystoki, luna_ha.sim.client_tools; assert 'paramiko' not in sys.modules"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNA_HA_")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_store_reads_the_path_in_few_calls(make_world: Any) -> None:
    world: World = make_world()
    store = ParameterStore(world.ssm)
    parameters: dict[str, Parameter] = store.read(PATH)
    assert len(parameters) == 1 + 3 + 3  # group, 3 server certs, current + cert + key
    assert store.calls == 1
