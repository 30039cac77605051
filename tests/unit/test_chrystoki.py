"""Chrystoki.conf: byte-for-byte round trip, edits that touch only what they must, the HA view."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from luna_ha.client.chrystoki import (
    ChrystokiConf,
    ChrystokiSyntaxError,
    find_ha_group,
    ha_groups,
    parse_chrystoki,
    registered_servers,
    remove_ha_group,
)
from luna_ha.sim.client_tools import CHRYSTOKI_TEMPLATES

# The shape of a 5.3/6.x client's file after addServer and haAdmin (REFERENCE §10.8), with the
# irregular spacing, a comment and an unterminated last line seen in hand-edited files.
REAL = """\
Chrystoki2 = {
   LibUNIX = /usr/safenet/lunaclient/lib/libCryptoki2.so;
   LibUNIX64 = /usr/safenet/lunaclient/lib/libCryptoki2_64.so;
}

Luna = {
  DefaultTimeOut = 500000;
  PEDTimeout1 = 100000;
  KeypairGenTimeOut = 2700000;
}
CardReader = {
  RemoteCommand = 1;
}

# Servers added by vtl addServer
LunaSA Client = {
   NetClient = 1;

   ServerCAFile = /usr/safenet/lunaclient/cert/server/CAFile.pem;
   ClientCertFile = /usr/safenet/lunaclient/cert/client/ClientNameCert.pem;
   ClientPrivKeyFile=/usr/safenet/lunaclient/cert/client/ClientNameKey.pem;   # set by bootstrap
   ServerName00 = 10.0.1.10;
   ServerPort00 = 1792;
   ServerHtl00 = 0;
   ServerName01 = 10.0.1.11;
   ServerPort01 = 1792;
   ServerHtl01 = 0;
}

