"""Parsers of lunash output, on transcripts re-drawn from luna/REFERENCE.md (5.1, 5.3, 6.2, 7.x)
and on published Luna Network HSM 7 output, kept verbatim (only the ssh client's own lines left out):

* ``hsm_show_72_zeroized``, ``first_login_72``: a 7.2.0-220 appliance of Azure Dedicated HSM, from
  the README of the public ``azure-dedicated-hsm-examples`` repository (Arsen Vladimirskiy).
* ``partition_create_7x_proceed``: `partition create` without ``-force`` on IBM Cloud HSM (7.0),
  from Cloudflare's public Keyless SSL documentation.
* ``stdin_78_register_assign_show`` (a lunash session fed on stdin to a 7.8.5 appliance) and
  ``partition_list_78_exec`` (one `par list` over SSH exec): from Thales' public CipherTrust
  integration notes (``CipherTrust_Notes`` on GitHub).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from luna_ha.errors import LunaHAError
from luna_ha.lunash import dialect
from luna_ha.lunash.errors import ClientNotFound, CommandReportedFailure, HsmUnreachable, ParseError
from luna_ha.lunash.parsers import (
    ClientInfo,
    CommandResult,
    HsmInfo,
    PartitionInfo,
    find_interactive_prompt,
    known_outcome,
    parse_client_fingerprint,
    parse_client_list,
    parse_client_show,
    parse_hsm_show,
    parse_partition_list,
    parse_result,
)
from luna_ha.software import Channel, Software

TRANSCRIPTS = Path(__file__).parent / "transcripts"


def load(name: str) -> str:
    return (TRANSCRIPTS / f"{name}.txt").read_text(encoding="ascii")


# --- whitespace / framing variations ---------------------------------------------------------

_RUN = st.sampled_from([" ", "  ", "\t", " \t ", "     "])
_EDGE = st.sampled_from(["", " ", "\t", "   "])
_EOL = st.sampled_from(["\n", "\r\n", "\r\r\n"])


@st.composite
def reframed(draw: st.DrawFn, text: str) -> str:
    """``text`` with whitespace runs, line ends, blank lines, echo and trailing prompt varied."""
    lines = text.split("\n")
    while lines and not lines[-1]:
        lines.pop()
    first = dialect.PROMPT_LINE_RE.match(lines[0])
    if first is not None:
        framing = draw(st.sampled_from(["prompt+echo", "bare echo", "no echo"]))
        if framing == "bare echo":
            lines[0] = first.group("rest")
        elif framing == "no echo":
            lines = lines[1:]
    if lines and lines[-1].strip().endswith(dialect.PROMPT_SUFFIX) and draw(st.booleans()):
        lines = lines[:-1]
    out: list[str] = []
    for line in lines:
        parts = re.split(r"([ \t]+)", line.strip())
        rebuilt = "".join(draw(_RUN) if part.isspace() else part for part in parts)
        out.append(draw(_EDGE) + rebuilt + draw(_EDGE))
        out.extend(draw(st.lists(_EDGE, max_size=2)))
    return "".join(line + draw(_EOL) for line in out)


def variants(name: str) -> st.SearchStrategy[str]:
    return reframed(load(name))


# --- parse_result ----------------------------------------------------------------------------


def test_success_result_is_ok_with_code_zero() -> None:
    result = parse_result(load("client_assign_ok"))
    assert result == CommandResult(
        code=0, text="Success", errors=(), body=("'client assignPartition' successful.",)
    )
    assert result.ok


def test_failed_login_is_not_ok_and_names_the_pin_error() -> None:
    result = parse_result(load("hsm_login_failed"))
    assert result.code == dialect.SHELL_FAILURE_CODE
    assert result.text == "Luna Shell execution"
    assert result.errors == ("Error: 'hsm login' failed. (A00000 : LUNA_RET_UM_PIN_INCORRECT)",)
    assert result.error_codes == ("LUNA_RET_UM_PIN_INCORRECT",)
    assert set(result.error_codes) <= dialect.LOGIN_FAILURE_CODES
    assert not result.ok


def test_masked_echo_of_sensitive_command_is_not_part_of_body() -> None:
    for variant in ("hsm_login_ok", "partition_create_ok"):
        result = parse_result(load(variant))
        assert result.ok
        assert all("********" not in line for line in result.body)


def test_zero_code_with_error_line_is_not_ok() -> None:
    result = parse_result("Error:  something odd\nCommand Result : 0 (Success)\n")
    assert result.code == 0
    assert not result.ok


def test_output_without_result_line_has_no_code_and_is_not_ok() -> None:
    result = parse_result("[hsm-a] lunash:>client list\nregistered client 1: web\n")
    assert result.code is None
    assert result.text == ""
    assert result.body == ("registered client 1: web",)
    assert not result.ok


def test_unknown_client_result_has_both_error_lines() -> None:
    result = parse_result(load("client_show_unknown"))
    assert result.errors == (
        "Error: 'client show' failed. (C000040A : RC_OBJECT_NOT_IN_LIST)",
        "Error: Specified client does not exist.",
    )
    assert result.error_codes == ("RC_OBJECT_NOT_IN_LIST",)
    assert result.body == ()


@settings(max_examples=60)
@given(st.data())
def test_parse_result_ignores_whitespace_and_framing(data: st.DataObject) -> None:
    for name in ("hsm_login_failed", "client_assign_ok", "client_show_unknown", "partition_create_ok"):
        assert parse_result(data.draw(variants(name))) == parse_result(load(name))


@given(st.text())
def test_parse_result_never_raises(text: str) -> None:
    assert isinstance(parse_result(text), CommandResult)


# --- known outcomes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transcript", "command", "outcome"),
    [
        ("client_assign_already", "client assignPartition", dialect.Outcome.ALREADY_ASSIGNED),
        ("client_register_duplicate", "client register", dialect.Outcome.ALREADY_REGISTERED),
        ("client_revoke_not_assigned", "client revokePartition", dialect.Outcome.NOT_ASSIGNED),
        ("client_delete_unknown", "client delete", dialect.Outcome.NO_SUCH_CLIENT),
        ("client_show_unknown", "client show", dialect.Outcome.NO_SUCH_CLIENT),
        ("client_fingerprint_unknown", "client fingerprint", dialect.Outcome.NO_SUCH_CLIENT),
    ],
)
def test_known_duplicate_and_absent_messages_are_recognised(
    transcript: str, command: str, outcome: dialect.Outcome
) -> None:
    result = parse_result(load(transcript))
    assert not result.ok
    assert known_outcome(command, result) is outcome


def test_unknown_client_is_not_benign_for_assign() -> None:
    text = load("client_show_unknown").replace("client show", "client assignPartition")
    assert known_outcome("client assignPartition", parse_result(text)) is None


def test_known_message_applies_only_to_its_own_command() -> None:
    result = parse_result(load("client_assign_already"))
    assert known_outcome("client register", result) is None
    assert known_outcome("partition create", result) is None


def test_wrong_login_password_is_never_a_known_outcome() -> None:
    result = parse_result(load("hsm_login_failed"))
    assert all(known_outcome(name, result) is None for name in dialect.COMMANDS)


# --- interactive prompts ---------------------------------------------------------------------


def test_last_login_attempt_caution_is_detected_before_generic_proceed() -> None:
    prompt = find_interactive_prompt(load("hsm_login_last_attempt"))
    assert prompt is not None
    assert prompt.kind is dialect.PromptKind.CONFIRMATION
    assert "LAST" in prompt.description


def test_regen_cert_proceed_question_is_detected() -> None:
    prompt = find_interactive_prompt(load("regen_cert_prompt"))
    assert prompt is not None and prompt.kind is dialect.PromptKind.CONFIRMATION


@pytest.mark.parametrize(
    "line",
    [
        "Please enter the HSM Administrators' password:",
        "Please enter a password for the HSM Administrator:",
        "Please re-enter password to confirm:",
        "Please enter a cloning domain to use for initializing this HSM:",
        "Please re-enter cloning domain to confirm:",
    ],
)
def test_secret_entry_prompts_are_detected(line: str) -> None:
    prompt = find_interactive_prompt(f"\r\n\r\n{line} ")
    assert prompt is not None and prompt.kind is dialect.PromptKind.CREDENTIAL


def test_password_prompt_transcript_is_detected() -> None:
    prompt = find_interactive_prompt(load("hsm_init_password_prompt"))
    assert prompt is not None and prompt.kind is dialect.PromptKind.CREDENTIAL


def test_ordinary_output_has_no_interactive_prompt() -> None:
    for name in ("hsm_show_62_initialized_logged_in", "partition_list_5x", "client_show_53", "hsm_login_ok"):
        assert find_interactive_prompt(load(name)) is None


def test_prompt_words_on_separate_lines_do_not_form_a_prompt() -> None:
    assert find_interactive_prompt("Please enter nothing here\npassword rules: none\n") is None


# --- prompt patterns -------------------------------------------------------------------------


@pytest.mark.parametrize("buffer", ["[local_host] lunash:>", "\r\n[hsm-2-1-2-6] lunash:> ", "x\nlunash:>"])
def test_prompt_at_end_matches_any_hostname(buffer: str) -> None:
    assert dialect.PROMPT_RE.search(buffer)


def test_prompt_reports_the_appliance_hostname() -> None:
    match = dialect.PROMPT_RE.search("Luna SA 5.4 Command Line Shell\r\n[hsm-2-1-2-6] lunash:>")
    assert match is not None and match.group("hostname") == "hsm-2-1-2-6"


def test_prompt_tables_by_kind_cover_every_interactive_prompt() -> None:
    assert len(dialect.CONFIRM_PROMPT_PATTERNS) + len(dialect.PASSWORD_PROMPT_PATTERNS) == len(
        dialect.INTERACTIVE_PROMPTS
    )
    assert any(
        p.search("Please enter the HSM Administrators' password:") for p in dialect.PASSWORD_PROMPT_PATTERNS
    )
    assert any(p.search(load("regen_cert_prompt")) for p in dialect.CONFIRM_PROMPT_PATTERNS)
    assert not any(p.search(load("regen_cert_prompt")) for p in dialect.PASSWORD_PROMPT_PATTERNS)


def test_prompt_at_end_does_not_match_prompt_followed_by_output() -> None:
    assert dialect.PROMPT_RE.search("[hsm-a] lunash:>hsm show\r\n") is None


def test_success_sentinel_matches_exact_success_only() -> None:
    assert dialect.SUCCESS_SENTINEL_RE.search(dialect.SUCCESS_SENTINEL)
    assert dialect.SUCCESS_SENTINEL_RE.search("Command Result : 65535 (Luna Shell execution)") is None


# --- hsm show --------------------------------------------------------------------------------


def test_zeroized_51_reports_marker_and_no_attempts() -> None:
    info = parse_hsm_show(load("hsm_show_51_zeroized"))
    assert info == HsmInfo(
        software_version="5.1.0-25",
        label=None,
        serial="157541",
        firmware="6.2.1",
        model="Luna K6",
        admin_logged_in=False,
        attempts_left=None,
        zeroized=True,
        partitions=(),
        space_in_use=0,
        fips=False,
    )


def test_zeroized_53_with_numeric_attempts_is_zeroized() -> None:
    info = parse_hsm_show(load("hsm_show_53_zeroized_numeric_attempts"))
    assert info.attempts_left == 3
    assert info.label is None
    assert info.space_in_use == 0
    assert info.zeroized


def test_no_label_with_space_in_use_is_not_zeroized() -> None:
    text = load("hsm_show_53_zeroized_numeric_attempts").replace(
        "Space In Use (Bytes):                0", "Space In Use (Bytes):                2832"
    )
    assert not parse_hsm_show(text).zeroized


def test_no_label_with_listed_partitions_is_not_zeroized() -> None:
    text = load("hsm_show_53_zeroized_numeric_attempts").replace(
        "There are no partitions.", "Partition: 489204008,     Name: payments"
    )
    info = parse_hsm_show(text)
    assert info.partitions == (("489204008", "payments"),)
    assert not info.zeroized


def test_labelled_53_with_nothing_stored_is_not_zeroized() -> None:
    text = load("hsm_show_53_zeroized_numeric_attempts").replace("no label", "hsm-b")
    info = parse_hsm_show(text)
    assert info.label == "hsm-b"
    assert not info.zeroized


def test_initialized_62_lists_partitions_and_login_state() -> None:
    info = parse_hsm_show(load("hsm_show_62_initialized_logged_in"))
    assert info == HsmInfo(
        software_version="6.2.2-4",
        label="hsm-a",
        serial="532018",
        firmware="6.10.9",
        model="K6 Base",
        admin_logged_in=True,
        attempts_left=3,
        zeroized=False,
        partitions=(("532018008", "payments"), ("532018011", "orders")),
        space_in_use=209000,
        fips=True,
    )


def test_zeroized_7x_has_blank_label_and_marker() -> None:
    info = parse_hsm_show(load("hsm_show_7x_zeroized"))
    assert info.label is None
    assert info.serial == "1238696044937"
    assert info.model == "Luna K7"
    assert info.firmware == "7.0.3"
    assert info.software_version == "7.2.0-220"
    assert info.attempts_left is None
    assert info.zeroized
    assert info.partitions == ()


def test_attempts_left_below_three_is_reported_exactly() -> None:
    text = load("hsm_show_62_initialized_logged_in").replace("3 before HSM", "1 before HSM")
    assert parse_hsm_show(text).attempts_left == 1


def test_hsm_show_without_fips_or_storage_leaves_them_unknown() -> None:
    text = "\n".join(
        line
        for line in load("hsm_show_62_initialized_logged_in").splitlines()
        if "FIPS" not in line and "Space In Use" not in line
    )
    info = parse_hsm_show(text)
    assert info.fips is None
    assert info.space_in_use is None
    assert not info.zeroized


def test_zeroized_words_in_a_label_or_partition_name_do_not_make_the_hsm_zeroized() -> None:
    info = parse_hsm_show(load("hsm_show_62_free_text_says_zeroized"))
    assert info.label == "HSM is zeroized !!!!"
    assert info.partitions == (("532018008", "payments"), ("532018011", "HSM IS ZEROIZED"))
    assert info.attempts_left == 3
    assert not info.zeroized


def test_zeroized_words_in_the_label_of_an_empty_hsm_do_not_make_it_zeroized() -> None:
    text = load("hsm_show_53_zeroized_numeric_attempts").replace("no label", "HSM IS ZEROIZED !!!!")
    info = parse_hsm_show(text)
    assert info.label == "HSM IS ZEROIZED !!!!"
    assert not info.zeroized


def test_a_zeroized_line_beside_numeric_attempts_and_partitions_is_refused() -> None:
    with pytest.raises(ParseError, match="not deciding between zeroized and initialized") as caught:
        parse_hsm_show(load("hsm_show_62_zeroized_line_with_partitions"))
    assert caught.value.command == "hsm show"


def test_a_zeroized_line_on_an_hsm_the_fields_call_zeroized_is_zeroized() -> None:
    text = load("hsm_show_53_zeroized_numeric_attempts").replace(
        "Manually Zeroized:                  No", "Manually Zeroized:                  No\n   HSM IS ZEROIZED"
    )
    assert parse_hsm_show(text).zeroized


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        (("no label", "hsm-b"), "a label"),
        (("There are no partitions.", "Partition: 157541008,     Name: payments"), "listed partitions"),
        (
            ("Space In Use (Bytes):                0", "Space In Use (Bytes):                2832"),
            "space in use",
        ),
    ],
)
def test_the_zeroized_marker_beside_a_sign_of_an_initialized_hsm_is_refused(
    change: tuple[str, str], shown: str
) -> None:
    text = load("hsm_show_51_zeroized")
    assert change[0] in text
    with pytest.raises(ParseError, match=f"says HSM IS ZEROIZED but the output shows {shown}"):
        parse_hsm_show(text.replace(*change))


def test_partitions_listed_beside_there_are_no_partitions_is_refused() -> None:
    text = load("hsm_show_53_zeroized_numeric_attempts").replace(
        "There are no partitions.", "There are no partitions.\n   Partition: 489204008,     Name: payments"
    )
    with pytest.raises(ParseError, match="There are no partitions"):
        parse_hsm_show(text)


def test_partition_count_that_disagrees_with_the_listed_partitions_is_refused() -> None:
    text = load("hsm_show_7x_zeroized").replace(
        "Number of partitions created:        0", "Number of partitions created:        2"
    )
    with pytest.raises(ParseError, match="'Number of partitions created' is 2 but 0 are listed"):
        parse_hsm_show(text)


def test_two_different_attempts_left_lines_are_refused() -> None:
    text = load("hsm_show_62_initialized_logged_in").replace(
        "   RPV Initialized:",
        "   HSM Admin login attempts left:      HSM IS ZEROIZED !!!!\n   RPV Initialized:",
    )
    with pytest.raises(ParseError, match="two 'HSM Admin login attempts left' lines"):
        parse_hsm_show(text)


def test_a_partition_listed_twice_in_hsm_show_is_refused() -> None:
    text = load("hsm_show_62_initialized_logged_in").replace("Name: orders", "Name: payments")
    with pytest.raises(ParseError, match="listed twice"):
        parse_hsm_show(text)


@settings(max_examples=40)
@given(st.data())
def test_hsm_show_ignores_whitespace_and_framing(data: st.DataObject) -> None:
    for name in (
        "hsm_show_51_zeroized",
        "hsm_show_53_zeroized_numeric_attempts",
        "hsm_show_62_initialized_logged_in",
        "hsm_show_7x_zeroized",
    ):
        assert parse_hsm_show(data.draw(variants(name))) == parse_hsm_show(load(name))


@pytest.mark.parametrize(
    ("drop", "missing"),
    [
        ("Serial #:", "Serial #"),
        ("HSM Admin login status:", "HSM Admin login status"),
        ("HSM Admin login attempts left:", "HSM Admin login attempts left"),
    ],
)
def test_hsm_show_missing_required_line_names_it(drop: str, missing: str) -> None:
    text = "\n".join(
        line for line in load("hsm_show_62_initialized_logged_in").splitlines() if drop not in line
    )
    with pytest.raises(ParseError) as caught:
        parse_hsm_show(text)
    assert caught.value.command == "hsm show"
    assert missing in str(caught.value)
    assert "Appliance Details" not in str(caught.value)


def test_hsm_show_unreadable_attempts_is_a_parse_error() -> None:
    text = load("hsm_show_62_initialized_logged_in").replace("3 before HSM zeroization!", "unknown")
    with pytest.raises(ParseError, match="attempts left"):
        parse_hsm_show(text)


def test_hsm_show_unknown_login_status_is_a_parse_error() -> None:
    text = load("hsm_show_62_initialized_logged_in").replace(
        "HSM Admin login status:             Logged In", "HSM Admin login status: Maybe"
    )
    with pytest.raises(ParseError, match="login status"):
        parse_hsm_show(text)


def test_hsm_show_unreachable_card_is_reported_as_such() -> None:
    with pytest.raises(HsmUnreachable) as caught:
        parse_hsm_show(load("hsm_show_unreachable"))
    assert caught.value.code == dialect.SHELL_FAILURE_CODE
    assert "hsm show" in str(caught.value)


def test_hsm_show_of_empty_output_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="Serial #"):
        parse_hsm_show("[hsm-a] lunash:>hsm show\r\n\r\n[hsm-a] lunash:>")


# --- partition list --------------------------------------------------------------------------


def test_partition_list_5x_reads_serial_name_objects() -> None:
    assert parse_partition_list(load("partition_list_5x")) == (
        PartitionInfo(serial="157541008", name="hapg-0a1b2c3d_157541", objects=3),
        PartitionInfo(serial="157541011", name="hapg-99aabbcc_157541", objects=0),
    )


def test_partition_list_6x_reads_serial_name_objects() -> None:
    assert parse_partition_list(load("partition_list_6x")) == (
        PartitionInfo(serial="532018008", name="payments", objects=12),
        PartitionInfo(serial="532018011", name="orders", objects=0),
    )


def test_partition_list_7x_reads_the_version_column() -> None:
    assert parse_partition_list(load("partition_list_7x")) == (
        PartitionInfo(serial="1238696044945", name="payments", objects=12, version=1),
        PartitionInfo(serial="1238696044946", name="orders", objects=0, version=1),
    )


def test_partition_list_empty_is_an_empty_tuple() -> None:
    assert parse_partition_list(load("partition_list_empty")) == ()
    assert parse_partition_list("There are no partitions.\r\nCommand Result : 0 (Success)\r\n") == ()


@settings(max_examples=40)
@given(st.data())
def test_partition_list_ignores_whitespace_and_framing(data: st.DataObject) -> None:
    for name in ("partition_list_5x", "partition_list_6x", "partition_list_7x", "partition_list_empty"):
        assert parse_partition_list(data.draw(variants(name))) == parse_partition_list(load(name))


def test_partition_list_without_table_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="no table rule"):
        parse_partition_list("[hsm-a] lunash:>partition list\nCommand Result : 0 (Success)\n")


def test_partition_list_row_with_wrong_column_count_is_a_parse_error() -> None:
    text = load("partition_list_6x").replace("532018011   orders        0", "532018011   orders")
    with pytest.raises(ParseError, match="row 2 has 5 columns"):
        parse_partition_list(text)


def test_partition_list_non_numeric_objects_is_a_parse_error() -> None:
    text = load("partition_list_6x").replace("payments      12", "payments      many")
    with pytest.raises(ParseError, match="'objects' is not a number"):
        parse_partition_list(text)


def test_partition_rows_beside_there_are_no_partitions_are_refused() -> None:
    text = load("partition_list_6x").replace("Command Result", "There are no partitions.\n\nCommand Result")
    with pytest.raises(ParseError, match="There are no partitions"):
        parse_partition_list(text)


def test_a_partition_listed_twice_is_refused() -> None:
    text = load("partition_list_6x").replace("orders ", "payments ")
    with pytest.raises(ParseError, match="listed twice"):
        parse_partition_list(text)


def test_partition_list_failure_is_reported_not_parsed() -> None:
    text = (
        "Error:  'partition list' failed. (C0000001 : RC_GENERAL_ERROR)\n"
        "Command Result : 65535 (Luna Shell execution)"
    )
    with pytest.raises(CommandReportedFailure) as caught:
        parse_partition_list(text)
    assert caught.value.code == dialect.SHELL_FAILURE_CODE
    assert caught.value.errors == ("Error: 'partition list' failed. (C0000001 : RC_GENERAL_ERROR)",)


# --- Luna Network HSM 7: published output -----------------------------------------------------


def test_published_72_hsm_show_is_a_zeroized_luna_7() -> None:
    info = parse_hsm_show(load("hsm_show_72_zeroized"))
    assert (info.zeroized, info.label, info.attempts_left, info.admin_logged_in) == (True, None, None, False)
    assert (info.serial, info.model, info.firmware) == ("572413", "Luna K7", "7.0.3")
    assert info.software_version == "7.2.0-220"
    assert info.software == Software((7, 2, 0, 220))
    assert (info.partitions, info.partitions_allowed, info.space_in_use, info.fips) == ((), 10, 0, False)


def test_5x_hsm_show_has_no_partition_allowance_and_family_5() -> None:
    info = parse_hsm_show(load("hsm_show_51_zeroized"))
    assert (info.partitions_allowed, info.software) == (None, Software((5, 1, 0, 25)))


def test_more_partitions_than_allowed_is_refused() -> None:
    text = load("hsm_show_72_zeroized").replace("allowed:        10", "allowed:        0")
    text = text.replace("There are no partitions.", "Partition: 1582775433934,     Name: p1")
    text = text.replace("created:        0", "created:        1").replace("HSM IS ZEROIZED !!!!", "3")
    with pytest.raises(ParseError, match="only 0 are allowed"):
        parse_hsm_show(text)


@settings(max_examples=40)
@given(st.data())
def test_published_7x_output_parses_the_same_whatever_the_framing(data: st.DataObject) -> None:
    assert parse_hsm_show(data.draw(variants("hsm_show_72_zeroized"))) == parse_hsm_show(
        load("hsm_show_72_zeroized")
    )
    assert parse_partition_list(data.draw(variants("partition_list_78_exec"))) == parse_partition_list(
        load("partition_list_78_exec")
    )


def test_published_78_partition_list_reads_13_digit_serial_and_version_0() -> None:
    (partition,) = parse_partition_list(load("partition_list_78_exec"))
    assert partition == PartitionInfo(serial="1582775433934", name="sp_sehsm3", objects=0, version=0)
    assert partition.initialized is False


def test_partition_version_1_is_initialized_and_5x_rows_do_not_say() -> None:
    assert all(p.initialized for p in parse_partition_list(load("partition_list_7x")))
    assert all(p.initialized is None for p in parse_partition_list(load("partition_list_5x")))


def test_a_version_that_is_not_a_number_is_refused() -> None:
    text = load("partition_list_78_exec").replace("sp_sehsm3                         0", "sp_sehsm3  zero")
    with pytest.raises(ParseError, match="'version' is not a number"):
        parse_partition_list(text)


def test_rows_without_the_version_the_header_shows_are_refused() -> None:
    text = load("partition_list_78_exec").replace("sp_sehsm3                         0 ", "sp_sehsm3 ")
    with pytest.raises(ParseError, match="no value for the header's version column"):
        parse_partition_list(text)


def test_published_78_client_show_has_quoted_partitions_and_no_htl_lines() -> None:
    heredoc = load("stdin_78_register_assign_show")
    show = heredoc[heredoc.index("ClientID:") :]
    assert parse_client_show(show, "vciphertrust-i.daenerys.home") == ClientInfo(
        name="vciphertrust-i.daenerys.home",
        hostname="vciphertrust-i.daenerys.home",
        partitions=("sp_sehsm4",),
    )
    whole = parse_result(heredoc)
    assert whole.ok and "'client assignPartition' successful." in whole.body


def test_published_7x_partition_create_question_is_the_7x_confirmation() -> None:
    text = load("partition_create_7x_proceed")
    prompt = find_interactive_prompt(text)
    assert prompt is not None and prompt.kind is dialect.PromptKind.CONFIRMATION
    assert "create the partition" in prompt.description
    result = parse_result(text)
    assert result.ok and "'partition create' successful." in result.body


def test_published_72_first_login_is_recognised_as_a_forced_password_change() -> None:
    text = load("first_login_72")
    notice, rule, at_prompt = dialect.PASSWORD_CHANGE_PATTERNS
    assert notice.search(text) and rule.search(text)
    waiting = text[: text.index("New password:") + len("New password:")] + " "
    assert at_prompt.search(waiting)


@pytest.mark.parametrize(
    ("version", "numbers", "family", "channel"),
    [
        ("5.1.0-25", (5, 1, 0, 25), "5.x/6.x", Channel.REST),
        ("5.4.9-2", (5, 4, 9, 2), "5.x/6.x", Channel.REST),
        ("6.2.2-4", (6, 2, 2, 4), "5.x/6.x", Channel.REST),
        ("7.2.0-220", (7, 2, 0, 220), "7.x", Channel.REST),
        ("7.8.0", (7, 8, 0), "7.x", Channel.REST),
        ("7.8.1", (7, 8, 1), "7.x", Channel.LUNASH),
        ("7.8.5-20", (7, 8, 5, 20), "7.x", Channel.LUNASH),
        ("7.9", (7, 9), "7.x", Channel.LUNASH),
    ],
)
def test_software_versions_give_family_and_where_partitions_are_initialized(
    version: str, numbers: tuple[int, ...], family: str, channel: Channel
) -> None:
    software = Software.parse(version)
    assert software is not None
    assert (software.version, software.family, software.partition_init_channel) == (numbers, family, channel)


@pytest.mark.parametrize("version", ["", "seven", "7", "7.x", "v7.8.5-20", "7.8.5-20 beta"])
def test_unreadable_software_versions_are_parse_errors(version: str) -> None:
    with pytest.raises(ParseError, match="Software Version"):
        Software.parse(version)


@pytest.mark.parametrize("version", ["4.9.0", "10.1.0-5"])
def test_software_of_an_unknown_generation_is_refused(version: str) -> None:
    with pytest.raises(ParseError, match="not supported"):
        Software.parse(version)


def test_already_initialized_is_a_known_outcome_of_partition_init_only() -> None:
    # The wording of this refusal is not published; the simulator's text carries the assumed phrase.
    result = parse_result(
        "Error:  'partition init' failed. Partition p1 is already initialized.\n"
        "Command Result : 65535 (Luna Shell execution)\n"
    )
    assert known_outcome("partition init", result) is dialect.Outcome.ALREADY_INITIALIZED
    assert known_outcome("partition init co", result) is None
    assert known_outcome("partition create", result) is None


def test_partition_so_failures_are_named() -> None:
    result = parse_result(
        "Error:  'partition init co' failed. (A0 : CKR_PIN_INCORRECT)\n"
        "Command Result : 65535 (Luna Shell execution)\n"
    )
    assert set(result.error_codes) <= dialect.PARTITION_SO_FAILURE_CODES
    assert known_outcome("partition init co", result) is None


# --- client list / show / fingerprint --------------------------------------------------------


def test_client_list_returns_names_in_order() -> None:
    assert parse_client_list(load("client_list")) == ("web-3f2a1c-r1", "web-3f2a1c-r2", "batch-3f2a1c-r1")


def test_client_list_with_no_clients_is_empty() -> None:
    assert parse_client_list(load("client_list_empty")) == ()


def test_client_list_keeps_names_with_spaces() -> None:
    assert parse_client_list("registered client 1: legacy box\nCommand Result : 0 (Success)") == (
        "legacy box",
    )


def test_client_list_without_rows_or_empty_message_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="No clients are registered"):
        parse_client_list("[hsm-a] lunash:>client list\n\nCommand Result : 0 (Success)\n[hsm-a] lunash:>")


def test_client_names_beside_no_clients_are_registered_are_refused() -> None:
    text = load("client_list").replace("Command Result", "No clients are registered.\nCommand Result")
    with pytest.raises(ParseError, match="No clients are registered"):
        parse_client_list(text)


def test_a_client_listed_twice_is_refused() -> None:
    text = load("client_list").replace("batch-3f2a1c-r1", "web-3f2a1c-r1")
    with pytest.raises(ParseError, match="listed twice"):
        parse_client_list(text)


def test_client_show_53_lists_assigned_partitions() -> None:
    assert parse_client_show(load("client_show_53")) == ClientInfo(
        name="web-3f2a1c-r2", hostname="web-3f2a1c-r2", partitions=("payments", "orders")
    )


def test_client_show_none_means_no_partitions() -> None:
    assert parse_client_show(load("client_show_51_no_partitions")) == ClientInfo(
        name="batch-3f2a1c-r1", hostname="10.0.3.25", partitions=()
    )


def test_client_show_unknown_client_raises_client_not_found() -> None:
    with pytest.raises(ClientNotFound) as caught:
        parse_client_show(load("client_show_unknown"))
    assert caught.value.command == "client show"
    assert "RC_OBJECT_NOT_IN_LIST" in str(caught.value)


def test_client_show_without_partitions_line_is_a_parse_error() -> None:
    text = "\n".join(line for line in load("client_show_53").splitlines() if "Partitions" not in line)
    with pytest.raises(ParseError, match="no 'Partitions' line"):
        parse_client_show(text)


def test_client_show_with_empty_hostname_is_a_parse_error() -> None:
    text = load("client_show_53").replace("Hostname:        web-3f2a1c-r2", "Hostname:")
    with pytest.raises(ParseError, match="'Hostname' is empty"):
        parse_client_show(text)


def test_client_show_of_another_client_is_refused() -> None:
    assert parse_client_show(load("client_show_53"), "web-3f2a1c-r2").name == "web-3f2a1c-r2"
    with pytest.raises(ParseError, match="not the client asked for"):
        parse_client_show(load("client_show_53"), "web-3f2a1c-r1")


def test_client_show_with_two_different_client_ids_is_refused() -> None:
    text = load("client_show_53").replace("Hostname:", "ClientID:        web-3f2a1c-r1\nHostname:")
    with pytest.raises(ParseError, match="two 'ClientID' lines"):
        parse_client_show(text)


def test_client_show_reads_unquoted_partition_names() -> None:
    text = load("client_show_53").replace('"payments", "orders"', "payments, orders")
    assert parse_client_show(text).partitions == ("payments", "orders")


@pytest.mark.parametrize(
    "value", ['"payments", orders', '"payments" "orders"', '"payments", ""', '"payments", "payments"']
)
def test_client_show_partitions_that_cannot_be_read_exactly_are_refused(value: str) -> None:
    text = load("client_show_53").replace('"payments", "orders"', value)
    with pytest.raises(ParseError, match="'Partitions'"):
        parse_client_show(text)


def test_client_fingerprint_is_upper_case_colon_hex() -> None:
    assert (
        parse_client_fingerprint(load("client_fingerprint"))
        == "7A:0E:41:9C:D2:33:5F:08:A1:6B:C4:90:E7:2D:18:FF"
    )


def test_client_fingerprint_of_unknown_client_raises_client_not_found() -> None:
    with pytest.raises(ClientNotFound):
        parse_client_fingerprint(load("client_fingerprint_unknown"))


def test_two_different_client_fingerprints_are_refused() -> None:
    text = load("client_fingerprint").replace(
        "Command Result",
        "Certificate fingerprint: 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\nCommand Result",
    )
    with pytest.raises(ParseError, match="two different 'Certificate fingerprint' lines"):
        parse_client_fingerprint(text)


def test_client_fingerprint_missing_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="Certificate fingerprint"):
        parse_client_fingerprint("Command Result : 0 (Success)")


@settings(max_examples=40)
@given(st.data())
def test_client_parsers_ignore_whitespace_and_framing(data: st.DataObject) -> None:
    assert parse_client_list(data.draw(variants("client_list"))) == parse_client_list(load("client_list"))
    assert parse_client_list(data.draw(variants("client_list_empty"))) == ()
    for name in ("client_show_53", "client_show_51_no_partitions"):
        assert parse_client_show(data.draw(variants(name))) == parse_client_show(load(name))
    assert parse_client_fingerprint(data.draw(variants("client_fingerprint"))) == parse_client_fingerprint(
        load("client_fingerprint")
    )


# --- errors and robustness -------------------------------------------------------------------

_PARSERS: list[Callable[[str], Any]] = [
    parse_hsm_show,
    parse_partition_list,
    parse_client_list,
    parse_client_show,
    parse_client_fingerprint,
]


@pytest.mark.parametrize("parser", _PARSERS)
@given(text=st.text())
def test_parsers_raise_only_parse_errors_on_arbitrary_text(parser: Callable[[str], Any], text: str) -> None:
    with contextlib.suppress(ParseError):
        parser(text)


@pytest.mark.parametrize("parser", _PARSERS)
def test_parse_error_message_names_the_command_but_not_the_output(parser: Callable[[str], Any]) -> None:
    garbage = "some unrelated banner text " * 40
    with pytest.raises(ParseError) as caught:
        parser(garbage)
    message = str(caught.value)
    assert caught.value.command in message
    assert "unrelated banner" not in message
    assert len(message) < 300
    assert isinstance(caught.value, LunaHAError)


def test_failure_report_message_is_clipped() -> None:
    long_error = "Error:  " + "x" * 1000 + "\nCommand Result : 65535 (Luna Shell execution)"
    with pytest.raises(CommandReportedFailure) as caught:
        parse_client_list(long_error)
    assert len(str(caught.value)) < 300


def test_result_types_are_frozen() -> None:
    info = parse_client_show(load("client_show_53"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "other"  # type: ignore[misc]
    result = parse_result(load("client_assign_ok"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.code = 1  # type: ignore[misc]
