"""The simulator's pure parts: the shell state machine, command syntax, journal, faults, SCP parsing."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from luna_ha.sim.appliance import ApplianceModel, Journal, ShellSession
from luna_ha.sim.faults import Faults
from luna_ha.sim.scp import ScpError, parse_scp_command
from luna_ha.sim.state import make_server_certificate
from luna_ha.sim.syntax import mask_unparsed
from luna_ha.sim.terminal import pty_echo

SUCCESS = "Command Result : 0 (Success)"
FAILURE = "Command Result : 65535 (Luna Shell execution)"
ADMIN_PW = "Admin-pw-1"
DOMAIN = "dom-ain-1"


def make_state(*, initialized: bool = False, dialect: str = "5.4") -> ApplianceModel:
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


class Shell:
    """A ShellSession with a readable transcript: output with LF line ends."""

    def __init__(self, state: ApplianceModel, journal: Journal | None = None, session_id: str = "s1") -> None:
        self.journal = journal or Journal()
        self.session = ShellSession(state, self.journal, session_id)

    def __call__(self, line: str) -> str:
        raw = self.session.feed(line)
        assert "\n" not in raw.replace("\r\n", ""), "every line ends with CRLF"
        return raw.replace("\r\n", "\n")

    def journaled(self) -> str:
        return "\n".join(entry.line for entry in self.journal.entries())


@pytest.fixture
def fresh() -> ApplianceModel:
    return make_state()


@pytest.fixture
def ready() -> ApplianceModel:
    return make_state(initialized=True)


def login(shell: Shell) -> None:
    assert "'hsm login' successful." in shell(f"hsm login -password {ADMIN_PW}")


def upload_cert(state: ApplianceModel, name: str) -> bytes:
    pem = make_server_certificate(name, "ec").cert_pem
    state.files[f"{name}.pem"] = pem
    return pem


# -- output shape -------------------------------------------------------------------------------


def test_output_has_blank_line_body_result_and_prompt(fresh: ApplianceModel) -> None:
    shell = Shell(fresh)
    assert shell("client list") == f"\nNo clients are registered.\n\n{SUCCESS}\n[hsm-a] lunash:>"


def test_greeting_is_banner_then_prompt(fresh: ApplianceModel) -> None:
    greeting = ShellSession(fresh, Journal(), "s").greeting()
    assert greeting.startswith("Luna SA 5.4.9 Command Line Shell - Copyright (c)")
    assert greeting.endswith("\r\n\r\n[hsm-a] lunash:>")


def test_factory_fresh_hsm_show_reports_zeroized_and_no_label(fresh: ApplianceModel) -> None:
    out = Shell(fresh)("hsm show")
    assert "   HSM Label:                          no label\n" in out
    assert "   Serial #:                           157541\n" in out
    assert "HSM Admin login attempts left:      HSM IS ZEROIZED !!!!" in out
    assert "HSM Admin login status:             Not Logged In" in out
    assert "   There are no partitions.\n" in out
    assert "Space In Use (Bytes):                0\n" in out
    assert out.endswith(f"\n\n{SUCCESS}\n[hsm-a] lunash:>")


@pytest.mark.parametrize(
    ("dialect", "model_line", "extended"),
    [("5.1", "Hardware Model:", False), ("5.4", "Hardware Model:", True), ("6.2", "HSM Model:", True)],
)
def test_hsm_show_fields_follow_the_software_generation(
    dialect: str, model_line: str, extended: bool
) -> None:
    out = Shell(make_state(dialect=dialect))("hsm show")
    assert f"   {model_line}" in out
    assert ("Audit Role Initialized:" in out) is extended
    assert ("Remote Login Initialized:" in out) is extended


def test_empty_line_and_quit_at_the_prompt_only_print_the_prompt(fresh: ApplianceModel) -> None:
    shell = Shell(fresh)
    assert shell("") == "[hsm-a] lunash:>"
    assert shell("quit") == "[hsm-a] lunash:>"


def test_exit_closes_the_session(fresh: ApplianceModel) -> None:
    shell = Shell(fresh)
    assert shell("exit") == ""
    assert shell.session.closed


# -- hsm init and prompts -----------------------------------------------------------------------


def test_hsm_init_with_force_and_inline_secrets_does_not_ask(fresh: ApplianceModel) -> None:
    out = Shell(fresh)(f"hsm init -label hsm-a -domain {DOMAIN} -password {ADMIN_PW} -force")
    assert out == f"\n'hsm init' successful.\n\n{SUCCESS}\n[hsm-a] lunash:>"
    assert not fresh.zeroized
    assert (fresh.label, fresh.admin_password, fresh.domain, fresh.attempts_left) == (
        "hsm-a",
        ADMIN_PW,
        DOMAIN,
        3,
    )


def test_hsm_init_without_force_asks_to_proceed(fresh: ApplianceModel) -> None:
    shell = Shell(fresh)
    question = shell(f"hsm init -label a -domain {DOMAIN} -password {ADMIN_PW}")
    assert "CAUTION:  Are you sure you wish to initialize this HSM?" in question
    assert question.endswith("Type 'proceed' to initialize the HSM, or 'quit' to quit now.\n> ")
    assert shell.session.awaiting_answer and not shell.session.awaiting_secret
    assert shell("proceed") == f"'hsm init' successful.\n\n{SUCCESS}\n[hsm-a] lunash:>"
    assert not fresh.zeroized


def test_quit_at_a_confirmation_aborts_without_change(fresh: ApplianceModel) -> None:
    shell = Shell(fresh)
    shell(f"hsm init -label a -domain {DOMAIN} -password {ADMIN_PW}")
    assert shell("quit") == f"Command aborted.\n\n{FAILURE}\n[hsm-a] lunash:>"
    assert fresh.zeroized


def test_missing_password_and_domain_are_each_asked_twice_as_secrets(fresh: ApplianceModel) -> None:
    shell = Shell(fresh)
    assert shell("hsm init -label a -force").endswith(
        "Please enter a password for the HSM Administrator:\n> "
    )
    assert shell.session.awaiting_secret
    assert shell("pw-1").endswith("Please re-enter password to confirm:\n> ")
    assert shell("pw-1").endswith("Please enter a cloning domain to use for initializing this HSM:\n> ")
    assert shell("d-1").endswith("Please re-enter cloning domain to confirm:\n> ")
    assert "'hsm init' successful." in shell("d-1")
    assert (fresh.admin_password, fresh.domain) == ("pw-1", "d-1")


def test_different_confirmation_entries_fail(fresh: ApplianceModel) -> None:
    shell = Shell(fresh)
    shell("hsm init -label a -force")
    shell("pw-1")
    assert shell("pw-2") == f"Error:  The two entries do not match.\n\n{FAILURE}\n[hsm-a] lunash:>"
    assert fresh.zeroized


def test_reinit_of_an_initialized_hsm_needs_login(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    assert FAILURE in shell("hsm init -label b -domain d -password p -force")
    login(shell)
    assert "'hsm init' successful." in shell("hsm init -label b -domain d -password p -force")
    assert ready.label == "b"
    assert not shell.session.logged_in, "init ends the HSM Admin login"


# -- hsm login and zeroization ------------------------------------------------------------------


def test_wrong_login_reports_pin_incorrect_and_counts_down(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    out = shell("hsm login -password nope")
    error = "Error:  'hsm login' failed. (A00000 : LUNA_RET_UM_PIN_INCORRECT)"
    assert out == f"\n{error}\n\n{FAILURE}\n[hsm-a] lunash:>"
    assert "HSM Admin login attempts left:      2 before HSM zeroization!" in shell("hsm show")


def test_successful_login_resets_attempts_and_shows_logged_in(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    shell("hsm login -password nope")
    login(shell)
    out = shell("hsm show")
    assert "HSM Admin login status:             Logged In" in out
    assert "HSM Admin login attempts left:      3 before HSM zeroization!" in out


def test_login_without_password_asks_once(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    assert shell("hsm login").endswith("\nPlease enter the HSM Administrators' password:\n> ")
    assert shell.session.awaiting_secret
    assert shell(ADMIN_PW) == f"'hsm login' successful.\n\n{SUCCESS}\n[hsm-a] lunash:>"


def test_last_attempt_needs_proceed_and_third_failure_zeroizes(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    ready.add_partition("p1", "pw", DOMAIN)
    upload_cert(ready, "web")
    shell("client register -client web -hostname web")
    shell("client assignPartition -client web -partition p1")
    shell("hsm login -password bad1")
    shell("hsm login -password bad2")
    caution = shell("hsm login -password bad3")
    assert "This is your LAST available HSM Admin login attempt" in caution
    assert caution.endswith("type 'proceed', otherwise type 'quit'\n> ")
    out = shell("proceed")
    assert "Error:  'hsm login' failed. (30000F : LUNA_RET_SO_LOGIN_FAILURE_THRESHOLD)" in out
    assert ready.zeroized and not ready.partitions and ready.admin_password is None
    show = shell("hsm show")
    assert "HSM Label:                          no label" in show
    assert "HSM IS ZEROIZED !!!!" in show
    assert "There are no partitions." in show
    assert ready.clients["web"].partitions == [], "registrations survive, assignments do not"


def test_quit_at_the_last_attempt_caution_keeps_the_attempt(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    shell("hsm login -password bad1")
    shell("hsm login -password bad2")
    shell(f"hsm login -password {ADMIN_PW}")
    assert "Command aborted." in shell("quit")
    assert ready.attempts_left == 1 and not ready.zeroized


def test_login_belongs_to_the_session(ready: ApplianceModel) -> None:
    journal = Journal()
    first, second = Shell(ready, journal, "a"), Shell(ready, journal, "b")
    login(first)
    assert "Not Logged In" in second("hsm show")
    assert "HSM Admin is not logged in" in second(
        "partition create -partition p -password x -domain d -force"
    )
    assert "'partition create' successful." in first(
        "partition create -partition p -password x -domain d -force"
    )


def test_logout_ends_the_login(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    login(shell)
    assert "'hsm logout' successful." in shell("hsm logout")
    assert not shell.session.logged_in


def test_login_on_a_zeroized_hsm_fails_without_counting(fresh: ApplianceModel) -> None:
    out = Shell(fresh)("hsm login -password x")
    assert "Error:  'hsm login' failed. The HSM is zeroized" in out
    assert fresh.attempts_left == 3


# -- sysconf, ntls --------------------------------------------------------------------------------


def test_regen_cert_replaces_server_pem(fresh: ApplianceModel) -> None:
    before = fresh.files["server.pem"]
    shell = Shell(fresh)
    question = shell("sysconf regenCert")
    assert "WARNING !!" in question and "type 'proceed'" in question
    out = shell("proceed")
    assert "'sysconf regenCert' successful. NTLS must be (re)started before clients can connect." in out
    after = fresh.files["server.pem"]
    assert after != before
    assert x509.load_pem_x509_certificate(after).subject.rfc4514_string().startswith("CN=hsm-a")


def test_regen_cert_abbreviated_with_force(fresh: ApplianceModel) -> None:
    before = fresh.files["server.pem"]
    assert "'sysconf regenCert' successful." in Shell(fresh)("sysconf re -f")
    assert fresh.files["server.pem"] != before


def test_ntls_bind_sets_the_binding(fresh: ApplianceModel) -> None:
    out = Shell(fresh)("ntls bind eth0 -force")
    assert "Success: NTLS binding to network device eth0" in out and SUCCESS in out
    assert fresh.ntls_bound and fresh.ntls_device == "eth0"


def test_ntls_bind_rejects_an_unknown_device(fresh: ApplianceModel) -> None:
    assert "Error:  Invalid network device: wlan0" in Shell(fresh)("ntls bind wlan0 -force")
    assert not fresh.ntls_bound


# -- partitions -----------------------------------------------------------------------------------


def test_partition_create_needs_login(ready: ApplianceModel) -> None:
    out = Shell(ready)("partition create -partition p -password x -domain d -force")
    assert (
        out == f"\nError:  HSM Admin is not logged in. Use 'hsm login' first.\n\n{FAILURE}\n[hsm-a] lunash:>"
    )


def test_partition_serials_are_the_hsm_serial_and_an_increasing_counter(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    login(shell)
    for name in ("p1", "p2", "p3"):
        assert "'partition create' successful." in shell(
            f"partition create -partition {name} -password x -domain d -f"
        )
    shell("partition delete -partition p3 -force")
    shell("partition create -partition p4 -password x -domain d -f")
    assert [p.serial for p in ready.partitions.values()] == ["157541001", "157541002", "157541004"]


def test_partition_list_and_hsm_show_list_partitions(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    login(shell)
    shell("partition create -partition payments -password x -domain d -force")
    listing = shell("par list")
    assert " Partition    Name                     Objects     Total      Used      Free\n" in listing
    assert " " + "=" * 75 + "\n" in listing
    assert " 157541001    payments                 0           102400     0         102400\n" in listing
    assert "   Partition: 157541001,     Name: payments\n" in shell("hsm show")


def test_partition_list_without_partitions(ready: ApplianceModel) -> None:
    assert "\nThere are no partitions.\n" in Shell(ready)("partition list")


def test_partition_create_asks_for_missing_secrets_then_proceed(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    login(shell)
    first = shell("partition create -partition p")
    assert "On completion, you will have this number of partitions: 1" in first
    assert first.endswith("Please enter a password for the partition:\n> ")
    shell("ppw")
    assert shell("ppw").endswith("Please enter a cloning domain to use for initializing this partition:\n> ")
    shell("pdom")
    assert shell("pdom").endswith(
        "Type 'proceed' to create the initialized partition, or 'quit' to quit now.\n> "
    )
    assert "'partition create' successful." in shell("proceed")
    assert (ready.partitions["p"].password, ready.partitions["p"].domain) == ("ppw", "pdom")


def test_partition_create_rejects_a_duplicate_name(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    login(shell)
    shell("partition create -partition p -password x -domain d -force")
    assert "already exists" in shell("partition create -partition p -password x -domain d -force")
    assert len(ready.partitions) == 1


def test_partition_delete_removes_it_and_its_assignments(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    login(shell)
    shell("partition create -partition p -password x -domain d -force")
    upload_cert(ready, "web")
    shell("client register -client web -hostname web")
    shell("client assignPartition -client web -partition p")
    question = shell("partition delete -partition p")
    assert "Are you sure you wish to delete the partition named: p" in question
    assert "'partition delete' successful." in shell("proceed")
    assert not ready.partitions and ready.clients["web"].partitions == []


def test_partition_delete_of_an_unknown_partition_fails(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    login(shell)
    out = shell("partition delete -partition nope -force")
    assert "(C000040A : RC_OBJECT_NOT_IN_LIST)" in out and "Specified partition does not exist." in out


# -- clients --------------------------------------------------------------------------------------


def test_client_register_needs_the_certificate_file(ready: ApplianceModel) -> None:
    out = Shell(ready)("client register -client web -hostname web")
    assert "Error:  Unable to find the client certificate file web.pem" in out and FAILURE in out
    assert not ready.clients


def test_client_register_rejects_a_file_that_is_not_a_certificate(ready: ApplianceModel) -> None:
    ready.files["web.pem"] = b"not a certificate"
    assert "web.pem is not a PEM certificate" in Shell(ready)("client register -client web -hostname web")


def test_client_register_and_the_read_commands(ready: ApplianceModel) -> None:
    pem = upload_cert(ready, "web-1")
    shell = Shell(ready)
    login(shell)
    shell("partition create -partition p1 -password x -domain d -force")
    assert shell("c reg -c web -h web-1") == f"\n'client register' successful.\n\n{SUCCESS}\n[hsm-a] lunash:>"
    assert "'client assignPartition' successful." in shell("c a -c web -p p1")
    assert "\nregistered client 1: web\n" in shell("client list")
    show = shell("client show -client web")
    assert (
        'ClientID:     web\nHostname:     web-1\nHTL Required: no\nOTT Expiry:   n/a\nPartitions:   "p1"\n'
        in show
    )
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    digest = hashlib.md5(der, usedforsecurity=False).hexdigest().upper()
    expected = ":".join(digest[i : i + 2] for i in range(0, 32, 2))
    assert f"\nCertificate fingerprint: {expected}\n" in shell("client fingerprint -client web")


def test_client_show_without_partitions_says_none(ready: ApplianceModel) -> None:
    upload_cert(ready, "web")
    shell = Shell(ready)
    shell("client register -client web -hostname web")
    assert "Partitions:   <none>" in shell("client show -client web")


def test_client_show_on_5_1_has_no_htl_lines() -> None:
    state = make_state(initialized=True, dialect="5.1")
    upload_cert(state, "web")
    shell = Shell(state)
    shell("client register -client web -hostname web")
    assert "HTL Required" not in shell("client show -client web")


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (
            "client register -client web -hostname other",
            "A client with the same name has already been registered.",
        ),
        (
            "client register -client web2 -hostname web",
            "A client with the same hostname has already been registered.",
        ),
    ],
)
def test_client_register_duplicates(ready: ApplianceModel, second: str, message: str) -> None:
    upload_cert(ready, "web")
    upload_cert(ready, "other")
    shell = Shell(ready)
    shell("client register -client web -hostname web")
    out = shell(second)
    assert message in out and FAILURE in out


def test_client_register_by_ip_and_its_duplicate(ready: ApplianceModel) -> None:
    upload_cert(ready, "10.0.0.5")
    shell = Shell(ready)
    assert "'client register' successful." in shell("client register -client a -ip 10.0.0.5")
    assert "client with the same IP address has already been registered" in shell(
        "client register -client b -ip 10.0.0.5"
    )
    assert "Invalid IP address: 10.0.0" in shell("client register -client c -ip 10.0.0")


def test_client_register_needs_exactly_one_of_hostname_and_ip(ready: ApplianceModel) -> None:
    assert "Specify exactly one of -hostname and -ip." in Shell(ready)("client register -client a")


def test_assign_twice_and_revoke_unassigned_give_the_known_messages(ready: ApplianceModel) -> None:
    ready.add_partition("p1", "x", "d")
    upload_cert(ready, "web")
    shell = Shell(ready)
    shell("client register -client web -hostname web")
    shell("client assignPartition -client web -partition p1")
    assert "client already has access" in shell("client assignPartition -client web -partition p1")
    assert "'client revokePartition' successful." in shell("client revokePartition -client web -partition p1")
    out = shell("client revokePartition -client web -partition p1")
    assert "Specified partition was not assigned to client" in out and FAILURE in out


def test_assign_to_an_unknown_partition_fails(ready: ApplianceModel) -> None:
    upload_cert(ready, "web")
    shell = Shell(ready)
    shell("client register -client web -hostname web")
    assert "Specified partition does not exist." in shell(
        "client assignPartition -client web -partition nope"
    )


@pytest.mark.parametrize(
    "command", ["client show", "client fingerprint", "client delete", "client assignPartition"]
)
def test_unknown_client_reports_object_not_in_list(ready: ApplianceModel, command: str) -> None:
    extra = " -partition p" if command == "client assignPartition" else ""
    out = Shell(ready)(f"{command} -client ghost{extra}")
    not_in_list = f"Error:  '{command}' failed. (C000040A : RC_OBJECT_NOT_IN_LIST)"
    assert f"{not_in_list}\nError:  Specified client does not exist." in out
    assert FAILURE in out


def test_client_delete_asks_then_deletes(ready: ApplianceModel) -> None:
    upload_cert(ready, "web")
    shell = Shell(ready)
    shell("client register -client web -hostname web")
    question = shell("client delete -client web")
    assert "CAUTION:  Are you sure you wish to delete client named: web" in question
    assert question.endswith("Type 'proceed' to delete the client, or 'quit' to quit now.\n> ")
    assert "'client delete' successful." in shell("proceed")
    assert "No clients are registered." in shell("client list")


# -- syntax ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("hsm l", "Error:  Ambiguous command: l (could be: login, logout)"),
        ("partition create -p x -force", "Error:  Ambiguous option: -p (could be: -partition, -password)"),
        ("frobnicate", "Error:  Invalid command: frobnicate"),
        ("hsm show -verbose", "Error:  Invalid option: -verbose"),
        ("hsm init -domain d -password p -force", "Error:  Missing required option: -label"),
        ("client show -client", "Error:  Missing value for option: -client"),
        ("ntls bind -force", "Error:  Missing argument: <device>"),
        ("hsm", "Error:  Incomplete command: hsm"),
        ('client show -client "web', "Error:  Unterminated quoted value."),
        ("hsm selfTest", "Error:  'hsm selfTest' is not available in this simulator."),
        ("s", "Error:  Ambiguous command: s"),
    ],
)
def test_bad_lines_print_error_and_shell_failure(fresh: ApplianceModel, line: str, message: str) -> None:
    out = Shell(fresh)(line)
    assert out.startswith(f"\n{message}")
    assert out.endswith(f"\n\n{FAILURE}\n[hsm-a] lunash:>")


def test_commands_and_options_are_case_insensitive_and_values_keep_case(ready: ApplianceModel) -> None:
    upload_cert(ready, "Web-Host")
    shell = Shell(ready)
    assert "'client register' successful." in shell("CLIENT Register -CLIENT Web -HOSTNAME Web-Host")
    assert "ClientID:     Web" in shell("client show -client Web")


def test_quoted_values_may_contain_spaces(ready: ApplianceModel) -> None:
    upload_cert(ready, "web")
    shell = Shell(ready)
    assert "'client register' successful." in shell('client register -client "web client" -hostname web')
    assert "registered client 1: web client" in shell("client list")


# -- journal --------------------------------------------------------------------------------------


def test_journal_masks_inline_and_prompted_secrets(fresh: ApplianceModel) -> None:
    shell = Shell(fresh)
    shell(f"hsm init -label a -d {DOMAIN} -sopw {ADMIN_PW} -f")
    shell('hsm login -p "Admin-pw-1"')
    shell("hsm login")
    shell("typed-secret")
    lines = [e.line for e in shell.journal.entries()]
    assert lines == [
        "hsm init -label a -d ******** -sopw ******** -f",
        "hsm login -p ********",
        "hsm login",
        "********",
    ]
    assert all(ADMIN_PW not in line and DOMAIN not in line for line in lines)


def test_journal_masks_secrets_of_lines_that_do_not_parse(fresh: ApplianceModel) -> None:
    shell = Shell(fresh)
    shell("partition create -p secret1 -password secret2 -domain secret3")
    shell("hsm init -label a -pasword typo-secret")
    assert all("secret" not in e.line for e in shell.journal.entries())


def test_journal_marks_mutating_and_auth_commands_and_results(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    mark = shell.journal.mark()
    shell("hsm show")
    shell("partition list")
    shell("client list")
    assert shell.journal.since(mark) and not [e for e in shell.journal.since(mark) if e.mutating]
    login(shell)
    shell("partition create -partition p -password x -domain d -force")
    shell("partition create -partition p -password x -domain d -force")
    entries = shell.journal.commands()
    assert [(e.command, e.mutating, e.auth, e.result) for e in entries[-3:]] == [
        ("hsm login", False, True, 0),
        ("partition create", True, False, 0),
        ("partition create", True, False, 65535),
    ]
    assert {e.session for e in entries} == {"s1"}


def test_mask_unparsed_masks_after_secret_like_options() -> None:
    assert (
        mask_unparsed("x y -pw a -dom b -size 5 -label l")
        == "x y -pw ******** -dom ******** -size ******** -label l"
    )
    assert mask_unparsed('hsm login -password "abc') == "hsm login ********"


# -- faults and scp parsing ---------------------------------------------------------------------


def test_fault_rules_match_by_command_or_ordinal_and_expire() -> None:
    faults = Faults()
    faults.drop(nth=2)
    faults.fail("Partition Create", "boom")
    assert faults.on_command("hsm show", 1) is None
    drop = faults.on_command("hsm show", 2)
    assert drop is not None and drop.kind == "drop"
    assert faults.on_command("hsm show", 2) is None, "a drop fires once by default"
    fail = faults.on_command("partition create", 5)
    assert fail is not None and fail.message == "boom"
    assert faults.on_command("partition create", 6) is not None, "a fail stays until cleared"
    faults.clear()
    assert faults.on_command("partition create", 7) is None


def test_fault_on_an_unknown_command_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown lunash command"):
        Faults().fail("partition creat")


def test_latency_per_command_and_default() -> None:
    faults = Faults({"hsm show": 0.5}, default_latency=0.1)
    assert faults.latency_for("hsm show") == 0.5
    assert faults.latency_for("client list") == 0.1


@pytest.mark.parametrize(
    ("command", "direction", "name"),
    [
        ("scp -t web.pem", "upload", "web.pem"),
        ("scp -v -p -t -- ./web.pem", "upload", "web.pem"),
        ("scp -t .", "upload", None),
        ("scp -f server.pem", "download", "server.pem"),
        ("scp -f ~/server.pem", "download", "server.pem"),
    ],
)
def test_scp_commands_name_home_directory_files(command: str, direction: str, name: str | None) -> None:
    request = parse_scp_command(command)
    assert request is not None and (request.direction, request.name) == (direction, name)


def test_scp_refuses_paths_and_directories() -> None:
    with pytest.raises(ScpError, match="Permission denied"):
        parse_scp_command("scp -t /etc/passwd")
    with pytest.raises(ScpError, match="Permission denied"):
        parse_scp_command("scp -f ../x")
    with pytest.raises(ScpError, match="directories"):
        parse_scp_command("scp -r -t .")
    assert parse_scp_command("hsm show") is None


def test_empty_inline_secret_is_refused_without_costing_a_login_attempt(ready: ApplianceModel) -> None:
    shell = Shell(ready)
    assert "Error:  A value is required for -password." in shell('hsm login -password ""')
    assert ready.attempts_left == 3


def test_hsm_init_takes_only_one_of_password_and_sopw(fresh: ApplianceModel) -> None:
    assert "Use only one of -password and -sopw." in Shell(fresh)(
        "hsm init -label a -password x -sopw y -force"
    )
    assert fresh.zeroized


def test_pty_modes_can_turn_echo_off() -> None:
    assert pty_echo(b"")
    assert not pty_echo(bytes([53]) + (0).to_bytes(4, "big") + b"\0")
    assert pty_echo(bytes([1]) + (3).to_bytes(4, "big") + bytes([53]) + (1).to_bytes(4, "big") + b"\0")


# -- files of the home directory ----------------------------------------------------------------


def test_my_file_delete_removes_an_uploaded_file(ready: ApplianceModel) -> None:
    upload_cert(ready, "web")
    out = Shell(ready)("my file delete -file web.pem -force")
    assert out == f"\n'my file delete' successful.\n\n{SUCCESS}\n[hsm-a] lunash:>"
    assert "web.pem" not in ready.files


def test_my_file_delete_of_a_missing_file_fails(ready: ApplianceModel) -> None:
    out = Shell(ready)("my file delete -file web.pem -force")
    assert "Error:  'my file delete' failed. File web.pem does not exist." in out
    assert out.endswith(f"{FAILURE}\n[hsm-a] lunash:>")


def test_my_file_delete_without_force_asks_to_proceed(ready: ApplianceModel) -> None:
    upload_cert(ready, "web")
    shell = Shell(ready)
    assert "Are you sure you wish to delete the file web.pem?" in shell("my file delete -file web.pem")
    assert "web.pem" in ready.files
    assert "'my file delete' successful." in shell("proceed")
    assert "web.pem" not in ready.files


def test_three_word_commands_resolve_word_by_word(ready: ApplianceModel) -> None:
    upload_cert(ready, "web")
    shell = Shell(ready)
    assert "Ambiguous option: -f" in shell("my fi del -f web.pem")
    assert "Incomplete command: my file" in shell("my file")
    assert "'my file list' is not available in this simulator." in shell("my file list")
    assert "'my file delete' successful." in shell("MY FILE DEL -fi web.pem -fo")
