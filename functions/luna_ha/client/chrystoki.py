"""A round-trip-safe parser and editor of the Luna client's ``Chrystoki.conf`` (REFERENCE §10.8). Pure.

The file is a sequence of sections::

    LunaSA Client = {
       ServerCAFile = /usr/safenet/lunaclient/cert/server/CAFile.pem;
       ServerName00 = 10.0.1.10;
    }

Section names may contain spaces (``LunaSA Client``, ``Secure Trusted Channel``); each entry is
``Key = Value;`` on its own line. Blank lines and comment lines (``#`` or ``//``) may appear
anywhere. :class:`ChrystokiConf` keeps the text as it was read, line by line, and an edit replaces,
inserts or removes whole lines only, so everything it does not touch stays byte for byte the same
(ordering, indentation, spacing around ``=``, comments, ``\\r\\n`` line ends, a missing final newline);
``parse_chrystoki(text).render() == text`` for every text that parses.

Duplicates: a section name may occur more than once, and a key more than once in a section. Which
one the Luna library honours is not documented, so :meth:`ChrystokiConf.get` returns the first,
:meth:`~ChrystokiConf.set` rewrites every occurrence (so they all agree) and
:meth:`~ChrystokiConf.remove` removes every occurrence.

Also here, because they only read or edit this file: the HA group view of the ``VirtualToken``
section (:func:`find_ha_group`, :func:`remove_ha_group`) and the registered servers
(:func:`registered_servers`).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator
from dataclasses import dataclass

from luna_ha.errors import ClientToolError

__all__ = [
    "HA_CONFIGURATION",
    "HA_SYNCHRONIZE",
    "LUNASA_CLIENT",
    "VIRTUAL_TOKEN",
    "ChrystokiConf",
    "ChrystokiSyntaxError",
    "HAGroupEntry",
    "find_ha_group",
    "ha_groups",
    "parse_chrystoki",
    "registered_servers",
    "remove_ha_group",
]

LUNASA_CLIENT = "LunaSA Client"
VIRTUAL_TOKEN = "VirtualToken"  # noqa: S105 - a section name
HA_SYNCHRONIZE = "HASynchronize"
HA_CONFIGURATION = "HAConfiguration"

_DEFAULT_INDENT = "   "
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_ .-]*?"
_TRAIL = r"(?P<trail>\s*(?:(?:#|//).*)?)"
_HEADER = re.compile(rf"^(?P<indent>\s*)(?P<name>{_NAME})(?P<eq>\s*=\s*)\{{{_TRAIL}$")
_CLOSE = re.compile(rf"^(?P<indent>\s*)\}}\s*;?{_TRAIL}$")
_ENTRY = re.compile(
    rf"^(?P<indent>\s*)(?P<key>{_NAME})(?P<eq>\s*=\s*)(?P<value>[^;{{}}#\r\n]*?)(?P<semi>\s*;){_TRAIL}$"
)
# An entry without its terminating ';' (hand-edited files); read, and rewritten with one on set.
_BARE_ENTRY = re.compile(rf"^(?P<indent>\s*)(?P<key>{_NAME})(?P<eq>\s*=\s*)(?P<value>[^;{{}}#\r\n]*?)\s*$")
_IGNORABLE = re.compile(r"^\s*(?:(?:#|//).*)?$")
_VALID_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_ .-]*")
_VIRTUAL_TOKEN_KEY = re.compile(r"VirtualToken(\d{2})(Label|SN|Members)")


class ChrystokiSyntaxError(ClientToolError):
    """The text is not a Chrystoki.conf this module can edit safely; names the line."""


@dataclass(frozen=True)
class _Entry:
    key: str
    value: str
    line: int


@dataclass(frozen=True)
class _Section:
    name: str
    header: int
    close: int
    entries: tuple[_Entry, ...]


def _split_lines(text: str) -> list[str]:
    """Lines with their ``\\n`` ends; only ``\\n`` ends a line (``str.splitlines`` knows many more)."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _body(line: str) -> str:
    return line[:-1] if line.endswith("\n") else line


def _strip_cr(body: str) -> str:
    return body[:-1] if body.endswith("\r") else body


