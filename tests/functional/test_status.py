"""``luna-ha status`` and the Parameter Store part of ``luna-ha plan``, as a user runs them: a group
file (or a ParameterPath), local AWS through AWS_ENDPOINT_URL, real SSH to simulated appliances."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml

from luna_ha.cli import main
from luna_ha.sim.server import SimulatedAppliance
from luna_ha_lab.localaws import LabSecrets, group_properties
from tests.functional.lab import REGION, parameters, served_lab

GROUP = "/luna-ha/payments/group"


@dataclass
class Lab:
    appliances: list[SimulatedAppliance]
    lab: LabSecrets
    group: str

    def run(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), out=out, err=err, stdin=io.StringIO())
        return code, out.getvalue(), err.getvalue()

    @property
    def secret_values(self) -> list[str]:
        return [self.lab.admin_password, self.lab.domain, self.lab.partition_password] + [
            a.password for a in self.appliances
        ]


@pytest.fixture
def applied(aws_env: None, tmp_path: Path) -> Iterator[Lab]:
    """Two appliances with the group applied from a file."""
    with served_lab(2) as (appliances, lab):
        group = tmp_path / "group.yaml"
        group.write_text(yaml.safe_dump(group_properties(appliances), sort_keys=False))
        setup = Lab(appliances, lab, str(group))
        code, out, _ = setup.run("apply", "-c", setup.group)
        assert code == 0, out
        yield setup


def _marks(setup: Lab) -> list[int]:
    return [a.journal.mark() for a in setup.appliances]


def _mutating_since(setup: Lab, marks: list[int]) -> list[str]:
    return [
        e.line for a, m in zip(setup.appliances, marks, strict=True) for e in a.journal.since(m) if e.mutating
    ]


def test_status_of_a_group_in_sync_exits_0(applied: Lab) -> None:
    code, out, _ = applied.run("status", "-c", applied.group)
    assert code == 0, out
    assert "status: in sync" in out

    code, out, _ = applied.run("status", "-c", applied.group, "--output", "json")
    document = json.loads(out)
    assert code == 0 and document["operation"] == "status"
    assert document["in_sync"] is True and document["drift"] == []
    assert document["parameters_planned"] == {"put": [], "delete": []}


def test_status_names_every_difference_and_changes_nothing(applied: Lab) -> None:
    first, second = applied.appliances
    with first.state.lock:
        registration = next(iter(first.state.clients.values()))
        registration.partitions.clear()  # the partition revoked by hand
    with second.state.lock:
        second.state.clients.clear()  # the registration deleted by hand
        second.state.regenerate_server_cert()
    before = parameters()
    boto3.client("ssm", region_name=REGION).delete_parameter(Name=GROUP)
    marks = _marks(applied)

    code, out, err = applied.run("status", "-c", applied.group, "--output", "json")

    document = json.loads(out)
    assert code == 3, err
    assert document["in_sync"] is False
    found = {(d["kind"], d["subject"]) for d in document["drift"]}
    assert found == {
        ("partition_unassigned", first.host),
        ("registration_missing", second.host),
        ("server_cert", second.host),
        ("parameter_missing", GROUP),
    }
    assert _mutating_since(applied, marks) == []
    assert set(parameters()) == set(before) - {GROUP}

    code, text, _ = applied.run("status", "-c", applied.group)
    assert code == 3
    assert "status: 4 difference(s)" in text
    assert f"{second.host}: server certificate changed" in text
    assert f"{GROUP}: parameter missing: the group document" in text
    for secret in applied.secret_values:
        assert secret not in out + text + err
    assert "PRIVATE KEY" not in out + text and "CERTIFICATE" not in out + text


def test_plan_shows_the_group_document_deleted_by_hand(applied: Lab) -> None:
    boto3.client("ssm", region_name=REGION).delete_parameter(Name=GROUP)

    code, out, _ = applied.run("plan", "-c", applied.group)

    assert code == 3  # before: 0 steps, exit 0, and apply then wrote the parameter
    assert "0 step(s) to run" in out
    assert "parameters: 1 to write, 0 to delete" in out and f"+ {GROUP}" in out

    code, out, _ = applied.run("plan", "-c", applied.group, "--output", "json")
    document = json.loads(out)
    assert code == 3 and document["changes_pending"] is True
    assert document["parameters_planned"] == {"put": [GROUP], "delete": []}

    code, out, _ = applied.run("apply", "-c", applied.group, "--output", "json")
    assert code == 0 and json.loads(out)["parameters"]["written"] == [GROUP]
    assert applied.run("plan", "-c", applied.group)[0] == 0


def test_plan_shows_a_rotation_without_generating_its_key(applied: Lab) -> None:
    props = yaml.safe_load(Path(applied.group).read_text())
    props["Clients"][0]["Rotation"] = 1
    Path(applied.group).write_text(yaml.safe_dump(props, sort_keys=False))
    before = parameters()

    code, out, _ = applied.run("plan", "-c", applied.group, "--output", "json")

    planned = json.loads(out)["parameters_planned"]
    assert code == 3
    assert any(name.endswith("-r1/key") for name in planned["put"])
    assert GROUP in planned["put"] and "/luna-ha/payments/clients/web/current" in planned["put"]
    assert parameters() == before  # nothing generated, nothing written


def test_status_of_a_deployed_group_by_its_parameter_path(applied: Lab) -> None:
    code, out, err = applied.run("status", "--parameter-path", "/luna-ha/payments", "--output", "json")
    document = json.loads(out)
    assert code == 0, err
    assert document["group"]["id"] == "luna-ha-cli/payments"  # the group document's owner
    assert [a["host"] for a in document["appliances"]] == [a.host for a in applied.appliances]

    with applied.appliances[0].state.lock:
        applied.appliances[0].state.clients.clear()
    code, out, _ = applied.run("status", "--parameter-path", "/luna-ha/payments")
    assert code == 3 and f"{applied.appliances[0].host}: registration missing" in out


def test_status_by_a_path_without_a_group_document_fails_in_one_line(applied: Lab) -> None:
    code, out, err = applied.run("status", "--parameter-path", "/luna-ha/nothing")
    assert code == 1 and out == ""
    assert (
        err.strip() == "error: /luna-ha/nothing/group: no readable group document (nothing published there?)"
    )


def test_status_needs_a_file_or_a_path(aws_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = Lab([], LabSecrets.generate(), "").run("status")
    assert code == 2
    assert "one of the arguments -c/--config --parameter-path is required" in capsys.readouterr().err
