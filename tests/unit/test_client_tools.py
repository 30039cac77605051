"""Luna client tools: exact argument lists per generation, failure rules, duplicates, masking."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from luna_ha.client.tools import (
    GENERATIONS,
    ClientTools,
    CompletedRun,
    build_add_member,
    build_add_server,
    build_enable_auto_recovery,
    build_enable_ha_only,
    build_new_group,
    build_show_groups,
    detect_generation,
    generation_named,
    parse_ha_slot,
    parse_list_servers,
    parse_verify,
    parse_version,
)
from luna_ha.errors import ClientToolError

PASSWORD = "Pa55-NEVER-SHOWN"
ROOT = Path("/usr/safenet/lunaclient")


class FakeRunner:
    """Answers every command with the next canned (exit status, stdout); records what was run."""

    def __init__(self, *answers: tuple[int, str], stderr: str = "") -> None:
        self.answers = list(answers)
        self.stderr = stderr
        self.calls: list[tuple[list[str], str | None, dict[str, str], float]] = []

    def __call__(
        self, argv: Sequence[str], stdin: str | None, env: Mapping[str, str], timeout: float
    ) -> CompletedRun:
        self.calls.append((list(argv), stdin, dict(env), timeout))
        code, out = self.answers.pop(0) if self.answers else (0, "")
        return CompletedRun(code, out, self.stderr)


def tools(generation: str, runner: FakeRunner, root: Path = ROOT) -> ClientTools:
    return ClientTools(root, generation, config_path=Path("/etc/Chrystoki.conf"), runner=runner, env={})


# --- argument lists ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generation", "argv"),
    [
        (
            "5.1",
            [
                "vtl",
                "haAdmin",
                "-newGroup",
                "-serialNum",
                "150",
                "-label",
                "payments-ha",
            ],
        ),
        (
            "5.3",
            [
                "vtl",
                "haAdmin",
                "newGroup",
                "-serialNum",
                "150",
                "-label",
                "payments-ha",
            ],
        ),
        (
            "7",
            [
                "lunacm",
                "-c",
                "hagroup",
                "createGroup",
                "-label",
                "payments-ha",
                "-serialNumber",
                "150",
            ],
        ),
    ],
)
def test_new_group_arguments(generation: str, argv: list[str]) -> None:
    command = build_new_group(generation_named(generation), "payments-ha", "150", PASSWORD)
    assert [command.tool, *command.args] == argv
    assert command.stdin == f"{PASSWORD}\ncopy\n"  # the password prompt, then the objects question
    assert command.mutating
    assert PASSWORD not in command.display
    assert PASSWORD not in repr(command)


@pytest.mark.parametrize(
    ("generation", "argv"),
    [
        (
            "5.1",
            ["vtl", "haAdmin", "-addMember", "-serialNum", "151", "-group", "1150"],
        ),
        (
            "5.3",
            ["vtl", "haAdmin", "addMember", "-group", "1150", "-serialNum", "151"],
        ),
        (
            "7",
            [
                "lunacm",
                "-c",
                "hagroup",
                "addMember",
                "-group",
                "payments-ha",
                "-serialNumber",
                "151",
            ],
        ),
    ],
)
def test_add_member_arguments(generation: str, argv: list[str]) -> None:
    command = build_add_member(generation_named(generation), "payments-ha", "1150", "151", PASSWORD)
    assert [command.tool, *command.args] == argv
    assert command.stdin == f"{PASSWORD}\ncopy\n"
    assert PASSWORD not in repr(command)


@pytest.mark.parametrize(
    ("generation", "ha_only", "recovery", "show"),
    [
        (
            "5.1",
            ["vtl", "haAdmin", "-HAOnly", "-enable"],
            ["vtl", "haAdmin", "-autoRecovery", "-retry", "500"],
            ["vtl", "haAdmin", "-show"],
        ),
        (
            "5.3",
            ["vtl", "haAdmin", "HAOnly", "-enable"],
            ["vtl", "haAdmin", "autoRecovery", "-retry", "500"],
            ["vtl", "haAdmin", "show"],
        ),
        (
            "7",
            ["lunacm", "-c", "hagroup", "haonly", "-enable"],
            ["lunacm", "-c", "hagroup", "recoveryMode", "-mode", "activeEnhanced"],
            ["lunacm", "-c", "hagroup", "listGroups", "-password", ""],
        ),
    ],
)
def test_settings_and_show_arguments(
    generation: str, ha_only: list[str], recovery: list[str], show: list[str]
) -> None:
    g = generation_named(generation)
    assert [build_enable_ha_only(g).tool, *build_enable_ha_only(g).args] == ha_only
    assert [build_enable_auto_recovery(g).tool, *build_enable_auto_recovery(g).args] == recovery
    assert [build_show_groups(g).tool, *build_show_groups(g).args] == show
    assert not build_show_groups(g).mutating
    assert build_enable_ha_only(g).stdin is None


def test_add_server_arguments_and_executable_path() -> None:
    runner = FakeRunner((0, "New server 10.0.1.10 successfully added to server list.\n"))
    t = tools("5.3", runner)
    t.add_server("10.0.1.10", Path("/usr/safenet/lunaclient/cert/server/10.0.1.10.pem"))
    argv, stdin, env, timeout = runner.calls[0]
    assert argv == [
        "/usr/safenet/lunaclient/bin/vtl",
        "addServer",
        "-n",
        "10.0.1.10",
        "-c",
        "/usr/safenet/lunaclient/cert/server/10.0.1.10.pem",
    ]
    assert stdin is None
    assert env["ChrystokiConfigurationPath"] == "/etc"
    assert timeout == t.timeout


def test_lunacm_runs_from_the_install_bin() -> None:
    runner = FakeRunner((0, "Command Result : No Error\n"))
    tools("7", runner).enable_ha_only()
    assert runner.calls[0][0][:4] == ["/usr/safenet/lunaclient/bin/lunacm", "-c", "hagroup", "haonly"]


@pytest.mark.parametrize(
    ("builder", "problem"),
    [
        (lambda g: build_new_group(g, "payments ha", "150", PASSWORD), "label"),
        (lambda g: build_new_group(g, "payments-ha", "15O", PASSWORD), "serial"),
        (lambda g: build_new_group(g, "payments-ha", "150", "pw\nquit"), "password"),
        (lambda g: build_new_group(g, "payments-ha", "150", ""), "password"),
        (lambda g: build_add_server("-n", Path("/x.pem")), "host"),
    ],
)
def test_unsafe_values_are_refused_without_echoing_a_password(builder, problem: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientToolError, match=problem) as info:
        builder(generation_named("5.3"))
    assert "quit" not in str(info.value) and "-force" not in str(info.value)


# --- outcomes ------------------------------------------------------------------------------------


def test_error_line_with_exit_status_zero_is_a_failure() -> None:
    runner = FakeRunner(
        (0, "Error: Unable to find any Luna SA slots/partitions among registered server(s).\n")
    )
    t = tools("5.3", runner)
    with pytest.raises(ClientToolError, match=r"vtl verify failed \(exit status 0\): Error: Unable to find"):
        t.verify()
    assert t.journal[-1].ok is False


def test_error_line_on_stderr_is_a_failure_too() -> None:
    t = tools("5.3", FakeRunner((0, "fine\n"), stderr="  Error: no\n"))
    with pytest.raises(ClientToolError, match="Error: no"):
        t.list_slots()


def test_nonzero_exit_without_error_line_is_a_failure() -> None:
    t = tools("5.3", FakeRunner((3, "something odd\nlast words\n")))
    with pytest.raises(ClientToolError, match=r"exit status 3\): something odd \| last words"):
        t.enable_ha_only()


def test_lunacm_result_other_than_no_error_is_a_failure() -> None:
    t = tools("7", FakeRunner((0, "LunaCM v7.4.0\n\nCommand Result : 0x00000005 (CKR_GENERAL_ERROR)\n")))
    with pytest.raises(ClientToolError, match="CKR_GENERAL_ERROR"):
        t.enable_ha_only()


@pytest.mark.parametrize(
    ("generation", "call", "output"),
    [
        ("5.3", "server", "This server is already registered.\n"),
        ("5.3", "server", "Error: This server is already registered\n"),
        ("7", "group", "Error: The label you specified for the new group has already been used.\n"),
        ("5.1", "group", "Error: The serial for the new group has already been used\n"),
        ("7", "member", "Error: The member you specified is already part of an HA group.\n"),
        ("5.3", "member", "The member you specified is already part of an HA group\n"),
    ],
)
def test_duplicate_messages_mean_already_done(generation: str, call: str, output: str) -> None:
    t = tools(generation, FakeRunner((1, output)))
    if call == "server":
        result = t.add_server("10.0.1.10", Path("/s.pem"))
    elif call == "group":
        result = t.new_group("payments-ha", "150", PASSWORD)
    else:
        result = t.add_member("payments-ha", "1150", "151", PASSWORD)
    assert result.already_done
    assert t.journal[-1].ok


def test_password_is_masked_in_display_journal_output_and_errors() -> None:
    echo = f"Logging in with {PASSWORD}\nError: wrong password {PASSWORD}\n"
    t = tools("5.3", FakeRunner((0, echo)))
    with pytest.raises(ClientToolError) as info:
        t.new_group("payments-ha", "150", PASSWORD)
    assert PASSWORD not in str(info.value)
    assert str(info.value).startswith("vtl haAdmin newGroup -serialNum 150 -label payments-ha failed")
    assert all(PASSWORD not in repr(run) for run in t.journal)
    result = tools("5.3", FakeRunner((0, echo.replace("Error: ", "")))).new_group(
        "payments-ha", "150", PASSWORD
    )
    assert PASSWORD not in result.output and PASSWORD not in repr(result)


def test_timeout_is_a_failure_that_names_the_command() -> None:
    def hang(argv: Sequence[str], stdin: str | None, env: Mapping[str, str], timeout: float) -> CompletedRun:
        raise subprocess.TimeoutExpired(list(argv), timeout)

    t = ClientTools(ROOT, "5.3", runner=hang, timeout=2, env={})
    with pytest.raises(
        ClientToolError, match=r"vtl haAdmin newGroup -serialNum 150 -label payments-ha: no answer within 2 s"
    ):
        t.new_group("payments-ha", "150", PASSWORD)
    assert t.journal[-1].returncode is None


def test_missing_tool_says_where_it_looked(tmp_path: Path) -> None:
    t = ClientTools(tmp_path, "5.3", env={})
    with pytest.raises(ClientToolError, match="bin/vtl not found"):
        t.verify()


def test_real_subprocess_no_shell_and_stdin(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "vtl"
    script.write_text('#!/bin/sh\nread pin\nread answer\necho "args:$#:$1:$2 answer:$answer"\n')
    script.chmod(0o755)
    t = ClientTools(tmp_path, "5.3", env={"PATH": "/usr/bin:/bin"})
    result = t.new_group("payments-ha", "150", "a b;$(touch x)")
    assert "args:6:haAdmin:newGroup answer:copy" in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("generation", ["5.1", "5.3", "7"])
@pytest.mark.parametrize("call", ["new group", "add member"])
def test_the_password_reaches_the_tool_on_stdin_never_on_its_command_line(
    tmp_path: Path, generation: str, call: str
) -> None:
    """Every local user can read /proc/<pid>/cmdline: the tool copies its own while it runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("vtl", "lunacm"):
        script = bin_dir / tool
        script.write_text(
            f'#!/bin/sh\ntr "\\0" " " < /proc/$$/cmdline > "{tmp_path}/cmdline"\ncat > "{tmp_path}/stdin"\n'
        )
        script.chmod(0o755)
    t = ClientTools(tmp_path, generation, env={"PATH": "/usr/bin:/bin"})
    if call == "new group":
        t.new_group("payments-ha", "150", PASSWORD)
    else:
        t.add_member("payments-ha", "1150", "151", PASSWORD)

    cmdline = (tmp_path / "cmdline").read_text()
    assert "-serialNum" in cmdline  # it is the tool's own command line
    assert PASSWORD not in cmdline
    assert (tmp_path / "stdin").read_text() == f"{PASSWORD}\ncopy\n"