def _scan(lines: list[str]) -> list[_Section]:
    sections: list[_Section] = []
    current: tuple[str, int] | None = None
    entries: list[_Entry] = []
    for index, line in enumerate(lines):
        body = _strip_cr(_body(line))
        if _IGNORABLE.match(body):
            continue
        if current is None:
            header = _HEADER.match(body)
            if header is None:
                raise ChrystokiSyntaxError(
                    f"Chrystoki.conf line {index + 1}: expected 'Section = {{', a comment or a blank line"
                )
            current = (header.group("name").strip(), index)
            entries = []
            continue
        if _CLOSE.match(body):
            sections.append(_Section(current[0], current[1], index, tuple(entries)))
            current = None
            continue
        entry = _ENTRY.match(body) or _BARE_ENTRY.match(body)
        if entry is None:
            raise ChrystokiSyntaxError(
                f"Chrystoki.conf line {index + 1}: expected 'Key = Value;' or '}}' in section {current[0]!r}"
            )
        entries.append(_Entry(entry.group("key").strip(), entry.group("value").strip(), index))
    if current is not None:
        raise ChrystokiSyntaxError(
            f"Chrystoki.conf line {current[1] + 1}: section {current[0]!r} is never closed with '}}'"
        )
    return sections


def _check_name(value: str, what: str) -> str:
    if not _VALID_NAME.fullmatch(value) or value != value.strip():
        raise ValueError(f"invalid Chrystoki.conf {what} {value!r}")
    return value


def _check_value(value: str) -> str:
    if value != value.strip() or any(c in value for c in ";{}#\r\n"):
        raise ValueError(f"invalid Chrystoki.conf value {value!r}: no ';', '#', braces or line breaks")
    return value


class ChrystokiConf:
    """An editable Chrystoki.conf that renders back exactly what it read, plus the edits."""

    def __init__(self, text: str = "") -> None:
        self._lines = _split_lines(text)
        self._sections = _scan(self._lines)

    def __repr__(self) -> str:
        return f"ChrystokiConf(sections={self.sections()!r})"

    # --- reading ---------------------------------------------------------------------------------

    def render(self) -> str:
        return "".join(self._lines)

    def sections(self) -> list[str]:
        """Section names in file order (a repeated name once, at its first place)."""
        return list(dict.fromkeys(s.name for s in self._sections))

    def has_section(self, section: str) -> bool:
        return any(s.name == section for s in self._sections)

    def items(self, section: str) -> list[tuple[str, str]]:
        """Every ``(key, value)`` of the section(s) of that name, in file order."""
        return [(e.key, e.value) for s in self._of(section) for e in s.entries]

    def get(self, section: str, key: str) -> str | None:
        for s in self._of(section):
            for e in s.entries:
                if e.key == key:
                    return e.value
        return None

    # --- editing ---------------------------------------------------------------------------------

    def set(self, section: str, key: str, value: str) -> bool:
        """Set ``key`` in ``section``, adding either if missing. True when the text changed.

        An existing line keeps its indentation, its spacing around ``=`` and any trailing comment;
        a new key goes after the section's last entry with that entry's indentation; a new
        section goes at the end of the file, after a blank line.
        """
        _check_name(section, "section name")
        _check_name(key, "key")
        _check_value(value)
        before = self.render()
        found = False
        for s in self._of(section):
            for e in s.entries:
                if e.key != key:
                    continue
                found = True
                if e.value == value:
                    continue
                self._lines[e.line] = self._rewrite(self._lines[e.line], value)
        if not found:
            sections = self._of(section)
            if sections:
                self._insert_entry(sections[0], key, value)
            else:
                self._append_section(section, [(key, value)])
        self._sections = _scan(self._lines)
        return self.render() != before

    def remove(self, section: str, key: str) -> bool:
        """Remove every ``key`` line of the section(s); True when something was removed."""
        doomed = {e.line for s in self._of(section) for e in s.entries if e.key == key}
        return self._delete_lines(doomed)

    def remove_section(self, section: str) -> bool:
        """Remove every section of that name (header to closing brace); True when something was removed."""
        doomed = {i for s in self._of(section) for i in range(s.header, s.close + 1)}
        return self._delete_lines(doomed)

    # --- internals -------------------------------------------------------------------------------

    def _of(self, section: str) -> list[_Section]:
        return [s for s in self._sections if s.name == section]

    def _newline(self) -> str:
        return "\r\n" if any(line.endswith("\r\n") for line in self._lines) else "\n"

    def _rewrite(self, line: str, value: str) -> str:
        end = "\r\n" if line.endswith("\r\n") else ("\n" if line.endswith("\n") else "")
        body = _strip_cr(_body(line))
        m = _ENTRY.match(body)
        if m is not None:
            return f"{body[: m.start('value')]}{value}{body[m.end('value') :]}{end}"
        bare = _BARE_ENTRY.match(body)
        assert bare is not None  # the scan accepted this line as an entry
        return f"{bare.group('indent')}{bare.group('key')}{bare.group('eq')}{value};{end}"

    def _insert_entry(self, section: _Section, key: str, value: str) -> None:
        newline = self._newline()
        if section.entries:
            last = section.entries[-1]
            m = _ENTRY.match(_strip_cr(_body(self._lines[last.line]))) or _BARE_ENTRY.match(
                _strip_cr(_body(self._lines[last.line]))
            )
            assert m is not None
            indent, eq = m.group("indent"), m.group("eq")
            where = last.line + 1
        else:
            header = _HEADER.match(_strip_cr(_body(self._lines[section.header])))
            assert header is not None
            indent, eq = header.group("indent") + _DEFAULT_INDENT, " = "
            where = section.header + 1
        self._lines.insert(where, f"{indent}{key}{eq}{value};{newline}")

    def _append_section(self, section: str, entries: list[tuple[str, str]]) -> None:
        newline = self._newline()
        if self._lines and not self._lines[-1].endswith("\n"):
            self._lines[-1] += newline
        if self._lines and self._lines[-1].strip():
            self._lines.append(newline)
        self._lines.append(f"{section} = {{{newline}")
        self._lines.extend(f"{_DEFAULT_INDENT}{k} = {v};{newline}" for k, v in entries)
        self._lines.append(f"}}{newline}")

    def _delete_lines(self, doomed: builtins.set[int]) -> bool:
        if not doomed:
            return False
        self._lines = [line for i, line in enumerate(self._lines) if i not in doomed]
        self._sections = _scan(self._lines)
        return True


