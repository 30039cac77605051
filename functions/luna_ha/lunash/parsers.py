"""Pure parsers for lunash output.

Input is the raw text of one command: what came between the echoed command and the next prompt.
Every parser tolerates CRLF/CR line ends, the prompt+echo line (or a bare echo) at the top, a
trailing prompt, runs of spaces or tabs, and blank lines. Lines are compared with whitespace runs
collapsed to one space, as the vendor's own tooling did.

Data parsers (`parse_hsm_show`, `parse_partition_list`, ...) raise :class:`ParseError` when the
shape is wrong, and :class:`CommandReportedFailure` (a ``ParseError``) when the output is a failure
report rather than data. Messages name the command and what was missing, never the whole output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from luna_ha.lunash import dialect
from luna_ha.lunash.errors import ClientNotFound, CommandReportedFailure, HsmUnreachable, ParseError
from luna_ha.software import Software

__all__ = [
    "ClientInfo",
    "CommandResult",
    "HsmInfo",
    "PartitionInfo",
    "find_interactive_prompt",
    "known_outcome",
    "parse_client_fingerprint",
    "parse_client_list",
    "parse_client_show",
    "parse_hsm_show",
    "parse_partition_list",
    "parse_result",
]

_WS_RE = re.compile(r"\s+")
_COMMAND_WORDS = frozenset(name.lower() for name in dialect.COMMANDS)


# --- result types ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    """The generic shape of any lunash output."""

    #: The number in `Command Result : <n> (...)`; None when no result line arrived.
    code: int | None
    #: The text in the parentheses, e.g. ``Success``; empty when no result line arrived.
    text: str
    #: Every `Error:` line, whitespace collapsed, e.g. ``Error: 'client show' failed. (C000040A : ...)``.
    errors: tuple[str, ...]
    #: Every other non-blank line (no echo, prompt or result line), whitespace collapsed.
    body: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.code == dialect.SUCCESS_CODE and not self.errors

    @property
    def error_codes(self) -> tuple[str, ...]:
        """Symbolic codes from the `Error:` lines, e.g. ``("RC_OBJECT_NOT_IN_LIST",)``."""
        return tuple(m.group("name") for line in self.errors for m in dialect.ERROR_CODE_RE.finditer(line))


@dataclass(frozen=True)
class HsmInfo:
    software_version: str | None
    #: None for `no label` (5.x/6.x) or an empty label (7.x), as printed by a zeroized HSM.
    label: str | None
    serial: str
    firmware: str | None
    model: str | None
    admin_logged_in: bool
    #: None when lunash prints `HSM IS ZEROIZED !!!!` instead of a number.
    attempts_left: int | None
    zeroized: bool
    #: ``(partition serial, partition name)`` in the order shown.
    partitions: tuple[tuple[str, str], ...]
    space_in_use: int | None
    #: None when the output has no FIPS line.
    fips: bool | None
    #: 7.x `Number of partitions allowed`; None when not shown (5.x/6.x).
    partitions_allowed: int | None = None

    @property
    def software(self) -> Software | None:
        """The software version, read (None when ``hsm show`` printed none)."""
        return Software.parse(self.software_version)


@dataclass(frozen=True)
class PartitionInfo:
    serial: str
    name: str
    objects: int
    #: The 7.x `Partition Version` column: 0 uninitialized, 1 initialized; None on 5.x/6.x.
    version: int | None = None

    @property
    def initialized(self) -> bool | None:
        """7.x: whether the partition has been initialized (label, Partition SO, domain); None on
        5.x/6.x, where `partition create` initializes."""
        return None if self.version is None else self.version != 0


@dataclass(frozen=True)
class ClientInfo:
    name: str
    hostname: str
    partitions: tuple[str, ...]


# --- line handling ---------------------------------------------------------------------------


def _is_number(token: str) -> bool:
    return token.isascii() and token.isdigit()


def _collapse(line: str) -> str:
    return _WS_RE.sub(" ", line).strip()


def _is_bare_echo(line: str) -> bool:
    words = line.split(" ")
    return len(words) >= 2 and f"{words[0]} {words[1]}".lower() in _COMMAND_WORDS


def _lines(text: str) -> list[str]:
    """Non-blank lines, whitespace collapsed, without prompts and without the echoed command."""
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines: list[str] = []
    for line in raw:
        collapsed = _collapse(line)
        if not collapsed or dialect.PROMPT_LINE_RE.match(collapsed):
            continue  # blank, a bare prompt, or prompt + echo
        if not lines and _is_bare_echo(collapsed):
            continue  # the echo without its prompt (first line only)
        lines.append(collapsed)
    return lines


def _split_lines(lines: list[str]) -> CommandResult:
    code: int | None = None
    result_text = ""
    errors: list[str] = []
    body: list[str] = []
    for line in lines:
        result = dialect.RESULT_LINE_RE.match(line)
        if result is not None:
            code, result_text = int(result.group("code")), result.group("text")
        elif dialect.ERROR_LINE_RE.match(line):
            errors.append(line)
        else:
            body.append(line)
    return CommandResult(code=code, text=result_text, errors=tuple(errors), body=tuple(body))


def parse_result(text: str) -> CommandResult:
    """Split any output into result code, `Error:` lines and body; never raises on odd input."""
    return _split_lines(_lines(text))


def _data_lines(command: str, text: str) -> list[str]:
    """The body of a data command's output, after refusing failure reports."""
    result = parse_result(text)
    failed = result.errors or (result.code is not None and result.code != dialect.SUCCESS_CODE)
    if any(dialect.HSM_UNREACHABLE_RE.search(line) for line in (*result.body, *result.errors)):
        raise HsmUnreachable(command, result.code, result.errors or ("Unable to communicate with HSM",))
    if failed:
        if known_outcome(command, result) is dialect.Outcome.NO_SUCH_CLIENT:
            raise ClientNotFound(command, result.code, result.errors)
        raise CommandReportedFailure(command, result.code, result.errors)
    return list(result.body)


