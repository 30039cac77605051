"""The ``luna-ha`` CLI as a user runs it: a group file, local AWS through AWS_ENDPOINT_URL, real SSH."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from luna_ha.cli import main
from luna_ha.sim.localaws import LabSecrets, group_properties
from luna_ha.sim.server import SimulatedAppliance
from tests.functional.lab import parameters, served_lab


@dataclass
class Setup:
    appliances: list[SimulatedAppliance]
    lab: LabSecrets
    group_file: Path

    def run(self, *argv: str) -> tuple[int, str]:
        out = io.StringIO()
        code = main(list(argv), out=out)
        return code, out.getvalue()

    def write(self, **changes: object) -> Path:
        props = group_properties(self.appliances)
        props.update(changes)
        self.group_file.write_text(yaml.safe_dump(props, sort_keys=False))
        return self.group_file

    @property
    def secret_values(self) -> list[str]:
        return [self.lab.admin_password, self.lab.domain, self.lab.partition_password] + [
            a.password for a in self.appliances
        ]


@pytest.fixture
def setup(aws_env: None, tmp_path: Path) -> Iterator[Setup]:
    with served_lab(2) as (appliances, lab):
        yield Setup(appliances, lab, tmp_path / "group.yaml")


def test_plan_apply_destroy_from_a_group_file(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    group = str(setup.write())

    code, planned = setup.run("plan", "-c", group)
    assert code == 0
    assert "partition create payments" in planned
    assert all(a.journal.mutating() == [] for a in setup.appliances)

    code, applied = setup.run("apply", "-c", group)
    assert code == 0
    assert "apply: ok" in applied and "PartitionSerials:" in applied

    code, again = setup.run("apply", "-c", group)
    assert code == 0 and "(0 mutating)" in again and "change(s), " in again

    code, destroyed = setup.run("destroy", "-c", group)
    assert code == 0 and "destroy: ok" in destroyed
    assert all("payments" in a.state.partitions for a in setup.appliances)  # Retain

    everything = planned + applied + again + destroyed + capsys.readouterr().err
    for secret in setup.secret_values:
        assert secret not in everything


def test_bad_property_fails_before_any_appliance_is_contacted(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    group = str(setup.write(Clients=[{"Name": "web;rm -rf", "Rotation": 0}]))

    code, _ = setup.run("apply", "-c", group)

    assert code == 1
    assert "Clients[0].Name" in capsys.readouterr().err
    assert all(a.connections == 0 for a in setup.appliances)


def test_failed_appliance_exits_nonzero_naming_it(setup: Setup) -> None:
    group = str(setup.write())
    setup.appliances[1].faults.fail("partition create")

    code, output = setup.run("apply", "-c", group)

    assert code == 1
    assert "127.0.0.2" in output and "partition create" in output and "FAILED" in output
    for secret in setup.secret_values:
        assert secret not in output


def test_apply_moved_from_an_old_path_keeps_the_client_key_and_cleans_the_old_path(setup: Setup) -> None:
    old = str(setup.write(ParameterPath="/luna-ha/old"))
    assert setup.run("apply", "-c", old)[0] == 0
    key = parameters("/luna-ha/old")
    marks = [a.journal.mark() for a in setup.appliances]
    new = str(setup.write(ParameterPath="/luna-ha/new"))

    code, out = setup.run("apply", "-c", new, "--moved-from", "/luna-ha/old")

    assert code == 0, out
    assert parameters("/luna-ha/old") == {}
    moved = parameters("/luna-ha/new")
    assert {n.removeprefix("/luna-ha/new") for n in moved} == {n.removeprefix("/luna-ha/old") for n in key}
    client_keys = [n for n in key if n.endswith("/key")]
    assert [moved[n.replace("/old/", "/new/")] for n in client_keys] == [key[n] for n in client_keys]
    for appliance, mark in zip(setup.appliances, marks, strict=True):
        assert [e.line for e in appliance.journal.since(mark) if e.mutating] == []


def test_moved_from_must_be_a_parameter_path(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    group = str(setup.write())

    with pytest.raises(SystemExit):
        setup.run("apply", "-c", group, "--moved-from", "luna-ha/no-slash")

    assert "--moved-from" in capsys.readouterr().err
    assert all(a.connections == 0 for a in setup.appliances)