def parse_chrystoki(text: str) -> ChrystokiConf:
    """Parse ``text``; raises :class:`ChrystokiSyntaxError` naming the first line it cannot place."""
    return ChrystokiConf(text)


# --- what the client tools keep in the file --------------------------------------------------------


def registered_servers(conf: ChrystokiConf) -> list[str]:
    """The ``ServerNameNN`` values of the ``LunaSA Client`` section, in NN order."""
    names = []
    for key, value in conf.items(LUNASA_CLIENT):
        m = re.fullmatch(r"ServerName(\d+)", key)
        if m:
            names.append((int(m.group(1)), value))
    return [value for _, value in sorted(names)]


@dataclass(frozen=True)
class HAGroupEntry:
    """One HA group as the ``VirtualToken`` section records it (REFERENCE §10.8)."""

    index: str  # the two-digit NN
    label: str
    serial: str
    members: tuple[str, ...]


def _ha_groups(conf: ChrystokiConf) -> Iterator[HAGroupEntry]:
    fields: dict[str, dict[str, str]] = {}
    for key, value in conf.items(VIRTUAL_TOKEN):
        m = _VIRTUAL_TOKEN_KEY.fullmatch(key)
        if m:
            fields.setdefault(m.group(1), {}).setdefault(m.group(2), value)
    for index in sorted(fields):
        f = fields[index]
        members = tuple(s.strip() for s in f.get("Members", "").split(",") if s.strip())
        yield HAGroupEntry(index, f.get("Label", ""), f.get("SN", ""), members)


def ha_groups(conf: ChrystokiConf) -> list[HAGroupEntry]:
    """Every HA group of the ``VirtualToken`` section, in NN order."""
    return list(_ha_groups(conf))


def find_ha_group(conf: ChrystokiConf, label: str) -> HAGroupEntry | None:
    """The HA group labelled exactly ``label`` (no prefix match), or None."""
    for group in _ha_groups(conf):
        if group.label == label:
            return group
    return None


def remove_ha_group(conf: ChrystokiConf, label: str) -> bool:
    """Remove the group ``label`` from ``VirtualToken`` and ``HASynchronize``.

    The groups after it move down one number, so the NN stay contiguous from 00 as the tools write
    them. True when something changed.
    """
    group = find_ha_group(conf, label)
    if group is None:
        return False
    removed = int(group.index)
    later = [g for g in _ha_groups(conf) if int(g.index) > removed]
    for g in [group, *later]:
        for suffix in ("Label", "SN", "Members"):
            conf.remove(VIRTUAL_TOKEN, f"VirtualToken{g.index}{suffix}")
    for g in later:
        nn = f"{int(g.index) - 1:02d}"
        conf.set(VIRTUAL_TOKEN, f"VirtualToken{nn}Label", g.label)
        conf.set(VIRTUAL_TOKEN, f"VirtualToken{nn}SN", g.serial)
        conf.set(VIRTUAL_TOKEN, f"VirtualToken{nn}Members", ",".join(g.members))
    conf.remove(HA_SYNCHRONIZE, label)
    return True
