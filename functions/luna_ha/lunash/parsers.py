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


@dataclass(frozen=True)
class PartitionInfo:
    serial: str
    name: str
    objects: int
    #: The 7.x `Partition Version` column; None on 5.x/6.x.
    version: str | None = None


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
    command = "hsm show"
    lines = _data_lines(command, text)
    fields: dict[str, str] = {}
    partitions: list[tuple[str, str]] = []
    fips: bool | None = None
    for line in lines:
        partition = dialect.HSM_PARTITION_LINE_RE.match(line)
        if partition is not None:
            partitions.append((partition.group("serial"), partition.group("name")))
            continue
        fips_match = dialect.FIPS_RE.search(line)
        if fips_match is not None:
            fips = fips_match.group("not") is None
            continue
        key, sep, value = line.partition(":")
        field_name = dialect.HSM_SHOW_FIELDS.get(key.strip().lower())
        if sep and field_name is not None and field_name not in fields:
            fields[field_name] = value.strip()

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
    marker_zeroized = any(dialect.ZEROIZED_RE.search(line) for line in lines)
    attempts = dialect.ATTEMPTS_LEFT_RE.match(attempts_text)
    if attempts is not None:
        attempts_left: int | None = int(attempts.group("n"))
    elif dialect.ZEROIZED_RE.search(attempts_text):
        attempts_left = None
    else:
        raise ParseError(command, "'HSM Admin login attempts left' is neither a number nor 'HSM IS ZEROIZED'")

    raw_label = fields.get("label", "")
    label = None if raw_label.lower() in dialect.NO_LABEL_VALUES else raw_label
    space_in_use = (
        _int(command, "Space In Use (Bytes)", fields["space_in_use"]) if "space_in_use" in fields else None
    )
    # 5.3 may print a numeric attempts-left on a zeroized HSM: there, no label and nothing stored
    # means zeroized. Listed partitions always mean initialised (never risk an `hsm init` on them).
    rule_53 = label is None and space_in_use == 0 and not partitions
    firmware = fields.get("firmware")
    software = fields.get("software_version")
    return HsmInfo(
        software_version=software.split(" ")[0] if software else None,
        label=label,
        serial=serial,
        firmware=firmware.split(" ")[0] if firmware else None,
        model=fields.get("model") or None,
        admin_logged_in=dialect.LOGGED_IN_VALUES[status],
        attempts_left=attempts_left,
        zeroized=marker_zeroized or rule_53,
        partitions=tuple(partitions),
        space_in_use=space_in_use,
        fips=fips,
    )


# --- partition list --------------------------------------------------------------------------


def parse_partition_list(text: str) -> tuple[PartitionInfo, ...]:
    command = "partition list"
    lines = _data_lines(command, text)
    if any(dialect.NO_PARTITIONS_RE.match(line) for line in lines):
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
        row = dict(zip(layout, cells, strict=True))
        for numeric in ("serial", "objects", "total", "used", "free"):
            if not _is_number(row[numeric]):
                raise ParseError(command, f"row {number}: '{numeric}' is not a number")
        rows.append(
            PartitionInfo(
                serial=row["serial"],
                name=row["name"],
                objects=int(row["objects"]),
                version=row.get("version"),
            )
        )
    return tuple(rows)


# --- clients ---------------------------------------------------------------------------------


def parse_client_list(text: str) -> tuple[str, ...]:
    command = "client list"
    lines = _data_lines(command, text)
    names = tuple(m.group("name") for line in lines if (m := dialect.CLIENT_LIST_LINE_RE.match(line)))
    if not names and not any(dialect.NO_CLIENTS_RE.match(line) for line in lines):
        raise ParseError(command, "no 'registered client <n>:' lines and no 'No clients are registered.'")
    return names


def _partition_names(value: str) -> tuple[str, ...]:
    if value.lower() == dialect.NO_PARTITIONS_VALUE:
        return ()
    quoted = re.findall(r'"([^"]*)"', value)
    names = quoted if quoted else value.split(",")
    return tuple(name.strip() for name in names if name.strip())


def parse_client_show(text: str) -> ClientInfo:
    command = "client show"
    lines = _data_lines(command, text)
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        field_name = dialect.CLIENT_SHOW_FIELDS.get(key.strip().lower())
        if sep and field_name is not None and field_name not in fields:
            fields[field_name] = value.strip()
    for required, label in dialect.CLIENT_SHOW_LABELS.items():
        if required not in fields:
            raise ParseError(command, f"no '{label}' line")
        if required != "partitions" and not fields[required]:
            raise ParseError(command, f"'{label}' is empty")
    return ClientInfo(
        name=fields["name"],
        hostname=fields["hostname"],
        partitions=_partition_names(fields["partitions"]),
    )


def parse_client_fingerprint(text: str) -> str:
    """The fingerprint as colon-separated upper-case hex bytes."""
    command = "client fingerprint"
    lines = _data_lines(command, text)
    for line in lines:
        match = dialect.FINGERPRINT_RE.match(line)
        if match is not None:
            return match.group("fp").upper()
    raise ParseError(command, "no 'Certificate fingerprint: XX:XX:…' line")
