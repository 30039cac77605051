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
    LunacmSlot,
    build_add_member,
    build_add_server,
    build_enable_auto_recovery,
    build_enable_ha_only,
    build_new_group,
    build_show_groups,
    build_slot_list,
    detect_generation,
    generation_named,
    login_failure,
    parse_ha_slot,
    parse_list_servers,
    parse_slot_list,
    parse_verify,
    parse_version,
)
from luna_ha.errors import ClientToolError

PASSWORD = "Pa55-NEVER-SHOWN"
ROOT = Path("/usr/safenet/lunaclient")
TRANSCRIPTS = Path(__file__).parent / "transcripts"
#: A Luna 7 partition serial: 13 digits, not prefixed by its HSM's serial.
SERIAL_7 = "1238696044945"


def transcript(name: str) -> str:
    return (TRANSCRIPTS / f"{name}.txt").read_text()


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


# --- Luna 7 appliances ---------------------------------------------------------------------------
#
# Transcripts: lunacm_slot_list_7x_uninitialized is re-drawn from the LunaCM 7.1 output a Cloudflare
# Keyless SSL guide publishes for a just-created partition on an IBM Cloud HSM 7.0 (the serial it
# elides is made up here); the Azure Dedicated HSM 7.2 variant of that guide shows the same fields.
# vtl_verify_7x is re-drawn from a Thales engineer's public PKCS#11 sample notes (vtl 10.7.2 with
# a Luna 7 appliance: slots from 0, 13-digit serial right-aligned). lunacm_slot_list_7x_ha adds
# initialized partitions and an HA virtual slot in the same layout; the virtual slot's model and
# configuration lines are this project's reading, not seen in published output.


def test_vtl_verify_of_the_10x_client_reads_13_digit_serials_from_slot_0() -> None:
    assert [(s.slot, s.serial, s.label) for s in parse_verify(transcript("vtl_verify_7x"))] == [
        ("0", SERIAL_7, "payments"),
        ("1", "1582775433934", "payments"),
    ]


def test_vtl_verify_row_of_an_uninitialized_partition_has_an_empty_label() -> None:
    text = transcript("vtl_verify_7x").replace(f"{SERIAL_7}        payments", f"{SERIAL_7}        ")
    rows = parse_verify(text)
    assert [(r.serial, r.label) for r in rows] == [(SERIAL_7, ""), ("1582775433934", "payments")]


def test_slot_list_of_a_partition_not_yet_initialized() -> None:
    (slot,) = parse_slot_list(transcript("lunacm_slot_list_7x_uninitialized"))
    assert slot == LunacmSlot(
        slot_id=0,
        label="",
        serial=SERIAL_7,
        model="LunaSA 7.0.0",
        firmware="7.0.1",
        configuration="Luna User Partition With SO (PW) Signing With Cloning Mode",
        description="Net Token Slot",
    )
    assert slot.has_partition_so and not slot.initialized and not slot.ha_virtual


def test_slot_list_with_initialized_partitions_and_the_ha_virtual_slot() -> None:
    slots = parse_slot_list(transcript("lunacm_slot_list_7x_ha"))
    assert [(s.slot_id, s.serial, s.label, s.ha_virtual) for s in slots] == [
        (0, SERIAL_7, "payments", False),
        (1, "1582775433934", "payments", False),
        (2, "1" + SERIAL_7, "payments-ha", True),
    ]
    assert all(s.initialized and s.firmware == "7.8.4" for s in slots)
    assert [s.has_partition_so for s in slots] == [True, True, False]


def test_slot_list_skips_fields_it_does_not_know_and_lines_without_an_arrow() -> None:
    text = transcript("lunacm_slot_list_7x_ha").replace(
        "\tModel ->\t\tLunaVirtual\n",
        "\tTunnel Slot Id ->\t5\n\tModel ->\t\tLunaVirtual\n\tFM HW Status ->\tNon-FM\n",
    )
    assert parse_slot_list(text) == parse_slot_list(transcript("lunacm_slot_list_7x_ha"))
    assert parse_slot_list("Command Result : No Error\n") == []


def test_slot_list_is_a_read_only_lunacm_command() -> None:
    command = build_slot_list()
    assert [command.tool, *command.args] == ["lunacm", "-c", "slot", "list"]
    assert not command.mutating and command.stdin is None
    runner = FakeRunner((0, transcript("lunacm_slot_list_7x_uninitialized")))
    assert [s.serial for s in tools("7", runner).slot_list()] == [SERIAL_7]
    assert runner.calls[0][0] == [f"{ROOT}/bin/lunacm", "-c", "slot", "list"]


@pytest.mark.parametrize(
    ("generation", "argv"),
    [
        ("7", ["lunacm", "-c", "hagroup", "addMember", "-group", "payments-ha", "-serialNumber", SERIAL_7]),
        ("5.3", ["vtl", "haAdmin", "addMember", "-group", "1" + SERIAL_7, "-serialNum", SERIAL_7]),
    ],
)
def test_a_13_digit_serial_is_passed_whole(generation: str, argv: list[str]) -> None:
    command = build_add_member(
        generation_named(generation), "payments-ha", "1" + SERIAL_7, SERIAL_7, PASSWORD
    )
    assert [command.tool, *command.args] == argv


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("Command Result : 0x000000a3 (CKR_PIN_EXPIRED)\n", "CKR_PIN_EXPIRED"),
        (
            f"Error: Login to the partition with serial number {SERIAL_7} failed "
            "(CKR_USER_PIN_NOT_INITIALIZED).",
            "CKR_USER_PIN_NOT_INITIALIZED",
        ),
        ("Command Result : 0x000000a4 (CKR_PIN_LOCKED)", "CKR_PIN_LOCKED"),
        ("Error: Login failed (CKR_PIN_INCORRECT).", None),  # the password, not the partition
        ("Command Result : 0x00000005 (CKR_GENERAL_ERROR)", None),
        ("Error: CKR_PIN_EXPIREDX", None),
        ("all fine", None),
    ],
)
def test_login_failures_that_mean_the_partition_is_not_finished(output: str, reason: str | None) -> None:
    assert login_failure(output) == reason


def test_a_refused_crypto_officer_login_fails_the_ha_command_and_is_named() -> None:
    answer = f"Error: Login to the partition with serial number {SERIAL_7} failed (CKR_PIN_EXPIRED).\n\n"
    answer += "Command Result : 0x000000a3 (CKR_PIN_EXPIRED)\n"
    t = tools("7", FakeRunner((0, answer)))
    with pytest.raises(ClientToolError) as info:
        t.new_group("payments-ha", SERIAL_7, PASSWORD)
    assert login_failure(str(info.value)) == "CKR_PIN_EXPIRED"
    assert PASSWORD not in str(info.value)