Secure Trusted Channel = {
   ClientTokenLib = /usr/safenet/lunaclient/libs/64/libSoftToken.so;
}
VirtualToken = {
   VirtualToken00Label = payments-ha;
   VirtualToken00SN = 1150;
   VirtualToken00Members = 150,151;
   VirtualToken01Label = orders-ha;
   VirtualToken01SN = 1152;
   VirtualToken01Members = 152;
}
HASynchronize = {
   payments-ha = 1;
   orders-ha = 1;
}
HAConfiguration = {
   reconnAtt = -1;
   AutoReconnectInterval = 60;
   HAOnly = 1;
}"""


@pytest.mark.parametrize(
    "text", [REAL, REAL.replace("\n", "\r\n"), REAL + "\n", "", "\n\n# only a comment\n"]
)
def test_round_trip_is_byte_for_byte(text: str) -> None:
    assert parse_chrystoki(text).render() == text


@pytest.mark.parametrize("generation", sorted(CHRYSTOKI_TEMPLATES))
def test_round_trip_of_each_install_layout(generation: str) -> None:
    text = CHRYSTOKI_TEMPLATES[generation].format(root="/usr/safenet/lunaclient")
    conf = parse_chrystoki(text)
    assert conf.render() == text
    assert conf.get("LunaSA Client", "ServerCAFile") == "/usr/safenet/lunaclient/cert/server/CAFile.pem"


def test_sections_with_spaces_and_values() -> None:
    conf = parse_chrystoki(REAL)
    assert conf.sections() == [
        "Chrystoki2",
        "Luna",
        "CardReader",
        "LunaSA Client",
        "Secure Trusted Channel",
        "VirtualToken",
        "HASynchronize",
        "HAConfiguration",
    ]
    assert (
        conf.get("LunaSA Client", "ClientPrivKeyFile")
        == "/usr/safenet/lunaclient/cert/client/ClientNameKey.pem"
    )
    assert (
        conf.get("Secure Trusted Channel", "ClientTokenLib")
        == "/usr/safenet/lunaclient/libs/64/libSoftToken.so"
    )
    assert conf.get("HAConfiguration", "HAOnly") == "1"
    assert conf.get("LunaSA Client", "Missing") is None
    assert conf.get("No Such Section", "NetClient") is None


def test_set_existing_key_changes_only_its_value() -> None:
    conf = parse_chrystoki(REAL)
    assert conf.set("LunaSA Client", "ClientPrivKeyFile", "/k/webKey.pem")
    assert conf.set("LunaSA Client", "ClientCertFile", "/k/web.pem")
    expected = REAL.replace(
        "ClientPrivKeyFile=/usr/safenet/lunaclient/cert/client/ClientNameKey.pem;   # set by bootstrap",
        "ClientPrivKeyFile=/k/webKey.pem;   # set by bootstrap",
    ).replace(
        "ClientCertFile = /usr/safenet/lunaclient/cert/client/ClientNameCert.pem;",
        "ClientCertFile = /k/web.pem;",
    )
    assert conf.render() == expected


def test_set_same_value_changes_nothing() -> None:
    conf = parse_chrystoki(REAL)
    assert not conf.set("HAConfiguration", "HAOnly", "1")
    assert conf.render() == REAL


def test_set_new_key_goes_after_the_last_entry_with_its_indentation() -> None:
    conf = parse_chrystoki(REAL)
    assert conf.set("Luna", "CloningCommandTimeOut", "300000")
    assert "  KeypairGenTimeOut = 2700000;\n  CloningCommandTimeOut = 300000;\n}\nCardReader" in conf.render()
    assert conf.render().replace("  CloningCommandTimeOut = 300000;\n", "", 1) == REAL


def test_set_new_section_is_appended_after_a_blank_line() -> None:
    conf = parse_chrystoki(REAL)
    assert conf.set("Misc", "ToolsDir", "/usr/safenet/lunaclient/bin")
    assert conf.render() == REAL + "\n\nMisc = {\n   ToolsDir = /usr/safenet/lunaclient/bin;\n}\n"
    assert conf.get("Misc", "ToolsDir") == "/usr/safenet/lunaclient/bin"


def test_new_lines_follow_crlf_files() -> None:
    text = REAL.replace("\n", "\r\n") + "\r\n"
    conf = parse_chrystoki(text)
    conf.set("Luna", "PEDTimeout2", "200000")
    conf.set("Misc", "ToolsDir", "/bin")
    assert "\n" not in conf.render().replace("\r\n", "")
    assert parse_chrystoki(conf.render()).get("Luna", "PEDTimeout2") == "200000"


def test_set_into_an_empty_section() -> None:
    conf = parse_chrystoki("Misc = {\n}\n")
    conf.set("Misc", "ToolsDir", "/bin")
    assert conf.render() == "Misc = {\n   ToolsDir = /bin;\n}\n"


def test_entry_without_semicolon_is_read_and_rewritten_with_one() -> None:
    conf = parse_chrystoki("Luna = {\n  DefaultTimeOut = 500000\n}\n")
    assert conf.get("Luna", "DefaultTimeOut") == "500000"
    conf.set("Luna", "DefaultTimeOut", "600000")
    assert conf.render() == "Luna = {\n  DefaultTimeOut = 600000;\n}\n"


def test_duplicate_keys_get_first_set_all_remove_all() -> None:
    text = "Luna = {\n  A = 1;\n  A = 2;\n}\nLuna = {\n  A = 3;\n}\n"
    conf = parse_chrystoki(text)
    assert conf.get("Luna", "A") == "1"
    conf.set("Luna", "A", "9")
    assert [v for k, v in conf.items("Luna")] == ["9", "9", "9"]
    assert conf.remove("Luna", "A")
    assert conf.render() == "Luna = {\n}\nLuna = {\n}\n"


def test_remove_and_remove_section() -> None:
    conf = parse_chrystoki(REAL)
    assert conf.remove("LunaSA Client", "ServerHtl01")
    assert not conf.remove("LunaSA Client", "ServerHtl01")
    assert conf.render() == REAL.replace("   ServerHtl01 = 0;\n", "")
    assert conf.remove_section("Secure Trusted Channel")
    assert "Secure Trusted Channel" not in conf.render()
    assert conf.get("VirtualToken", "VirtualToken00SN") == "1150"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("Luna = {\n  A = 1;\n", 1),  # never closed
        ("Luna = {\n  A = 1;\n}\n}\n", 4),  # stray brace
        ("A = 1;\n", 1),  # entry outside a section
        ("Luna = {\n  Misc = {\n  }\n}\n", 2),  # nested section
        ("Luna = {\n  just words\n}\n", 2),
    ],
)
def test_syntax_errors_name_the_line(text: str, line: int) -> None:
    with pytest.raises(ChrystokiSyntaxError, match=f"line {line}:"):
        parse_chrystoki(text)


@pytest.mark.parametrize("value", ["a;b", "a\nb", "{", " padded", "x # y"])
def test_unsafe_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="invalid Chrystoki.conf value"):
        ChrystokiConf(REAL).set("Luna", "X", value)


def test_ha_view_of_the_virtual_token_section() -> None:
    conf = parse_chrystoki(REAL)
    assert registered_servers(conf) == ["10.0.1.10", "10.0.1.11"]
    group = find_ha_group(conf, "payments-ha")
    assert group is not None
    assert (group.index, group.serial, group.members) == ("00", "1150", ("150", "151"))
    assert find_ha_group(conf, "payments") is None  # exact label, never a prefix


def test_remove_ha_group_renumbers_the_later_groups() -> None:
    conf = parse_chrystoki(REAL)
    assert remove_ha_group(conf, "payments-ha")
    assert [(g.index, g.label, g.serial, g.members) for g in ha_groups(conf)] == [
        ("00", "orders-ha", "1152", ("152",))
    ]
    assert conf.items("HASynchronize") == [("orders-ha", "1")]
    assert not remove_ha_group(conf, "payments-ha")
    assert conf.get("HAConfiguration", "HAOnly") == "1"


# --- properties ----------------------------------------------------------------------------------

_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}( [A-Za-z][A-Za-z0-9]{0,5})?", fullmatch=True)
_keys = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,10}", fullmatch=True)
_values = st.from_regex(r"([/A-Za-z0-9_.,:-]([/A-Za-z0-9_.,: -]{0,20}[/A-Za-z0-9_.,:-])?)?", fullmatch=True)
_space = st.sampled_from(["", " ", "  ", "\t", "   "])
_comment = st.sampled_from(["", " # note", " // note"])
_filler = st.sampled_from(["", "\n", "# a comment\n", "   \n", "// another\n"])


@st.composite
def conf_texts(draw: st.DrawFn) -> tuple[str, dict[tuple[str, str], str]]:
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    out: list[str] = []
    first: dict[tuple[str, str], str] = {}
    for _ in range(draw(st.integers(0, 4))):
        name = draw(_names)
        out.append(draw(_filler))
        out.append(f"{draw(_space)}{name}{draw(_space)}={draw(_space)}{{{draw(_comment)}\n")
        for _ in range(draw(st.integers(0, 4))):
            key, value = draw(_keys), draw(_values)
            out.append(draw(_filler))
            out.append(f"{draw(_space)}{key}{draw(_space)}={draw(_space)}{value};{draw(_comment)}\n")
            first.setdefault((name, key), value)
        out.append(f"{draw(_space)}}}{draw(_comment)}\n")
    out.append(draw(_filler))
    text = "".join(out).replace("\n", newline)
    if draw(st.booleans()) and text.endswith(newline):
        text = text[: -len(newline)]
    return text, first


@settings(max_examples=200, deadline=None)
@given(conf_texts())
def test_any_well_formed_text_round_trips(case: tuple[str, dict[tuple[str, str], str]]) -> None:
    text, first = case
    conf = parse_chrystoki(text)
    assert conf.render() == text
    for (section, key), value in first.items():
        assert conf.get(section, key) == value


@settings(max_examples=200, deadline=None)
@given(conf_texts(), _names, _keys, _values)
def test_set_changes_only_the_key_it_sets(
    case: tuple[str, dict[tuple[str, str], str]], section: str, key: str, value: str
) -> None:
    text, first = case
    conf = parse_chrystoki(text)
    conf.set(section, key, value)
    again = parse_chrystoki(conf.render())
    assert again.get(section, key) == value
    for (s, k), v in first.items():
        if (s, k) != (section, key):
            assert again.get(s, k) == v
    # every original line is still there, in order, except the lines of the key that was set
    rendered = conf.render().splitlines()
    position = 0
    for line in text.splitlines():
        if line in rendered[position:]:
            position = rendered.index(line, position) + 1
        else:
            assert key in line


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab =;{}#/\n\r\t", max_size=60))
def test_arbitrary_text_either_round_trips_or_is_refused(text: str) -> None:
    try:
        conf = parse_chrystoki(text)
    except ChrystokiSyntaxError:
        return
    assert conf.render() == text
