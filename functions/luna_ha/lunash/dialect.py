"""The lunash dialect as data: prompt and result patterns, prompts that must never be answered,
known benign messages, and the per-command table (canonical name, mutating, sensitive, timeout).

Nothing here performs I/O or decides anything; ``commands.py`` builds lines from this table,
``parsers.py`` reads output with these patterns, and the SSH layer waits on them.
Source of every literal: ``luna/REFERENCE.md`` (section numbers in the comments); for Luna Network
HSM 7, published 7.x output (``tests/unit/transcripts``) or, where a comment says so, an assumption.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

# --------------------------------------------------------------------------------------------
# Prompt (§1.1, §0.2): `[<hostname>] lunash:>`; only the suffix is stable.

PROMPT_SUFFIX: Final = "lunash:>"

#: A whole line that is a prompt, possibly followed by the echoed command (``rest``).
PROMPT_LINE_RE: Final = re.compile(
    r"^[^\S\n]*(?:\[(?P<hostname>[^\]\n]*)\][^\S\n]*)?lunash:>[^\S\n]*(?P<rest>.*?)[^\S\n]*$"
)

#: The prompt at the very end of a stream buffer or line (what the SSH layer waits for).
PROMPT_RE: Final = re.compile(
    r"(?:^|[\r\n])[^\S\r\n]*(?:\[(?P<hostname>[^\]\r\n]*)\][^\S\r\n]*)?lunash:>[^\S\r\n]*\Z"
)

# --------------------------------------------------------------------------------------------
# Results (§1.3): `Command Result : <n> (<text>)`; success is exactly code 0 "(Success)".

RESULT_LINE_RE: Final = re.compile(
    r"^\s*Command\s+Result\s*:\s*(?P<code>[0-9]+)\s*\(\s*(?P<text>.*?)\s*\)\s*$", re.IGNORECASE
)
SUCCESS_CODE: Final = 0
SUCCESS_SENTINEL: Final = "Command Result : 0 (Success)"
SUCCESS_SENTINEL_RE: Final = re.compile(r"Command\s+Result\s*:\s*0\s*\(\s*Success\s*\)", re.IGNORECASE)
#: Shell-level failure code printed after `Error:` lines.
SHELL_FAILURE_CODE: Final = 65535

ERROR_MARKER: Final = "Error:"
ERROR_LINE_RE: Final = re.compile(r"^\s*Error:\s*(?P<message>.*?)\s*$")
#: `(<hex> : <RC_/LUNA_RET_/CKR_ name>)` inside an `Error:` line.
ERROR_CODE_RE: Final = re.compile(r"\(\s*(?P<hex>[0-9A-Fa-f]+)\s*:\s*(?P<name>[A-Z][A-Z0-9_]*)\s*\)")
#: Per-command success text, e.g. `'partition create' successful.`
SUCCESS_MESSAGE_RE: Final = re.compile(r"'(?P<command>[^'\n]+)'\s+successful", re.IGNORECASE)

#: Error names of a rejected HSM Admin (SO) password (§4); never retry after one of these.
LOGIN_FAILURE_CODES: Final = frozenset({"LUNA_RET_UM_PIN_INCORRECT", "LUNA_RET_SO_LOGIN_FAILURE_THRESHOLD"})
#: The HSM card does not answer (§2); a reboot is needed, not a retry of the parse.
HSM_UNREACHABLE_RE: Final = re.compile(r"Unable\s+to\s+communicate\s+with\s+HSM", re.IGNORECASE)

#: Replaces every secret value in `Command.display` and in masked echoes.
MASK: Final = "********"

#: Sent to leave a `proceed`/`quit` question; a no-op at a normal prompt (§0.6).
QUIT: Final = "quit"

# --------------------------------------------------------------------------------------------
# Interactive prompts (§0.4, §3, §4, §5). Automation sends every argument inline and `-force`,
# so any of these appearing is an error to abort with `quit`, never a question to answer.


class PromptKind(enum.Enum):
    CONFIRMATION = "confirmation"  # wants `proceed` / `quit`
    CREDENTIAL = "credential"  # wants a password or cloning domain typed in


@dataclass(frozen=True)
class PromptPattern:
    kind: PromptKind
    description: str
    regex: re.Pattern[str]


INTERACTIVE_PROMPTS: Final[tuple[PromptPattern, ...]] = (
    # Most specific first: the caution before the last login attempt that would zeroize the HSM.
    PromptPattern(
        PromptKind.CONFIRMATION,
        "LAST available HSM Admin login attempt",
        re.compile(r"LAST\s+available\s+HSM\s+Admin\s+login\s+attempt", re.IGNORECASE),
    ),
    # 7.x `partition create` without -force (published): the question is split over two lines.
    PromptPattern(
        PromptKind.CONFIRMATION,
        "Type 'proceed' to create the partition, or 'quit' (7.x partition create)",
        re.compile(r"Type\s+'proceed'\s+to\s+create\s+the\s+partition,\s+or\s+'quit'", re.IGNORECASE),
    ),
    PromptPattern(PromptKind.CONFIRMATION, "Type 'proceed' … or 'quit'", re.compile(r"Type\s+'proceed'")),
    PromptPattern(PromptKind.CONFIRMATION, "… type 'proceed', otherwise …", re.compile(r"type\s+'proceed'")),
    PromptPattern(
        PromptKind.CREDENTIAL,
        "Please enter … password …:",
        re.compile(r"Please\s+enter\b[^\n]*\bpassword\b[^\n]*:", re.IGNORECASE),
    ),
    PromptPattern(
        PromptKind.CREDENTIAL,
        "Please enter … cloning domain …:",
        re.compile(r"Please\s+enter\b[^\n]*\bcloning\s+domain\b[^\n]*:", re.IGNORECASE),
    ),
    PromptPattern(
        PromptKind.CREDENTIAL,
        "re-enter … to confirm:",
        re.compile(r"re-enter\b[^\n]*\bto\s+confirm\s*:", re.IGNORECASE),
    ),
)

#: A login that must change its password before lunash opens (§1.1: first login with the factory
#: password; Luna 7 prints the banner, a notice, then `New password:`). Never answered: the
#: operator logs in once by hand and sets the password the manager secret then holds.
PASSWORD_CHANGE_PATTERNS: Final = (
    # 7.2 prints the notice in a box of asterisks, wrapped between "your" and "password".
    re.compile(r"you\s+must\s+change\s+your[\s*]+password", re.IGNORECASE),
    re.compile(r"Changing\s+password\s+for\s+user", re.IGNORECASE),
    re.compile(
        r"(?:^|[\r\n])[^\S\r\n]*(?:\(current\)[^\r\n]*|New|Retype\s+new)\s+password\s*:[^\S\r\n]*\Z",
        re.IGNORECASE,
    ),
)

#: The same table split by kind, as flat pattern tuples for a stream reader.
CONFIRM_PROMPT_PATTERNS: Final = tuple(
    p.regex for p in INTERACTIVE_PROMPTS if p.kind is PromptKind.CONFIRMATION
)
PASSWORD_PROMPT_PATTERNS: Final = tuple(
    p.regex for p in INTERACTIVE_PROMPTS if p.kind is PromptKind.CREDENTIAL
)

# --------------------------------------------------------------------------------------------
# Known messages (§9.1, §9.2, §9.4, §7): a failure text that means the desired end state is
# already there (or, for reads, that the object is absent). Each applies to listed commands only:
# "client does not exist" is fine for `client delete` but a real failure for `client assignPartition`.


class Outcome(enum.Enum):
    ALREADY_ASSIGNED = "already assigned"
    ALREADY_INITIALIZED = "already initialized"
    ALREADY_REGISTERED = "already registered"
    NOT_ASSIGNED = "not assigned"
    NO_SUCH_CLIENT = "no such client"
    NO_SUCH_FILE = "no such file"


@dataclass(frozen=True)
class KnownMessage:
    outcome: Outcome
    regex: re.Pattern[str]
    commands: frozenset[str]


KNOWN_MESSAGES: Final[tuple[KnownMessage, ...]] = (
    KnownMessage(
        Outcome.ALREADY_ASSIGNED,
        re.compile(r"already\s+has\s+access", re.IGNORECASE),
        frozenset({"client assignPartition"}),
    ),
    # Registered by hostname/IP: the caller confirms with `client show` that it is its own client.
    KnownMessage(
        Outcome.ALREADY_REGISTERED,
        re.compile(r"has\s+already\s+been\s+registered", re.IGNORECASE),
        frozenset({"client register"}),
    ),
    # 7.x lunash initializes a partition only once (the vendor's command description) and
    # refuses an initialized one; the wording is not published, "already initialized" is assumed.
    # Not a success by itself: the caller confirms the partition is its own (label, state).
    KnownMessage(
        Outcome.ALREADY_INITIALIZED,
        re.compile(r"already\s+initiali[sz]ed", re.IGNORECASE),
        frozenset({"partition init"}),
    ),
    KnownMessage(
        Outcome.NOT_ASSIGNED,
        re.compile(r"Specified\s+partition\s+was\s+not\s+assigned\s+to\s+client", re.IGNORECASE),
        frozenset({"client revokePartition"}),
    ),
    KnownMessage(
        Outcome.NO_SUCH_CLIENT,
        re.compile(r"Specified\s+client\s+does\s+not\s+exist|RC_OBJECT_NOT_IN_LIST", re.IGNORECASE),
        frozenset({"client revokePartition", "client delete", "client show", "client fingerprint"}),
    ),
    # The wording is not in REFERENCE.md; "does not exist" is lunash's phrase for absent objects.
    KnownMessage(
        Outcome.NO_SUCH_FILE,
        re.compile(r"does\s+not\s+exist|No\s+such\s+file", re.IGNORECASE),
        frozenset({"my file delete"}),
    ),
)

# --------------------------------------------------------------------------------------------
# Commands: canonical names (as lunash prints them in `'<name>' successful.`) and their traits.

DEFAULT_TIMEOUT: Final = 30.0


@dataclass(frozen=True)
class CommandSpec:
    name: str
    #: Changes persistent appliance state (a no-op run sends none of these).
    mutating: bool
    #: Carries a secret on its line (password, cloning domain), in at least one of its forms.
    sensitive: bool
    #: Seconds to wait for the prompt after sending.
    timeout: float
    #: Destructive/confirming: always sent with `-force` so lunash never asks `proceed`.
    force: bool


def _specs(*specs: CommandSpec) -> Mapping[str, CommandSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


COMMANDS: Final[Mapping[str, CommandSpec]] = _specs(
    CommandSpec("hsm show", mutating=False, sensitive=False, timeout=DEFAULT_TIMEOUT, force=False),
    CommandSpec("hsm init", mutating=True, sensitive=True, timeout=300.0, force=True),
    CommandSpec("hsm login", mutating=False, sensitive=True, timeout=30.0, force=False),
    CommandSpec("hsm logout", mutating=False, sensitive=False, timeout=DEFAULT_TIMEOUT, force=False),
    CommandSpec("sysconf regenCert", mutating=True, sensitive=False, timeout=120.0, force=True),
    CommandSpec("ntls bind", mutating=True, sensitive=False, timeout=60.0, force=True),
    CommandSpec("partition create", mutating=True, sensitive=True, timeout=120.0, force=True),
    # 7.x: `partition create -partition <n> -force` (no password or domain; uninitialized).
    # 7.8.1 on: `partition init` (label, Partition SO password, domain; first time only) and
    # `partition init co` (the Crypto Officer's first password, with the Partition SO's).
    CommandSpec("partition init", mutating=True, sensitive=True, timeout=120.0, force=True),
    CommandSpec("partition init co", mutating=True, sensitive=True, timeout=60.0, force=True),
    CommandSpec("partition list", mutating=False, sensitive=False, timeout=DEFAULT_TIMEOUT, force=False),
    CommandSpec("partition delete", mutating=True, sensitive=False, timeout=120.0, force=True),
    CommandSpec("client register", mutating=True, sensitive=False, timeout=DEFAULT_TIMEOUT, force=False),
    CommandSpec(
        "client assignPartition", mutating=True, sensitive=False, timeout=DEFAULT_TIMEOUT, force=False
    ),
    CommandSpec(
        "client revokePartition", mutating=True, sensitive=False, timeout=DEFAULT_TIMEOUT, force=False
    ),
    CommandSpec("client list", mutating=False, sensitive=False, timeout=DEFAULT_TIMEOUT, force=False),
    CommandSpec("client show", mutating=False, sensitive=False, timeout=DEFAULT_TIMEOUT, force=False),
    CommandSpec("client delete", mutating=True, sensitive=False, timeout=DEFAULT_TIMEOUT, force=True),
    CommandSpec("client fingerprint", mutating=False, sensitive=False, timeout=DEFAULT_TIMEOUT, force=False),
    # Removes a file from the manager's home directory (the client certificate uploaded for
    # `client register`). Not in REFERENCE.md: this is the form of Thales' lunash reference,
    # `my file delete -file <name> [-force]`, with full option names (`-f` would be ambiguous).
    CommandSpec("my file delete", mutating=True, sensitive=False, timeout=DEFAULT_TIMEOUT, force=True),
    # 7.x: NTLS serves a regenerated certificate or a new binding only after this (§5-6).
    CommandSpec("service restart", mutating=True, sensitive=False, timeout=120.0, force=False),
)

FORCE_OPTION: Final = "-force"

#: Services `service restart` is built for.
RESTARTABLE_SERVICES: Final = frozenset({"ntls"})

#: `Error:` names of a rejected or locked-out Partition SO password (7.x `partition init co`,
#: PKCS#11 names as lunacm prints them; the lunash wording is not published). Never retry.
PARTITION_SO_FAILURE_CODES: Final = frozenset(
    {"CKR_PIN_INCORRECT", "CKR_PIN_LOCKED", "LUNA_RET_UM_PIN_INCORRECT"}
)

#: `ntls bind` devices (§6, 7.x list; 5.x uses eth0).
NTLS_DEVICES: Final = frozenset({"eth0", "eth1", "eth2", "eth3", "bond0", "bond1", "all"})

# --------------------------------------------------------------------------------------------
# Argument rules (§1.2): non-secret values use the AWS tool's safe term set and never look like
# an option; secrets are one printable-ASCII token that lunash cannot split or read as an option.

VALUE_RE: Final = re.compile(r"[A-Za-z0-9._-]+")
SECRET_CHARS: Final = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset("\"'\\")
MAX_VALUE_LENGTH: Final = 255
MAX_SECRET_LENGTH: Final = 255

# --------------------------------------------------------------------------------------------
# Output vocabulary.

# `hsm show` (§2): `<key>: <value>` lines; keys lower-cased with whitespace runs collapsed.
HSM_SHOW_FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "software version": "software_version",
        "hsm label": "label",
        "serial #": "serial",
        "firmware": "firmware",
        "hardware model": "model",  # 5.x
        "hsm model": "model",  # 6.x, 7.x
        "hsm admin login status": "admin_login_status",
        "hsm admin login attempts left": "attempts_left",
        "space in use (bytes)": "space_in_use",
        "number of partitions created": "partitions_created",  # 7.x
        "number of partitions allowed": "partitions_allowed",  # 7.x
    }
)
#: `Software Version:` values: `<major>.<minor>[.<patch>][-<build>]`, e.g. `5.4.9-2`, `7.8.5-20`.
SOFTWARE_VERSION_RE: Final = re.compile(
    r"^(?P<major>[0-9]+)\.(?P<minor>[0-9]+)(?:\.(?P<patch>[0-9]+))?(?:-(?P<build>[0-9]+))?$"
)
#: Software majors this project speaks: 5 and 6 share the Luna SA dialect, 7 is Luna Network HSM 7.
SOFTWARE_FAMILIES: Final = frozenset({5, 6, 7})
LUNA7_FAMILY: Final = 7
#: The first appliance software whose lunash has `partition init` / `partition init co` (7.x
#: before it: REST or a client's lunacm initializes partitions).
LUNASH_PARTITION_INIT_SINCE: Final = (7, 8, 1)
HSM_SHOW_REQUIRED: Final = ("serial", "admin_login_status", "attempts_left")
HSM_SHOW_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "serial": "Serial #",
        "admin_login_status": "HSM Admin login status",
        "attempts_left": "HSM Admin login attempts left",
    }
)
NO_LABEL_VALUES: Final = frozenset({"", "no label"})
LOGGED_IN_VALUES: Final[Mapping[str, bool]] = MappingProxyType({"logged in": True, "not logged in": False})
#: The zeroized marker. It decides only where lunash prints it as the value of the attempts-left
#: field; the same words in a label or a partition name are free text, never a state.
ZEROIZED_RE: Final = re.compile(r"HSM\s+IS\s+ZEROIZED", re.IGNORECASE)
ATTEMPTS_LEFT_RE: Final = re.compile(r"^(?P<n>[0-9]+)\b")
HSM_PARTITION_LINE_RE: Final = re.compile(
    r"^Partition\s*:\s*(?P<serial>[0-9]+)\s*,\s*Name\s*:\s*(?P<name>\S(?:.*\S)?)\s*$", re.IGNORECASE
)
FIPS_RE: Final = re.compile(r"The\s+HSM\s+is\s+(?P<not>NOT\s+)?in\s+FIPS", re.IGNORECASE)

# `partition list` (§8.2): rows after the `====` rule; layout chosen by the number of columns.
NO_PARTITIONS_RE: Final = re.compile(r"^There\s+are\s+no\s+partitions\.?$", re.IGNORECASE)
TABLE_RULE_RE: Final = re.compile(r"^[=\s-]*={3,}[=\s-]*$")
#: A line that begins like a partition row (a serial, then a name).
PARTITION_ROW_START_RE: Final = re.compile(r"^[0-9]+ \S")
PARTITION_LIST_LAYOUTS: Final[Mapping[int, tuple[str, ...]]] = MappingProxyType(
    {
        6: ("serial", "name", "objects", "total", "used", "free"),  # 5.x / 6.x
        7: ("serial", "name", "version", "objects", "total", "used", "free"),  # 7.x
    }
)

# `client list` (§9.3), `client show` (§9.4), `client fingerprint` (§7).
CLIENT_LIST_LINE_RE: Final = re.compile(
    r"^registered\s+client\s+(?P<number>[0-9]+)\s*:\s*(?P<name>\S(?:.*\S)?)\s*$", re.IGNORECASE
)
NO_CLIENTS_RE: Final = re.compile(r"^No\s+clients\s+are\s+registered\.?$", re.IGNORECASE)
CLIENT_SHOW_FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {"clientid": "name", "hostname": "hostname", "partitions": "partitions"}
)
CLIENT_SHOW_LABELS: Final[Mapping[str, str]] = MappingProxyType(
    {"name": "ClientID", "hostname": "Hostname", "partitions": "Partitions"}
)
NO_PARTITIONS_VALUE: Final = "<none>"
#: `Partitions:` as `"p1", "p2"`: quoted names (no quote inside) separated by commas.
QUOTED_NAMES_RE: Final = re.compile(r'"[^"]*"(?:\s*,\s*"[^"]*")*')
FINGERPRINT_RE: Final = re.compile(
    r"^Certificate\s+fingerprint\s*:\s*(?P<fp>[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+)\s*$", re.IGNORECASE
)
