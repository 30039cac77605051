"""The simulator's Luna Network HSM 7 dialect of lunash, driven through ``ShellSession``.

Where the vendor's output has been published (transcripts under ``transcripts/``, sources named in
``test_lunash_parsers.py``) the simulator must print it byte for byte, with this appliance's own
values; the rest (``partition init``, ``partition init co``, ``service restart``) follows the
command descriptions, and these tests pin the behaviour the product relies on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from luna_ha.lunash import dialect as lunash_dialect
from luna_ha.lunash.parsers import (
    find_interactive_prompt,
    known_outcome,
    parse_client_show,
    parse_hsm_show,
    parse_partition_list,
    parse_result,
)
from luna_ha.sim.appliance import ApplianceModel, Journal, ShellSession
from luna_ha.sim.commands import COMMANDS, commands_for
from luna_ha.sim.faults import Faults
from luna_ha.sim.state import DIALECTS, ROLE_LOGIN_ATTEMPTS, make_server_certificate
from luna_ha.sim.terminal import password_notice_7
from tests.unit.test_sim_appliance import Shell

TRANSCRIPTS = Path(__file__).parent / "transcripts"
SUCCESS = "Command Result : 0 (Success)"
FAILURE = "Command Result : 65535 (Luna Shell execution)"
PROMPT = "[hsm-a] lunash:>"
ADMIN_PW = "Admin-pw-1"
DOMAIN = "dom-ain-1"
PSO_PW = "Pso-pw-7"
PART_DOMAIN = "part-dom-7"
CO_PW = "Co-temp-7"


def load(name: str) -> str:
    return (TRANSCRIPTS / f"{name}.txt").read_text(encoding="ascii")


def make_state(*, initialized: bool = True, dialect: str = "7.8") -> ApplianceModel:
    return ApplianceModel.create(
        hostname="hsm-a",
        serial="157541",
        dialect=dialect,
        key_type="ec",
        initialized=initialized,
        label="hsm-a" if initialized else None,
        admin_password=ADMIN_PW if initialized else None,
        domain=DOMAIN if initialized else None,
    )


@pytest.fixture
def ready() -> ApplianceModel:
    return make_state()


def logged_in(state: ApplianceModel) -> Shell:
    shell = Shell(state)
    assert "'hsm login' successful." in shell(f"hsm login -password {ADMIN_PW}")
    return shell


def created(state: ApplianceModel, name: str = "p1") -> Shell:
    shell = logged_in(state)
    assert "'partition create' successful." in shell(f"partition create -partition {name} -force")
    return shell


def initialized(state: ApplianceModel, name: str = "p1") -> Shell:
    shell = created(state, name)
    out = shell(
        f"partition init -partition {name} -label {name} -password {PSO_PW} -domain {PART_DOMAIN} -force"
    )
    assert "'partition init' successful." in out
    return shell


# -- banner and hsm show ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "banner"),
    [
        (
            "7.2",
            "Luna Network HSM Command Line Shell v7.2.0-220. Copyright (c) 2018 SafeNet. "
            "All rights reserved.",
        ),
        ("7.8", load("stdin_78_register_assign_show").splitlines()[0]),
    ],
)
def test_greeting_is_the_published_7x_banner(dialect: str, banner: str) -> None:
    greeting = ShellSession(make_state(dialect=dialect), Journal(), "s").greeting()
    assert greeting == f"{banner}\r\n\r\n{PROMPT}"


def test_zeroized_7x_hsm_show_is_the_published_layout_with_this_appliances_values() -> None:
    published = load("hsm_show_72_zeroized").replace("[local_host] lunash:>hsm show\n", "")
    ours = (
        published.replace("572413", "157541")
        .replace("Audit Role Initialized:             Yes", "Audit Role Initialized:             No")
        .replace("allowed:        10", "allowed:        20")
        .replace("33554432", "2097152")
    )
    assert Shell(make_state(initialized=False, dialect="7.2"))("hsm show") == ours + PROMPT


def test_7x_hsm_show_reads_back_through_the_products_parser() -> None:
    fresh = parse_hsm_show(Shell(make_state(initialized=False, dialect="7.2"))("hsm show"))
    assert (fresh.zeroized, fresh.label, fresh.software_version, fresh.firmware) == (
        True,
        None,
        "7.2.0-220",
        "7.0.3",
    )
    assert fresh.model == "Luna K7"

    state = make_state()
    shell = created(state, "p1")
    shell("partition create -partition p2 -force")
    info = parse_hsm_show(shell("hsm show"))
    assert (info.zeroized, info.label, info.admin_logged_in, info.attempts_left) == (False, "hsm-a", True, 3)
    assert info.partitions == tuple((p.serial, p.name) for p in state.partitions.values())
    assert (info.software_version, info.firmware) == ("7.8.5-20", "7.8.4")


def test_7x_hsm_show_has_the_7x_fields() -> None:
    out = Shell(make_state())("hsm show")
    for line in (
        "   HSM Model:                          Luna K7\n",
        "   HSM Part Number:                    808-000066-001\n",
        "   Secure Transport Mode:              No\n",
        "   HSM Tamper State:                   No tamper(s)\n",
        "   Number of partitions allowed:        20\n",
        "   Number of partitions created:        0\n",
        "   Environmental Information on HSM:\n",
        "   HSM Label:                          hsm-a\n",
    ):
        assert line in out


# -- partition create -------------------------------------------------------------------------


def test_partition_create_asks_proceed_exactly_as_published(ready: ApplianceModel) -> None:
    published = load("partition_create_7x_proceed").replace("[cloudflare-hsm.softlayer.com]", "[hsm-a]")
    published = published.replace("KeylessSSL", "p1")
    shell = logged_in(ready)
    echo = f"{PROMPT}partition create -partition p1\n"
    question = shell("partition create -partition p1")
    assert shell.session.awaiting_answer and not shell.session.awaiting_secret
    answer = shell("proceed")
    assert echo + question + "proceed\n" + answer == published + PROMPT


def test_partition_create_makes_an_uninitialized_partition_with_a_13_digit_serial(
    ready: ApplianceModel,
) -> None:
    out = created(ready, "p1")("partition list")
    partition = ready.partitions["p1"]
    assert (partition.initialized, partition.has_so, partition.version, partition.label) == (
        False,
        True,
        0,
        "",
    )
    assert partition.co.initialized is False and partition.so_password is None
    assert len(partition.serial) == 13 and not partition.serial.startswith(ready.serial)
    assert partition.serial in out


def test_partition_create_with_force_does_not_ask(ready: ApplianceModel) -> None:
    out = logged_in(ready)("partition create -partition p1 -size 65536 -force")
    assert out == f"\n'partition create' successful.\n\n\n{SUCCESS}\n{PROMPT}"


def test_quit_at_the_proceed_question_creates_nothing(ready: ApplianceModel) -> None:
    shell = logged_in(ready)
    shell("partition create -partition p1")
    assert shell("quit").endswith(f"Command aborted.\n\n{FAILURE}\n{PROMPT}")
    assert ready.partitions == {}


@pytest.mark.parametrize("option", ["-password Part-pw-1", "-domain some-dom"])
def test_partition_create_on_7x_has_no_password_or_domain_option(ready: ApplianceModel, option: str) -> None:
    shell = logged_in(ready)
    out = shell(f"partition create -partition p1 {option} -force")
    assert f"Error:  Invalid option: {option.split()[0]}" in out and out.endswith(f"{FAILURE}\n{PROMPT}")
    assert ready.partitions == {}
    assert "Part-pw-1" not in shell.journaled() and "some-dom" not in shell.journaled()


def test_partition_create_needs_the_hsm_admin_login(ready: ApplianceModel) -> None:
    out = Shell(ready)("partition create -partition p1 -force")
    assert "Error:  HSM Admin is not logged in. Use 'hsm login' first." in out
    assert ready.partitions == {}


@pytest.mark.parametrize("size", ["0", "-5", "lots"])
def test_partition_create_refuses_a_size_that_is_not_a_number_of_bytes(
    ready: ApplianceModel, size: str
) -> None:
    out = logged_in(ready)(f"partition create -partition p1 -size {size} -force")
    assert out.endswith(f"{FAILURE}\n{PROMPT}") and ready.partitions == {}


def test_partition_create_refuses_a_duplicate_name(ready: ApplianceModel) -> None:
    out = created(ready, "p1")("partition create -partition p1 -force")
    assert "A partition named p1 already exists." in out and len(ready.partitions) == 1


def test_hsm_login_question_is_indented_on_7x(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    assert shell("hsm login") == "\n  Please enter the HSM Administrators' password:\n  > "
    assert shell.session.awaiting_secret
    assert shell(ADMIN_PW) == f"'hsm login' successful.\n\n{SUCCESS}\n{PROMPT}"


# -- partition list ---------------------------------------------------------------------------


def test_partition_list_prints_the_published_version_table(ready: ApplianceModel) -> None:
    shell = initialized(ready, "p1")
    shell("partition create -partition sp_sehsm3 -force")
    out = shell("partition list")
    header = load("partition_list_78_exec").splitlines()[:4]
    p1, sp = ready.partitions["p1"], ready.partitions["sp_sehsm3"]
    assert out == "\n".join(
        [
            "",
            *header,
            f"{p1.serial}        {'p1':<32}  1                  0   102400        0   102400",
            f"{sp.serial}        {'sp_sehsm3':<32}  0                  0   102400        0   102400",
            "",
            SUCCESS,
            PROMPT,
        ]
    )
    listed = parse_partition_list(out)
    assert [(p.name, p.serial, p.version) for p in listed] == [
        ("p1", p1.serial, 1),
        ("sp_sehsm3", sp.serial, 0),
    ]


def test_partition_list_without_partitions_says_so(ready: ApplianceModel) -> None:
    assert parse_partition_list(Shell(ready)("partition list")) == ()


# -- partition init (7.8) ---------------------------------------------------------------------


def test_partition_init_sets_label_partition_so_and_domain(ready: ApplianceModel) -> None:
    shell = initialized(ready, "p1")
    partition = ready.partitions["p1"]
    assert (partition.initialized, partition.label, partition.so_password, partition.domain) == (
        True,
        "p1",
        PSO_PW,
        PART_DOMAIN,
    )
    assert partition.version == 1 and not partition.co.initialized
    assert PSO_PW not in shell.journaled() and PART_DOMAIN not in shell.journaled()
    assert "partition init -partition p1 -label p1 -password ******** -domain ******** -force" in (
        shell.journaled()
    )


def test_partition_init_refuses_an_initialized_partition_and_erases_nothing(ready: ApplianceModel) -> None:
    shell = initialized(ready, "p1")
    assert "'partition init co' successful." in shell(
        f"partition init co -partition p1 -psopin {PSO_PW} -copin {CO_PW} -force"
    )
    ready.partitions["p1"].objects = 3
    out = shell("partition init -partition p1 -label other -password New-pso-1 -domain new-dom -force")
    result = parse_result(out)
    assert result.code == 65535 and len(result.errors) == 1
    assert known_outcome("partition init", result) is lunash_dialect.Outcome.ALREADY_INITIALIZED
    partition = ready.partitions["p1"]
    assert (partition.label, partition.so_password, partition.domain, partition.objects) == (
        "p1",
        PSO_PW,
        PART_DOMAIN,
        3,
    )
    assert partition.co.password == CO_PW


def test_partition_init_without_force_asks_and_quit_leaves_it_uninitialized(ready: ApplianceModel) -> None:
    shell = created(ready, "p1")
    question = shell(f"partition init -partition p1 -label p1 -password {PSO_PW} -domain {PART_DOMAIN}")
    prompt = find_interactive_prompt(question)
    assert prompt is not None and prompt.kind is lunash_dialect.PromptKind.CONFIRMATION
    assert "All contents of the partition will be destroyed." in question
    assert shell("quit").endswith(f"Command aborted.\n\n{FAILURE}\n{PROMPT}")
    assert not ready.partitions["p1"].initialized


def test_partition_init_asks_for_the_secrets_it_was_not_given(ready: ApplianceModel) -> None:
    shell = created(ready, "p1")
    questions = [
        shell("partition init -partition p1 -label p1 -force"),
        shell(PSO_PW),
        shell(PSO_PW),
        shell(PART_DOMAIN),
    ]
    assert "Please enter a password for the Partition SO:" in questions[0]
    assert "Please enter a cloning domain to use for initializing this partition:" in questions[2]
    assert all(find_interactive_prompt(q) is not None for q in questions)
    assert "'partition init' successful." in shell(PART_DOMAIN)
    assert (ready.partitions["p1"].so_password, ready.partitions["p1"].domain) == (PSO_PW, PART_DOMAIN)
    assert PSO_PW not in shell.journaled() and PART_DOMAIN not in shell.journaled()


def test_partition_init_needs_the_hsm_admin_login(ready: ApplianceModel) -> None:
    created(ready, "p1")
    out = Shell(ready)(f"partition init -partition p1 -password {PSO_PW} -domain {PART_DOMAIN} -force")
    assert "Error:  HSM Admin is not logged in." in out and not ready.partitions["p1"].initialized


def test_partition_init_of_an_unknown_partition_is_not_in_list(ready: ApplianceModel) -> None:
    out = logged_in(ready)(f"partition init -partition nope -password {PSO_PW} -domain {PART_DOMAIN} -force")
    assert "RC_OBJECT_NOT_IN_LIST" in out and "Specified partition does not exist." in out


@pytest.mark.parametrize(
    "line",
    [
        f"partition init -partition p1 -label p1 -password {PSO_PW} -domain {PART_DOMAIN} -force",
        f"partition init co -partition p1 -psopin {PSO_PW} -copin {CO_PW} -force",
    ],
)
def test_partition_init_is_not_a_command_on_7_2(line: str) -> None:
    state = make_state(dialect="7.2")
    shell = created(state, "p1")
    out = shell(line)
    assert "Error:  Invalid command: init" in out and out.endswith(f"{FAILURE}\n{PROMPT}")
    assert not state.partitions["p1"].initialized and not state.partitions["p1"].co.initialized
    assert PSO_PW not in shell.journaled() and CO_PW not in shell.journaled()


def test_abbreviated_words_reach_init_and_init_co(ready: ApplianceModel) -> None:
    shell = created(ready, "p1")
    assert "'partition init' successful." in shell(
        f"par ini -partition p1 -password {PSO_PW} -domain {PART_DOMAIN} -f"
    )
    assert "'partition init co' successful." in shell(f"par ini c -partition p1 -ps {PSO_PW} -c {CO_PW} -f")
    assert [e.command for e in shell.journal.commands()][-2:] == ["partition init", "partition init co"]
    assert PSO_PW not in shell.journaled() and CO_PW not in shell.journaled()


# -- partition init co (7.8) ------------------------------------------------------------------


def test_partition_init_co_sets_a_password_that_must_be_changed(ready: ApplianceModel) -> None:
    shell = initialized(ready, "p1")
    out = shell(f"partition init co -partition p1 -psopin {PSO_PW} -copin {CO_PW} -force")
    assert out == f"\n'partition init co' successful.\n\n\n{SUCCESS}\n{PROMPT}"
    co = ready.partitions["p1"].co
    assert (co.password, co.pin_to_be_changed, co.initialized) == (CO_PW, True, True)
    assert ready.partitions["p1"].client_password == CO_PW
    assert "-psopin ******** -copin ********" in shell.journaled()
    assert PSO_PW not in shell.journaled() and CO_PW not in shell.journaled()


def test_partition_init_co_follows_policy_21(ready: ApplianceModel) -> None:
    ready.policy21 = False
    initialized(ready, "p1")(f"partition init co -partition p1 -psopin {PSO_PW} -copin {CO_PW} -force")
    assert ready.partitions["p1"].co.pin_to_be_changed is False


def test_partition_init_co_refuses_an_uninitialized_partition(ready: ApplianceModel) -> None:
    out = created(ready, "p1")(f"partition init co -partition p1 -psopin {PSO_PW} -copin {CO_PW} -force")
    assert "is not initialized" in out and out.endswith(f"{FAILURE}\n{PROMPT}")
    assert not ready.partitions["p1"].co.initialized


def test_a_wrong_partition_so_password_uses_one_attempt_and_sets_nothing(ready: ApplianceModel) -> None:
    shell = initialized(ready, "p1")
    out = shell(f"partition init co -partition p1 -psopin Wrong-pso -copin {CO_PW} -force")
    assert "CKR_PIN_INCORRECT" in parse_result(out).error_codes
    partition = ready.partitions["p1"]
    assert partition.so_attempts_left == ROLE_LOGIN_ATTEMPTS - 1 and not partition.co.initialized
    shell(f"partition init co -partition p1 -psopin {PSO_PW} -copin {CO_PW} -force")
    assert partition.so_attempts_left == ROLE_LOGIN_ATTEMPTS and partition.co.password == CO_PW


def test_a_locked_out_partition_so_is_refused_even_with_the_right_password(ready: ApplianceModel) -> None:
    shell = initialized(ready, "p1")
    for _ in range(ROLE_LOGIN_ATTEMPTS - 1):
        assert "CKR_PIN_INCORRECT" in shell(f"partition init co -partition p1 -psopin Bad -copin {CO_PW} -f")
    last = shell(f"partition init co -partition p1 -psopin Bad -copin {CO_PW} -force")
    assert "CKR_PIN_LOCKED" in last
    partition = ready.partitions["p1"]
    assert partition.so_attempts_left == 0
    out = shell(f"partition init co -partition p1 -psopin {PSO_PW} -copin {CO_PW} -force")
    assert "CKR_PIN_LOCKED" in out and "The Partition SO is locked out." in out
    assert partition.so_attempts_left == 0 and not partition.co.initialized


def test_partition_init_co_without_force_asks(ready: ApplianceModel) -> None:
    shell = initialized(ready, "p1")
    question = shell(f"partition init co -partition p1 -psopin {PSO_PW} -copin {CO_PW}")
    assert find_interactive_prompt(question) is not None
    assert "'partition init co' successful." in shell("proceed")


# -- NTLS restart -----------------------------------------------------------------------------


def test_regen_cert_and_ntls_bind_wait_for_an_ntls_restart_on_7x(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    assert not ready.ntls_restart_pending
    before = ready.server_cert.cert_pem
    assert "'sysconf regenCert' successful." in shell("sysconf regenCert -force")
    assert ready.ntls_restart_pending and ready.files["server.pem"] != before
    out = shell("service restart ntls")
    assert out.endswith(f"'service restart' successful.\n\n{SUCCESS}\n{PROMPT}")
    assert not ready.ntls_restart_pending
    assert ready.files["server.pem"] == ready.server_cert.cert_pem
    bind = shell("ntls bind eth1 -force")
    assert "NTLS binding set to network device eth1." in bind and "service restart ntls" in bind
    assert ready.ntls_restart_pending and ready.ntls_device == "eth1"
    shell("service restart ntls")
    assert not ready.ntls_restart_pending


def test_regen_cert_on_5x_leaves_no_restart_pending() -> None:
    state = make_state(dialect="5.4")
    Shell(state)("sysconf regenCert -force")
    Shell(state)("ntls bind eth0 -force")
    assert not state.ntls_restart_pending


def test_only_ntls_can_be_restarted(ready: ApplianceModel) -> None:
    ready.ntls_restart_pending = True
    out = Shell(ready)("service restart sshd")
    assert out.endswith(f"{FAILURE}\n{PROMPT}") and ready.ntls_restart_pending


def test_service_restart_is_a_mutating_command_faults_can_target(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    shell("service restart ntls")
    (entry,) = shell.journal.commands()
    assert (entry.command, entry.mutating) == ("service restart", True)
    faults = Faults()
    for name in ("service restart", "partition init", "partition init co"):
        faults.fail(name)
        assert name in COMMANDS


# -- clients and delete -----------------------------------------------------------------------


def test_client_show_prints_only_id_hostname_and_quoted_partitions(ready: ApplianceModel) -> None:
    heredoc = load("stdin_78_register_assign_show")
    published = heredoc[heredoc.index("ClientID:") :]
    shell = created(ready, "sp_sehsm4")
    ready.files["vciphertrust-i.daenerys.home.pem"] = make_server_certificate("c", "ec").cert_pem
    shell("client register -client vciphertrust-i.daenerys.home -hostname vciphertrust-i.daenerys.home")
    shell("client assignPartition -client vciphertrust-i.daenerys.home -partition sp_sehsm4")
    out = shell("client show -client vciphertrust-i.daenerys.home")
    assert out == f"\n{published}{PROMPT}"
    shell("partition create -partition second -force")
    shell("client assignPartition -client vciphertrust-i.daenerys.home -partition second")
    info = parse_client_show(shell("client show -client vciphertrust-i.daenerys.home"))
    assert info.partitions == ("sp_sehsm4", "second")


def test_partition_delete_removes_a_7x_partition_and_its_assignments(ready: ApplianceModel) -> None:
    shell = initialized(ready, "p1")
    ready.files["web.pem"] = make_server_certificate("web", "ec").cert_pem
    shell("client register -client web -hostname web")
    shell("client assignPartition -client web -partition p1")
    assert "'partition delete' successful." in shell("partition delete -partition p1 -force")
    assert ready.partitions == {} and ready.clients["web"].partitions == []


# -- tables and first login -------------------------------------------------------------------


def test_each_dialect_has_its_own_table() -> None:
    assert "partition init" not in commands_for(DIALECTS["5.4"])
    assert "service restart" not in commands_for(DIALECTS["6.2"])
    assert "partition init" not in commands_for(DIALECTS["7.2"])
    assert {"partition init", "partition init co", "service restart"} <= set(commands_for(DIALECTS["7.8"]))
    assert (
        commands_for(DIALECTS["7.2"])["partition create"]
        is not commands_for(DIALECTS["5.4"])["partition create"]
    )


def test_first_login_notice_on_7x_is_the_published_one() -> None:
    published = load("first_login_72").splitlines()
    banner, rest = published[0], published[1:]
    start = rest.index("New password:")
    notice = password_notice_7("tenantadmin")
    assert banner == DIALECTS["7.2"].banner
    assert ["", *notice] == rest[:start]