# --- generic helpers -------------------------------------------------------------------------


def known_outcome(command: str, result: CommandResult) -> dialect.Outcome | None:
    """The known message (:data:`dialect.KNOWN_MESSAGES`) in ``result`` that applies to ``command``
    (a canonical name such as ``client assignPartition``), or None."""
    lines = (*result.errors, *result.body)
    for known in dialect.KNOWN_MESSAGES:
        if command in known.commands and any(known.regex.search(line) for line in lines):
            return known.outcome
    return None


def find_interactive_prompt(text: str) -> dialect.PromptPattern | None:
    """The first question in ``text`` that lunash asks interactively (`proceed`, a password), if any."""
    lines = "\n".join(_collapse(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    for prompt in dialect.INTERACTIVE_PROMPTS:
        if prompt.regex.search(lines):
            return prompt
    return None


def _int(command: str, label: str, value: str) -> int:
    token = value.split(" ")[0] if value else ""
    if not _is_number(token):
        raise ParseError(command, f"'{label}' is not a number")
    return int(token)


# --- hsm show --------------------------------------------------------------------------------


def parse_hsm_show(text: str) -> HsmInfo:
    """The HSM's state, decided from its fields only.

    Zeroized means: the attempts-left field says ``HSM IS ZEROIZED`` (5.1, 7.x), or, with a numeric
    attempts-left (5.3), no label, nothing stored and no partition. A label or a partition name is
    free text and never decides anything, whatever words it holds. Output that says both (the
    marker together with a label, listed partitions or space in use; a ``zeroized`` line outside
    any field on an HSM whose fields say initialized; two different values of one field) raises
    :class:`ParseError`: the caller stops rather than guess, since the guess may be ``hsm init``.
    """
    command = "hsm show"
    lines = _data_lines(command, text)
    fields: dict[str, str] = {}
    partitions: list[tuple[str, str]] = []
    no_partitions_line = False
    loose_marker = False
    fips: bool | None = None
    for line in lines:
        partition = dialect.HSM_PARTITION_LINE_RE.match(line)
        if partition is not None:
            partitions.append((partition.group("serial"), partition.group("name")))
            continue
        if dialect.NO_PARTITIONS_RE.match(line):
            no_partitions_line = True
            continue
        fips_match = dialect.FIPS_RE.search(line)
        if fips_match is not None:
            fips = fips_match.group("not") is None
            continue
        key, sep, value = line.partition(":")
        field_name = dialect.HSM_SHOW_FIELDS.get(key.strip().lower()) if sep else None
        if field_name is None:
            loose_marker = loose_marker or dialect.ZEROIZED_RE.search(line) is not None
            continue
        value = value.strip()
        if fields.setdefault(field_name, value) != value:
            raise ParseError(command, f"two '{key.strip()}' lines with different values")

    for required in dialect.HSM_SHOW_REQUIRED:
        if required not in fields:
            raise ParseError(command, f"no '{dialect.HSM_SHOW_LABELS[required]}' line")

    serial = fields["serial"].split(" ")[0] if fields["serial"] else ""
    if not serial:
        raise ParseError(command, "'Serial #' is empty")

    status = fields["admin_login_status"].lower()
    if status not in dialect.LOGGED_IN_VALUES:
        raise ParseError(command, "'HSM Admin login status' is neither 'Logged In' nor 'Not Logged In'")

    attempts_text = fields["attempts_left"]
    attempts = dialect.ATTEMPTS_LEFT_RE.match(attempts_text)
    if attempts is not None:
        attempts_left: int | None = int(attempts.group("n"))
    elif dialect.ZEROIZED_RE.search(attempts_text):
        attempts_left = None
    else:
        raise ParseError(command, "'HSM Admin login attempts left' is neither a number nor 'HSM IS ZEROIZED'")

    if len({serial for serial, _ in partitions}) != len(partitions) or len(
        {name for _, name in partitions}
    ) != len(partitions):
        raise ParseError(command, "a partition serial or name is listed twice")
    if partitions and no_partitions_line:
        raise ParseError(command, "partitions are listed and 'There are no partitions.' is shown too")
    partitions_allowed = (
        _int(command, "Number of partitions allowed", fields["partitions_allowed"])
        if "partitions_allowed" in fields
        else None
    )
    if partitions_allowed is not None and len(partitions) > partitions_allowed:
        raise ParseError(
            command, f"{len(partitions)} partitions are listed but only {partitions_allowed} are allowed"
        )
    if "partitions_created" in fields:
        created = _int(command, "Number of partitions created", fields["partitions_created"])
        if created != len(partitions):
            raise ParseError(
                command, f"'Number of partitions created' is {created} but {len(partitions)} are listed"
            )

    raw_label = fields.get("label", "")
    label = None if raw_label.lower() in dialect.NO_LABEL_VALUES else raw_label
    space_in_use = (
        _int(command, "Space In Use (Bytes)", fields["space_in_use"]) if "space_in_use" in fields else None
    )
    initialized_by = [
        why
        for why, shown in (
            ("a label", label is not None),
            ("listed partitions", bool(partitions)),
            ("space in use", bool(space_in_use)),
        )
        if shown
    ]
    if attempts_left is None:
        if initialized_by:
            raise ParseError(
                command,
                "the attempts-left field says HSM IS ZEROIZED but the output shows "
                f"{', '.join(initialized_by)}; not deciding between zeroized and initialized",
            )
        zeroized = True
    else:
        # 5.3 may print a numeric attempts-left on a zeroized HSM: there, no label and nothing
        # stored means zeroized. Listed partitions always mean initialized.
        zeroized = label is None and space_in_use == 0 and not partitions
    if loose_marker and not zeroized:
        raise ParseError(
            command,
            "a line outside the fields says HSM IS ZEROIZED but the fields do not; "
            "not deciding between zeroized and initialized",
        )

    firmware = fields.get("firmware")
    software = fields.get("software_version")
    version = software.split(" ")[0] if software else None
    Software.parse(version)  # an unreadable or unsupported version fails here, not later
    return HsmInfo(
        software_version=version,
        label=label,
        serial=serial,
        firmware=firmware.split(" ")[0] if firmware else None,
        model=fields.get("model") or None,
        admin_logged_in=dialect.LOGGED_IN_VALUES[status],
        attempts_left=attempts_left,
        zeroized=zeroized,
        partitions=tuple(partitions),
        space_in_use=space_in_use,
        fips=fips,
        partitions_allowed=partitions_allowed,
    )


# --- partition list --------------------------------------------------------------------------


def parse_partition_list(text: str) -> tuple[PartitionInfo, ...]:
    """The listed partitions (5.x/6.x, or 7.x with its `Partition Version` column and 13-digit
    serials). Rows together with 'There are no partitions.', a serial or name listed twice, or
    rows and header that disagree on the version column raise :class:`ParseError`: what is listed
    decides creates, initializations and deletes."""
    command = "partition list"
    lines = _data_lines(command, text)
    if any(dialect.NO_PARTITIONS_RE.match(line) for line in lines):
        if any(dialect.PARTITION_ROW_START_RE.match(line) for line in lines):
            raise ParseError(command, "partition rows are listed and 'There are no partitions.' is shown too")
        return ()
    rule_at = next((i for i, line in enumerate(lines) if dialect.TABLE_RULE_RE.match(line)), None)
    if rule_at is None:
        raise ParseError(command, "no table rule ('====') and no 'There are no partitions.' line")
    header = " ".join(lines[:rule_at]).lower()
    rows: list[PartitionInfo] = []
    for number, line in enumerate(lines[rule_at + 1 :], start=1):
        if dialect.TABLE_RULE_RE.match(line):
            continue  # 7.x may draw a rule per column
        cells = line.split(" ")
        layout = dialect.PARTITION_LIST_LAYOUTS.get(len(cells))
        if layout is None:
            raise ParseError(
                command,
                f"row {number} has {len(cells)} columns, expected one of "
                f"{sorted(dialect.PARTITION_LIST_LAYOUTS)}",
            )
        if "version" in layout and header and "version" not in header:
            raise ParseError(command, f"row {number} has a version column the header does not show")
        if "version" not in layout and "version" in header:
            raise ParseError(command, f"row {number} has no value for the header's version column")
        row = dict(zip(layout, cells, strict=True))
        for numeric in (
            "serial",
            "objects",
            "total",
            "used",
            "free",
            *(("version",) if "version" in row else ()),
        ):
            if not _is_number(row[numeric]):
                raise ParseError(command, f"row {number}: '{numeric}' is not a number")
        rows.append(
            PartitionInfo(
                serial=row["serial"],
                name=row["name"],
                objects=int(row["objects"]),
                version=int(row["version"]) if "version" in row else None,
            )
        )
    if len({r.serial for r in rows}) != len(rows) or len({r.name for r in rows}) != len(rows):
        raise ParseError(command, "a partition serial or name is listed twice")
    return tuple(rows)


# --- clients ---------------------------------------------------------------------------------


def parse_client_list(text: str) -> tuple[str, ...]:
    """The registered client names. Names together with 'No clients are registered.', or a name
    or number listed twice, raise :class:`ParseError`: what is listed decides deletes."""
    command = "client list"
    lines = _data_lines(command, text)
    rows = [m for line in lines if (m := dialect.CLIENT_LIST_LINE_RE.match(line))]
    names = tuple(m.group("name") for m in rows)
    none_line = any(dialect.NO_CLIENTS_RE.match(line) for line in lines)
    if not names and not none_line:
        raise ParseError(command, "no 'registered client <n>:' lines and no 'No clients are registered.'")
    if names and none_line:
        raise ParseError(command, "clients are listed and 'No clients are registered.' is shown too")
    if len(set(names)) != len(names) or len({m.group("number") for m in rows}) != len(rows):
        raise ParseError(command, "a client name or number is listed twice")
    return names


def _partition_names(command: str, value: str) -> tuple[str, ...]:
    """``"p1", "p2"`` (every name quoted), ``p1, p2`` (none quoted) or ``<none>``; anything else,
    a mix or an empty item, raises: a partition left out would be left assigned."""
    if value.lower() == dialect.NO_PARTITIONS_VALUE:
        return ()
    items = [item.strip() for item in value.split(",")] if '"' not in value else None
    if items is None:
        if not dialect.QUOTED_NAMES_RE.fullmatch(value):
            raise ParseError(command, "'Partitions' is neither a list of quoted names nor of plain names")
        items = re.findall(r'"([^"]*)"', value)
    if not all(items):
        raise ParseError(command, "'Partitions' has an empty name")
    if len(set(items)) != len(items):
        raise ParseError(command, "'Partitions' names a partition twice")
    return tuple(items)


def parse_client_show(text: str, client: str | None = None) -> ClientInfo:
    """The client's hostname and assigned partitions. With ``client``, output about another client
    (``ClientID`` differs) raises :class:`ParseError`, as do two different values of one field."""
    command = "client show"
    lines = _data_lines(command, text)
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        field_name = dialect.CLIENT_SHOW_FIELDS.get(key.strip().lower()) if sep else None
        if field_name is None:
            continue
        value = value.strip()
        if fields.setdefault(field_name, value) != value:
            raise ParseError(command, f"two '{key.strip()}' lines with different values")
    for required, label in dialect.CLIENT_SHOW_LABELS.items():
        if required not in fields:
            raise ParseError(command, f"no '{label}' line")
        if required != "partitions" and not fields[required]:
            raise ParseError(command, f"'{label}' is empty")
    if client is not None and fields["name"] != client:
        raise ParseError(command, "'ClientID' is not the client asked for")
    return ClientInfo(
        name=fields["name"],
        hostname=fields["hostname"],
        partitions=_partition_names(command, fields["partitions"]),
    )


def parse_client_fingerprint(text: str) -> str:
    """The fingerprint as colon-separated upper-case hex bytes. Two different fingerprints raise
    :class:`ParseError`: a mismatch with the published certificate replaces the registration."""
    command = "client fingerprint"
    lines = _data_lines(command, text)
    found = {m.group("fp").upper() for line in lines if (m := dialect.FINGERPRINT_RE.match(line))}
    if len(found) > 1:
        raise ParseError(command, "two different 'Certificate fingerprint' lines")
    if not found:
        raise ParseError(command, "no 'Certificate fingerprint: XX:XX:…' line")
    return found.pop()