# --- parsing and detection -----------------------------------------------------------------------


def test_parse_outputs() -> None:
    assert parse_list_servers("Server: 10.0.1.10  HTL required: no\nServer: hsm-b  HTL required: yes\n") == [
        "10.0.1.10",
        "hsm-b",
    ]
    verify = (
        "The following Luna SA Slots/Partitions were found:\n\n"
        "Slot    Serial #                Label\n"
        "====    ================        =====\n"
        "   1    150                     payments\n"
        "   2    151                     payments\n"
    )
    assert [(s.slot, s.serial, s.label) for s in parse_verify(verify)] == [
        ("1", "150", "payments"),
        ("2", "151", "payments"),
    ]
    slots = (
        "Number of slots: 2\n\n"
        "Slot # Description          Label        Serial #         Status\n"
        "   1   LunaNet Slot         payments     150              Present\n"
        "   5   HA Virtual Card Slot payments-ha  1150             Present\n"
    )
    assert parse_ha_slot(slots, "1150") == 5
    assert parse_ha_slot(slots, "115") is None
    assert parse_version("vtl (64-bit) v7.4.0-226. Copyright (c) 2019 SafeNet") == (7, 4)
    assert parse_version("nothing") is None


@pytest.mark.parametrize(
    ("version", "generation"),
    [("5.1.0-25", "5.1"), ("5.3.0-11", "5.3"), ("6.2.2-4", "5.3"), ("7.4.0-226", "7"), ("10.4.0-417", "7")],
)
def test_detect_generation_from_vtl_ver(version: str, generation: str) -> None:
    runner = FakeRunner((0, f"vtl (64-bit) v{version}. Copyright (c) SafeNet\n"))
    assert detect_generation(ROOT, runner=runner, env={}) is GENERATIONS[generation]
    assert runner.calls[0][0] == ["/usr/safenet/lunaclient/bin/vtl", "ver"]


def test_detect_generation_lunasa_root_needs_no_command() -> None:
    runner = FakeRunner()
    assert detect_generation(Path("/usr/lunasa"), runner=runner, env={}).name == "5.1"
    assert runner.calls == []


def test_detect_generation_undecidable_asks_for_the_option() -> None:
    with pytest.raises(ClientToolError, match="--client-generation"):
        detect_generation(ROOT, runner=FakeRunner((0, "garbage\n")), env={})


def test_generation_aliases() -> None:
    assert generation_named("6") is GENERATIONS["5.3"]
    assert generation_named("10") is GENERATIONS["7"]
    with pytest.raises(ClientToolError, match="unknown Luna client generation"):
        generation_named("4")
