"""The ``luna-ha`` CLI as a user runs it: a group file, local AWS through AWS_ENDPOINT_URL, real SSH."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml

from luna_ha.cli import main
from luna_ha.sim.server import SimulatedAppliance
from luna_ha_lab.localaws import LabSecrets, group_properties
from tests.functional.lab import parameters, served_lab


@dataclass
class Setup:
    appliances: list[SimulatedAppliance]
    lab: LabSecrets
    group_file: Path

    def run(self, *argv: str) -> tuple[int, str]:
        """The exit status and standard output (standard error: :meth:`run_both`)."""
        code, out, _ = self.run_both(*argv)
        return code, out

    def run_both(self, *argv: str, stdin: io.StringIO | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), out=out, err=err, stdin=stdin or io.StringIO())
        return code, out.getvalue(), err.getvalue()

    @property
    def connections(self) -> int:
        return sum(a.connections + a.refused for a in self.appliances)

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

    code, planned, progress = setup.run_both("plan", "-c", group)
    assert code == 3  # changes pending
    assert "partition create payments" in planned
    assert "[127.0.0.1] " in progress and "[127.0.0.1] " not in planned  # progress on stderr
    assert all(a.journal.mutating() == [] for a in setup.appliances)

    code, applied = setup.run("apply", "-c", group)
    assert code == 0
    assert "apply: ok" in applied and "PartitionSerials:" in applied

    code, again = setup.run("apply", "-c", group)
    assert code == 0 and "(0 mutating)" in again and "change(s), " in again

    code, nothing = setup.run("plan", "-c", group)
    assert code == 0 and "plan: ok" in nothing and "0 step(s) to run" in nothing

    code, destroyed = setup.run("destroy", "-c", group, "--yes")
    assert code == 0 and "destroy: ok" in destroyed
    assert all("payments" in a.state.partitions for a in setup.appliances)  # Retain

    everything = planned + progress + applied + again + nothing + destroyed + capsys.readouterr().err
    for secret in setup.secret_values:
        assert secret not in everything


def test_bad_property_fails_before_any_appliance_is_contacted(setup: Setup) -> None:
    group = str(setup.write(Clients=[{"Name": "web;rm -rf", "Rotation": 0}]))

    code, out, err = setup.run_both("apply", "-c", group)

    assert code == 1
    assert out == ""
    assert err.startswith("error: Property Clients[0].Name")
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

    code, _, err = setup.run_both("apply", "-c", group, "--moved-from", "luna-ha/no-slash")

    assert code == 2
    assert "--moved-from" in capsys.readouterr().err
    assert "Traceback" not in err
    assert all(a.connections == 0 for a in setup.appliances)


class Terminal(io.StringIO):
    """Standard input that is a terminal, with what the user types."""

    def isatty(self) -> bool:
        return True


def test_a_plan_that_fails_exits_1(setup: Setup) -> None:
    group = str(setup.write())
    setup.appliances[1].faults.wrong_host_key()

    code, out = setup.run("plan", "-c", group)

    assert code == 1
    assert "plan: FAILED" in out and "127.0.0.2" in out


def test_warnings_go_to_stderr(setup: Setup) -> None:
    props = group_properties(setup.appliances[:1])
    setup.group_file.write_text(yaml.safe_dump(props, sort_keys=False))

    code, out, err = setup.run_both("plan", "-c", str(setup.group_file))

    assert code == 3
    assert "warning: Appliances: only 1 appliance" in err
    assert "warning" not in out


def test_json_output_of_plan_apply_destroy(setup: Setup) -> None:
    group = str(setup.write())

    code, planned, progress = setup.run_both("plan", "-c", group, "--output", "json")
    plan = json.loads(planned)  # standard output is the document and nothing else
    assert code == 3
    assert plan["schema"] == 1 and plan["operation"] == "plan"
    assert plan["ok"] is True and plan["changes_pending"] is True and plan["changed"] is False
    assert [a["host"] for a in plan["appliances"]] == ["127.0.0.1", "127.0.0.2"]
    assert "partition create payments" in plan["appliances"][0]["planned"]
    assert "[127.0.0.1] " in progress

    code, applied = setup.run("apply", "-c", group, "--output", "json")
    apply = json.loads(applied)
    assert code == 0
    assert apply["ok"] is True and apply["changed"] is True and apply["changes_pending"] is None
    assert all(a["mutating"] > 0 and a["done"] and a["partition_serial"] for a in apply["appliances"])
    assert "/luna-ha/payments/group" in apply["parameters"]["written"]
    assert set(parameters()) <= set(apply["parameters"]["written"])
    assert apply["data"]["PartitionSerials"] == ",".join(a["partition_serial"] for a in apply["appliances"])

    code, replanned = setup.run("plan", "-c", group, "--output", "json")
    assert code == 0 and json.loads(replanned)["changes_pending"] is False

    code, destroyed = setup.run("destroy", "-c", group, "--output", "json", "--yes")
    destroy = json.loads(destroyed)
    assert code == 0
    assert destroy["ok"] is True and destroy["changed"] is True
    assert set(destroy["parameters"]["deleted"]) == set(apply["parameters"]["written"])

    everything = planned + progress + applied + replanned + destroyed
    for secret in setup.secret_values:
        assert secret not in everything
    assert "PRIVATE KEY" not in everything and "CERTIFICATE" not in everything


def test_json_output_of_a_failed_apply(setup: Setup) -> None:
    group = str(setup.write())
    setup.appliances[1].faults.fail("partition create")

    code, out = setup.run("apply", "-c", group, "--output", "json")

    document = json.loads(out)
    assert code == 1 and document["ok"] is False
    failed = {a["host"]: a["error"] for a in document["appliances"] if not a["ok"]}
    assert list(failed) == ["127.0.0.2"] and "partition create" in failed["127.0.0.2"]
    for secret in setup.secret_values:
        assert secret not in out


def test_destroy_without_a_terminal_needs_yes(setup: Setup) -> None:
    group = str(setup.write())
    assert setup.run("apply", "-c", group)[0] == 0
    before = setup.connections

    code, out, err = setup.run_both("destroy", "-c", group)

    assert code == 1 and out == ""
    assert "--yes" in err
    assert setup.connections == before
    assert parameters() != {}


def test_destroy_on_a_terminal_asks_and_only_yes_approves(setup: Setup) -> None:
    group = str(setup.write())
    assert setup.run("apply", "-c", group)[0] == 0
    before = setup.connections

    for answer in ("", "no\n", "y\n", "YES please\n"):
        code, out, err = setup.run_both("destroy", "-c", group, stdin=Terminal(answer))
        assert code == 1 and out == ""
        assert "Only 'yes' will be accepted" in err and "cancelled" in err
        assert "/luna-ha/payments" in err and "Retain" in err
    assert setup.connections == before and parameters() != {}

    code, out, err = setup.run_both("destroy", "-c", group, stdin=Terminal("yes\n"))

    assert code == 0 and "destroy: ok" in out
    assert parameters() == {}


def test_no_region_is_one_line_before_anything_is_contacted(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    group = str(setup.write())
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))

    for command in ("plan", "apply", "destroy"):
        yes = ["--yes"] if command == "destroy" else []
        code, out, err = setup.run_both(command, "-c", group, *yes)
        assert code == 1 and out == ""
        assert err == "error: no AWS region: set AWS_REGION, or a region in the AWS profile\n"
    assert setup.connections == 0


def test_no_credentials_is_one_line_before_anything_is_contacted(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    group = str(setup.write())
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance metadata: loopback only

    code, out, err = setup.run_both("apply", "-c", group)

    assert code == 1 and out == ""
    assert err.startswith("error: no AWS credentials:") and err.count("\n") == 1
    assert setup.connections == 0


def test_aws_region_alone_is_enough(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    group = str(setup.write())
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # restored by monkeypatch even though main sets it

    code, out, err = setup.run_both("apply", "-c", group)

    assert code == 0, err
    assert "apply: ok" in out


@pytest.mark.parametrize("missing", ["moto", "luna_ha_lab"])
def test_demo_without_its_extra_names_the_extra(missing: str) -> None:
    """A plain ``pip install luna-ha`` has neither moto nor the lab (luna-ha-lab): the demo and
    ``simulate --aws`` say what to install, no traceback."""
    script = (
        "import sys\n"
        f"sys.modules[{missing!r}] = None  # as if not installed\n"
        "from luna_ha.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    for argv in (["demo"], ["simulate", "--aws"]):
        result = subprocess.run(
            [sys.executable, "-c", script, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            check=False,
        )
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert f"'{missing}' is not installed: pip install 'luna-ha[demo]'" in result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stdout == ""


def test_simulate_without_aws_needs_no_lab() -> None:
    """The appliance simulator is part of a plain install: without ``--aws`` it never imports the lab."""
    script = (
        "import sys\n"
        "sys.modules['luna_ha_lab'] = None  # as if not installed\n"
        "from luna_ha.sim import cli\n"
        "cli.wait_for_interrupt = lambda: (_ for _ in ()).throw(KeyboardInterrupt)\n"
        "sys.exit(cli.simulate_main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "-n", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Stopping." in result.stdout and "127.0.0.1" in result.stdout


def test_bootstrap_without_region_says_so_and_honours_aws_region_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "")  # recorded, so that monkeypatch restores it
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance metadata: loopback only
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # should a call be made: loopback
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # no credentials cached by earlier tests
    argv = ["client", "bootstrap", "--parameter-path", "/luna-ha/payments", "--luna-root", str(tmp_path)]
    argv += ["--client-generation", "5.3", "--config", str(tmp_path / "Chrystoki.conf")]

    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == "error: no AWS region: set AWS_REGION, or a region in the AWS profile\n"

    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "region" not in err and "NoCredentialsError" in err  # past the region, to the credentials
    assert err.startswith("error: ") and err.count("\n") == 1
