"""Command builders: exact lines, traits from the dialect table, validation and secret hygiene."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from luna_ha.errors import CommandBuildError
from luna_ha.lunash import dialect
from luna_ha.lunash.commands import (
    Command,
    build_client_assign,
    build_client_delete,
    build_client_fingerprint,
    build_client_list,
    build_client_register,
    build_client_revoke,
    build_client_show,
    build_file_delete,
    build_hsm_init,
    build_hsm_login,
    build_hsm_logout,
    build_hsm_show,
    build_ntls_bind,
    build_partition_create,
    build_partition_create_7,
    build_partition_delete,
    build_partition_init,
    build_partition_init_co,
    build_partition_list,
    build_regen_cert,
    build_service_restart,
)
from luna_ha.lunash.errors import InvalidArgument

SO_PW = "S0-pass!word#1"
DOMAIN = "clone@Domain%9"
PART_PW = "Part?pw$42"
PSO_PW = "Pso&pw!7"
CO_PW = "Co^temp*7"

# --- exact lines -----------------------------------------------------------------------------

GOLDEN: list[tuple[Command, str, str]] = [
    (build_hsm_show(), "hsm show", "hsm show"),
    (
        build_hsm_init("hsm-a", SO_PW, DOMAIN),
        f"hsm init -label hsm-a -password {SO_PW} -domain {DOMAIN} -force",
        "hsm init -label hsm-a -password ******** -domain ******** -force",
    ),
    (build_hsm_login(SO_PW), f"hsm login -password {SO_PW}", "hsm login -password ********"),
    (build_hsm_logout(), "hsm logout", "hsm logout"),
    (build_regen_cert(), "sysconf regenCert -force", "sysconf regenCert -force"),
    (build_ntls_bind(), "ntls bind eth0 -force", "ntls bind eth0 -force"),
    (build_ntls_bind("bond0"), "ntls bind bond0 -force", "ntls bind bond0 -force"),
    (
        build_partition_create("payments", PART_PW, DOMAIN),
        f"partition create -partition payments -password {PART_PW} -domain {DOMAIN} -force",
        "partition create -partition payments -password ******** -domain ******** -force",
    ),
    (
        build_partition_create_7("payments"),
        "partition create -partition payments -force",
        "partition create -partition payments -force",
    ),
    (
        build_partition_init("payments", "payments", PSO_PW, DOMAIN),
        f"partition init -partition payments -label payments -password {PSO_PW} -domain {DOMAIN} -force",
        "partition init -partition payments -label payments -password ******** -domain ******** -force",
    ),
    (
        build_partition_init_co("payments", PSO_PW, CO_PW),
        f"partition init co -partition payments -psopin {PSO_PW} -copin {CO_PW} -force",
        "partition init co -partition payments -psopin ******** -copin ******** -force",
    ),
    (build_service_restart(), "service restart ntls", "service restart ntls"),
    (build_partition_list(), "partition list", "partition list"),
    (
        build_partition_delete("payments"),
        "partition delete -partition payments -force",
        "partition delete -partition payments -force",
    ),
    (
        build_client_register("web-3f2a1c-r2", "web-3f2a1c-r2"),
        "client register -client web-3f2a1c-r2 -hostname web-3f2a1c-r2",
        "client register -client web-3f2a1c-r2 -hostname web-3f2a1c-r2",
    ),
    (
        build_client_register("batch", "10.0.3.25"),
        "client register -client batch -hostname 10.0.3.25",
        "client register -client batch -hostname 10.0.3.25",
    ),
    (
        build_client_assign("web-3f2a1c-r2", "payments"),
        "client assignPartition -client web-3f2a1c-r2 -partition payments",
        "client assignPartition -client web-3f2a1c-r2 -partition payments",
    ),
    (
        build_client_revoke("web-3f2a1c-r2", "payments"),
        "client revokePartition -client web-3f2a1c-r2 -partition payments",
        "client revokePartition -client web-3f2a1c-r2 -partition payments",
    ),
    (build_client_list(), "client list", "client list"),
    (
        build_client_show("web-3f2a1c-r2"),
        "client show -client web-3f2a1c-r2",
        "client show -client web-3f2a1c-r2",
    ),
    (
        build_client_delete("web-3f2a1c-r2"),
        "client delete -client web-3f2a1c-r2 -force",
        "client delete -client web-3f2a1c-r2 -force",
    ),
    (
        build_client_fingerprint("web-3f2a1c-r2"),
        "client fingerprint -client web-3f2a1c-r2",
        "client fingerprint -client web-3f2a1c-r2",
    ),
    (
        build_file_delete("web-3f2a1c-r2.pem"),
        "my file delete -file web-3f2a1c-r2.pem -force",
        "my file delete -file web-3f2a1c-r2.pem -force",
    ),
]


@pytest.mark.parametrize(("command", "text", "display"), GOLDEN, ids=[g[1].split(" -")[0] for g in GOLDEN])
def test_builders_produce_exact_lines(command: Command, text: str, display: str) -> None:
    assert command.text == text
    assert command.display == display
    assert str(command) == display


@pytest.mark.parametrize("command", [g[0] for g in GOLDEN], ids=[g[1].split(" -")[0] for g in GOLDEN])
def test_traits_come_from_the_dialect_table(command: Command) -> None:
    spec = dialect.COMMANDS[command.name]
    assert command.text.startswith(command.name)
    assert (command.mutating, command.sensitive, command.timeout) == (
        spec.mutating,
        spec.sensitive and bool(command.secrets),
        spec.timeout,
    )
    assert command.text.endswith(" -force") == spec.force


def test_every_dialect_command_has_a_builder() -> None:
    assert {g[0].name for g in GOLDEN} == set(dialect.COMMANDS)


@pytest.mark.parametrize("command", [g[0] for g in GOLDEN], ids=[g[1].split(" -")[0] for g in GOLDEN])
def test_options_are_spelled_in_full(command: Command) -> None:
    options = {token for token in command.text.split(" ") if token.startswith("-")}
    assert options <= {
        "-label",
        "-password",
        "-domain",
        "-partition",
        "-client",
        "-hostname",
        "-file",
        "-psopin",
        "-copin",
        "-force",
    }


def test_destructive_commands_always_force() -> None:
    destructive = {
        "hsm init",
        "partition create",
        "partition init",
        "partition init co",
        "partition delete",
        "sysconf regenCert",
        "ntls bind",
        "client delete",
        "my file delete",
    }
    for command, _, _ in GOLDEN:
        assert (command.text.split(" ")[-1] == "-force") == (command.name in destructive)


def test_timeouts_per_command() -> None:
    timeouts = {g[0].name: g[0].timeout for g in GOLDEN}
    assert timeouts["hsm show"] == 30
    assert timeouts["partition list"] == 30
    assert timeouts["client list"] == 30
    assert timeouts["hsm login"] == 30
    assert timeouts["partition create"] == 120
    assert timeouts["hsm init"] == 300
    assert timeouts["ntls bind"] == 60
    assert timeouts["sysconf regenCert"] == 120
    assert timeouts["partition init"] == 120
    assert timeouts["service restart"] == 120


def test_reads_are_not_mutating_and_writes_are() -> None:
    mutating = {g[0].name for g in GOLDEN if g[0].mutating}
    assert mutating == {
        "hsm init",
        "sysconf regenCert",
        "ntls bind",
        "partition create",
        "partition init",
        "partition init co",
        "partition delete",
        "service restart",
        "client register",
        "client assignPartition",
        "client revokePartition",
        "client delete",
        "my file delete",
    }


def test_only_commands_with_secrets_are_sensitive() -> None:
    for command, _, _ in GOLDEN:
        assert command.sensitive == bool(command.secrets)
    assert build_hsm_init("hsm-a", SO_PW, DOMAIN).secrets == (SO_PW, DOMAIN)


def test_identical_password_and_domain_are_listed_once() -> None:
    assert build_partition_create("payments", "same!1", "same!1").secrets == ("same!1",)


def test_the_7x_partition_create_carries_no_secret_and_is_not_sensitive() -> None:
    command = build_partition_create_7("payments")
    assert (command.secrets, command.sensitive, command.mutating) == ((), False, True)


def test_partition_init_co_carries_both_passwords_as_secrets() -> None:
    command = build_partition_init_co("payments", PSO_PW, CO_PW)
    assert command.secrets == (PSO_PW, CO_PW) and command.sensitive
    echo = f"[hsm-a] lunash:>{command.text}\r\n"
    assert command.redact(echo) == f"[hsm-a] lunash:>{command.display}\r\n"


@pytest.mark.parametrize("service", ["sshd", "ntls -force", "", "NTLS"])
def test_service_restart_accepts_only_ntls(service: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        build_service_restart(service)
    assert caught.value.argument == "service"


# --- secret hygiene --------------------------------------------------------------------------


def test_repr_and_str_show_display_only() -> None:
    command = build_hsm_init("hsm-a", SO_PW, DOMAIN)
    for rendering in (repr(command), str(command), f"{command}", f"{command!r}", repr([command])):
        assert SO_PW not in rendering
        assert DOMAIN not in rendering
        assert dialect.MASK in rendering


def test_redact_masks_the_echo_of_a_sensitive_command() -> None:
    command = build_partition_create("payments", PART_PW, DOMAIN)
    echo = f"[hsm-a] lunash:>{command.text}\r\n"
    assert command.redact(echo) == f"[hsm-a] lunash:>{command.display}\r\n"


def test_redact_masks_longer_secret_first() -> None:
    command = build_hsm_init("hsm-a", "abc!", "abc!def")
    assert command.redact("abc!def abc!") == "******** ********"


def test_command_with_secrets_must_be_sensitive() -> None:
    with pytest.raises(CommandBuildError):
        Command(
            text="hsm login -password x",
            display="hsm login -password ********",
            name="hsm login",
            mutating=False,
            sensitive=False,
            timeout=30.0,
            secrets=("x",),
        )


def test_command_text_must_be_one_line() -> None:
    with pytest.raises(CommandBuildError):
        Command(
            text="hsm show\nhsm init",
            display="x",
            name="hsm show",
            mutating=False,
            sensitive=False,
            timeout=1,
        )


def test_command_is_frozen() -> None:
    command = build_hsm_show()
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.text = "hsm init -force"  # type: ignore[misc]


# --- strategies ------------------------------------------------------------------------------

_SECRET_ALPHABET = "".join(sorted(dialect.SECRET_CHARS))
#: Characters that never appear in a display, a repr or an error message of this module (not in
#: command words, options, values, the mask, or the punctuation of reprs and messages), so a secret
#: containing one cannot be "found" there by coincidence.
_MARKERS = "!#$%&+/;<>?@[]^`{|}~"

valid_values = st.from_regex(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,40}", fullmatch=True)
valid_secrets = st.text(alphabet=_SECRET_ALPHABET, min_size=1, max_size=64).filter(
    lambda s: not s.startswith("-")
)
distinctive_secrets = (
    st.tuples(
        st.text(alphabet=_SECRET_ALPHABET, max_size=20),
        st.sampled_from(_MARKERS),
        st.text(_SECRET_ALPHABET, max_size=20),
    )
    .map("".join)
    .filter(lambda s: not s.startswith("-"))
)


def _secret_is_valid(value: str) -> bool:
    return (
        0 < len(value) <= dialect.MAX_SECRET_LENGTH
        and set(value) <= dialect.SECRET_CHARS
        and not value.startswith("-")
    )


def _value_is_valid(value: str) -> bool:
    return (
        len(value) <= dialect.MAX_VALUE_LENGTH
        and dialect.VALUE_RE.fullmatch(value) is not None
        and not value.startswith("-")
    )


invalid_secrets = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "",
            "pw -force",
            "pw\n",
            "pw\r\nhsm init",
            'pw"',
            "pw'",
            "pw\\",
            "pässword",
            "pw\tx",
            "-force",
            "-p",
            "x" * 256,
        ]
    ),
).filter(lambda s: not _secret_is_valid(s))

INJECTIONS = [
    "",
    "payments; hsm init",
    "payments\nhsm init -force",
    "payments\r",
    "pay ments",
    "payments -force",
    '"payments"',
    "'payments'",
    "pay`id`",
    "$(reboot)",
    "-force",
    "-p",
    "paymënts",
    "\uff50\uff41\uff59\uff4d\uff45\uff4e\uff54\uff53",  # fullwidth "payments"
    "١٢٣",
    "payments\u2028",
    "payments\x00",
    "a" * 256,
]
invalid_values = st.one_of(st.text(max_size=80), st.sampled_from(INJECTIONS)).filter(
    lambda s: not _value_is_valid(s)
)

# (builder, argument names, which of them are secrets)
BUILDERS: list[tuple[Callable[..., Command], tuple[str, ...], frozenset[str]]] = [
    (build_hsm_init, ("label", "password", "domain"), frozenset({"password", "domain"})),
    (build_hsm_login, ("password",), frozenset({"password"})),
    (build_partition_create, ("name", "password", "domain"), frozenset({"password", "domain"})),
    (build_partition_create_7, ("name",), frozenset()),
    (
        build_partition_init,
        ("name", "label", "so_password", "domain"),
        frozenset({"so_password", "domain"}),
    ),
    (
        build_partition_init_co,
        ("name", "so_password", "co_password"),
        frozenset({"so_password", "co_password"}),
    ),
    (build_partition_delete, ("name",), frozenset()),
    (build_client_register, ("client", "hostname"), frozenset()),
    (build_client_assign, ("client", "partition"), frozenset()),
    (build_client_revoke, ("client", "partition"), frozenset()),
    (build_client_show, ("client",), frozenset()),
    (build_client_delete, ("client",), frozenset()),
    (build_client_fingerprint, ("client",), frozenset()),
]
SECRET_BUILDERS = [b for b in BUILDERS if b[2]]
_IDS = [b[0].__name__ for b in BUILDERS]
_SECRET_IDS = [b[0].__name__ for b in SECRET_BUILDERS]


def _defaults(arguments: tuple[str, ...], secrets: frozenset[str]) -> dict[str, str]:
    return {name: ("Good!pw1" if name in secrets else "good-value") for name in arguments}


# --- properties: secrets ---------------------------------------------------------------------


@pytest.mark.parametrize(("builder", "arguments", "secrets"), SECRET_BUILDERS, ids=_SECRET_IDS)
@given(data=st.data())
def test_display_and_repr_do_not_depend_on_secret_values(
    builder: Callable[..., Command], arguments: tuple[str, ...], secrets: frozenset[str], data: st.DataObject
) -> None:
    first = _defaults(arguments, secrets)
    second = dict(first)
    for name in secrets:
        first[name] = data.draw(valid_secrets, label=f"{name} 1")
        second[name] = data.draw(valid_secrets, label=f"{name} 2")
    one, two = builder(**first), builder(**second)
    assert one.display == two.display
    assert repr(one) == repr(two)
    assert str(one) == str(two)
    assert one.display.count(dialect.MASK) == len(secrets)


@pytest.mark.parametrize(("builder", "arguments", "secrets"), SECRET_BUILDERS, ids=_SECRET_IDS)
@given(data=st.data())
def test_secret_never_appears_in_display_or_repr(
    builder: Callable[..., Command], arguments: tuple[str, ...], secrets: frozenset[str], data: st.DataObject
) -> None:
    kwargs = _defaults(arguments, secrets)
    for name in secrets:
        kwargs[name] = data.draw(distinctive_secrets, label=name)
    command = builder(**kwargs)
    for name in secrets:
        secret = kwargs[name]
        assert secret not in command.display
        assert secret not in repr(command)
        assert secret not in str(command)
        assert secret in command.secrets
        assert secret in command.text.split(" ")  # carried as exactly one token
        assert secret not in command.redact(command.text)


def _canonical_secret_messages(argument: str) -> set[str]:
    messages = set()
    for representative in ["", "x" * 256, "a b", "-a"]:
        with pytest.raises(InvalidArgument) as caught:
            build_hsm_login(representative)
        messages.add(str(caught.value).replace("password", argument, 1))
    return messages


@pytest.mark.parametrize(("builder", "arguments", "secrets"), SECRET_BUILDERS, ids=_SECRET_IDS)
@given(data=st.data())
def test_invalid_secret_raises_fixed_message_naming_the_argument(
    builder: Callable[..., Command], arguments: tuple[str, ...], secrets: frozenset[str], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(secrets)), label="argument")
    bad = data.draw(invalid_secrets, label="secret")
    kwargs = _defaults(arguments, secrets)
    kwargs[name] = bad
    with pytest.raises(InvalidArgument) as caught:
        builder(**kwargs)
    assert caught.value.argument == name
    # The message is one of a few fixed texts: nothing in it is derived from the value.
    assert str(caught.value) in _canonical_secret_messages(name)


@pytest.mark.parametrize(("builder", "arguments", "secrets"), SECRET_BUILDERS, ids=_SECRET_IDS)
@given(data=st.data())
def test_invalid_distinctive_secret_is_not_in_the_exception(
    builder: Callable[..., Command], arguments: tuple[str, ...], secrets: frozenset[str], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(secrets)), label="argument")
    secret = data.draw(distinctive_secrets, label="secret") + data.draw(
        st.sampled_from([" ", "\n", '"', "é"])
    )
    kwargs = _defaults(arguments, secrets)
    kwargs[name] = secret
    with pytest.raises(CommandBuildError) as caught:
        builder(**kwargs)
    error = caught.value
    for rendering in (
        str(error),
        repr(error),
        repr(error.args),
        repr(vars(error)),
        pickle.dumps(error).decode("latin-1"),
    ):
        assert secret not in rendering


# --- properties: values ----------------------------------------------------------------------


@pytest.mark.parametrize(("builder", "arguments", "secrets"), BUILDERS, ids=_IDS)
@given(data=st.data())
def test_valid_values_give_a_fixed_number_of_tokens(
    builder: Callable[..., Command], arguments: tuple[str, ...], secrets: frozenset[str], data: st.DataObject
) -> None:
    kwargs = _defaults(arguments, secrets)
    for name in arguments:
        kwargs[name] = data.draw(valid_secrets if name in secrets else valid_values, label=name)
    command = builder(**kwargs)
    baseline = builder(**_defaults(arguments, secrets))
    assert len(command.text.split(" ")) == len(baseline.text.split(" "))
    assert command.text.isascii() and command.text.isprintable()
    assert [t for t in command.text.split(" ") if t.startswith("-")] == [
        t for t in baseline.text.split(" ") if t.startswith("-")
    ]


@pytest.mark.parametrize(("builder", "arguments", "secrets"), BUILDERS, ids=_IDS)
@given(data=st.data())
def test_values_failing_validation_never_produce_a_command(
    builder: Callable[..., Command], arguments: tuple[str, ...], secrets: frozenset[str], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(arguments), label="argument")
    bad = data.draw(invalid_secrets if name in secrets else invalid_values, label="value")
    kwargs = _defaults(arguments, secrets)
    kwargs[name] = bad
    result: Any = None
    with pytest.raises(InvalidArgument) as caught:
        result = builder(**kwargs)
    assert result is None
    assert caught.value.argument == name
    assert str(caught.value).startswith(f"{name}: ")


@given(st.text(max_size=60))
def test_partition_name_is_accepted_exactly_when_it_matches_the_safe_pattern(value: str) -> None:
    try:
        command = build_partition_delete(value)
    except InvalidArgument as error:
        assert not _value_is_valid(value)
        assert error.argument == "name"
    else:
        assert _value_is_valid(value)
        assert command.text == f"partition delete -partition {value} -force"


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_attempts_in_names_are_rejected(value: str) -> None:
    with pytest.raises(CommandBuildError, match=r"^client: "):
        build_client_show(value)


@pytest.mark.parametrize(
    "value", ["pw -force", "pw\nhsm init", "pw;\r\n", 'p"w', "p'w", "p\\w", "pässword", "-force"]
)
def test_injection_attempts_in_passwords_are_rejected(value: str) -> None:
    with pytest.raises(CommandBuildError, match=r"^password: "):
        build_hsm_login(value)


def test_semicolon_in_a_password_stays_inside_its_token() -> None:
    command = build_hsm_login("a;hsm")
    assert command.text == "hsm login -password a;hsm"
    assert command.display == "hsm login -password ********"


@pytest.mark.parametrize("value", [None, 123, b"payments", ["payments"]])
def test_non_string_arguments_are_rejected(value: object) -> None:
    with pytest.raises(InvalidArgument, match="must be a string"):
        build_partition_delete(value)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="must be a string"):
        build_hsm_login(value)  # type: ignore[arg-type]


def test_invalid_name_message_shows_the_offending_value_safely() -> None:
    with pytest.raises(InvalidArgument) as caught:
        build_partition_delete("pay\nments")
    assert "'pay\\nments'" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_invalid_label_is_reported_before_any_secret_is_examined() -> None:
    with pytest.raises(InvalidArgument) as caught:
        build_hsm_init("bad label", "", "")
    assert caught.value.argument == "label"


@pytest.mark.parametrize("device", ["eth9", "lo", "eth0 -force", ""])
def test_ntls_bind_accepts_only_known_devices(device: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        build_ntls_bind(device)
    assert caught.value.argument == "device"


def test_builders_with_no_arguments_cannot_fail() -> None:
    for builder in (
        build_hsm_show,
        build_hsm_logout,
        build_regen_cert,
        build_partition_list,
        build_client_list,
    ):
        command = builder()
        assert not command.secrets and not command.sensitive


@given(valid_secrets, valid_secrets)
def test_two_secrets_with_same_display_are_still_different_commands(first: str, second: str) -> None:
    assume(first != second)
    assert build_hsm_login(first) != build_hsm_login(second)
