"""Running the Luna client tools (``vtl``, ``lunacm``) on an ASG member (REFERENCE §10).

Every command is an argument list run without a shell, under a timeout, with stdin either closed or
the answers the tool asks for. No secret is ever an argument: an argument is readable by every
local user in ``/proc/<pid>/cmdline`` while the tool runs. The HA commands that need the partition
password (newGroup / addMember / createGroup) are run without ``-password``, so the tool prompts
for it (``Enter the password:``, REFERENCE §10.6) and reads it from stdin, followed by ``copy`` for
the "existing objects" question (REFERENCE §0.10). The password is masked (``********``) in any
output the tool echoes, and in every message.

A run fails when the exit status is non-zero, when any output line starts with ``Error:`` whatever
the exit status (REFERENCE §0.9: vtl's exit status is not trustworthy), or when lunacm's result
line is not ``Command Result : No Error``. The duplicate messages of REFERENCE §10.3/§10.6 mean the
work is already done and are success whatever else the output says.

The differences between client generations are data (:data:`GENERATIONS`): where the client is
installed and how the HA commands are spelled.

* ``5.1`` — ``/usr/lunasa``; ``vtl haAdmin -newGroup …`` (dash sub-commands).
* ``5.3`` — ``/usr/safenet/lunaclient`` 5.3 to 6.x; ``vtl haAdmin newGroup …`` (bare sub-commands).
* ``7`` — ``/usr/safenet/lunaclient`` 7.x and later (10.x); ``lunacm -c hagroup …``.

Partition serials are opaque digit strings taken from the group document: 5.x/6.x appliances
number partitions after the HSM serial, Luna Network HSM 7 appliances give them 13 digits unrelated
to it, and nothing here relates one to the other or assumes a length.

On a Luna 7 appliance the password the HA commands send is the Crypto Officer's. Luna 7 refuses
that login until the partition is finished: :func:`login_failure` names the PKCS#11 result
(``CKR_PIN_EXPIRED`` while the first password is still to be changed, policy 21;
``CKR_USER_PIN_NOT_INITIALIZED`` for a partition or Crypto Officer not initialized; ``CKR_PIN_LOCKED``
after too many failed logins) so the caller can say what to do.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from luna_ha.errors import ClientToolError

__all__ = [
    "DUPLICATE_MESSAGES",
    "GENERATIONS",
    "HA_VIRTUAL_SLOT",
    "HOST_PATTERN",
    "LABEL_PATTERN",
    "LOGIN_FAILURES",
    "MASK",
    "SERIAL_PATTERN",
    "ClientRelease",
    "ClientTools",
    "CompletedRun",
    "LunacmSlot",
    "ToolCommand",
    "ToolResult",
    "ToolRun",
    "VerifiedSlot",
    "build_add_member",
    "build_add_server",
    "build_delete_server",
    "build_enable_auto_recovery",
    "build_enable_ha_only",
    "build_list_servers",
    "build_list_slots",
    "build_new_group",
    "build_show_groups",
    "build_slot_list",
    "build_verify",
    "build_version",
    "detect_generation",
    "generation_named",
    "login_failure",
    "parse_group_number",
    "parse_ha_slot",
    "parse_list_servers",
    "parse_slot_list",
    "parse_verify",
    "parse_version",
    "subprocess_runner",
]

log = logging.getLogger("luna_ha.client")

MASK = "********"
DEFAULT_TIMEOUT = 120.0
COPY = "copy\n"
DEFAULT_RECOVERY_RETRY = 500  # Avi's value (REFERENCE §10.5)

DUPLICATE_MESSAGES = (
    "This server is already registered",
    "for the new group has already been used",
    "The member you specified is already part of an",
)
_ERROR_LINE = re.compile(r"^\s*Error:", re.MULTILINE)
_LUNACM_RESULT = re.compile(r"^\s*Command Result\s*:\s*(?P<result>.*?)\s*$", re.MULTILINE)
# What may stand as one argument: a host (IP, DNS name, bracketed or zoned IPv6), a serial, a label.
HOST_PATTERN = re.compile(r"[A-Za-z0-9\[][A-Za-z0-9_.:%\[\]-]*")
#: A partition serial: digits, any length (5.x: HSM serial + counter; 7.x: 13 digits of its own).
SERIAL_PATTERN = re.compile(r"[0-9]+")
LABEL_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")


# --- generations as data -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientRelease:
    """How one Luna client generation is installed and spells its HA commands.

    The HA argument templates follow the tool and its prefix (``vtl haAdmin`` or
    ``lunacm -c hagroup``); ``{label}``, ``{serial}``, ``{group}`` and ``{retry}`` are replaced
    whole-token. No template has a password: newGroup and addMember prompt for it.
    ``group_by_label`` says whether addMember names the group by label (lunacm) or by the number
    newGroup printed (vtl). ``recovery_key`` is where the setting the
    recovery command writes lives in Chrystoki.conf, and ``recovery_value`` the value it must have
    (None: any retry count other than 0).
    """

    name: str
    default_root: str
    ha_tool: str
    ha_prefix: tuple[str, ...]
    new_group: tuple[str, ...]
    add_member: tuple[str, ...]
    ha_only: tuple[str, ...]
    recovery: tuple[str, ...]
    show: tuple[str, ...]
    group_by_label: bool
    recovery_key: tuple[str, str]
    recovery_value: str | None

    def __str__(self) -> str:
        return self.name


_VTL_51 = ClientRelease(
    name="5.1",
    default_root="/usr/lunasa",
    ha_tool="vtl",
    ha_prefix=("haAdmin",),
    new_group=("-newGroup", "-serialNum", "{serial}", "-label", "{label}"),
    add_member=("-addMember", "-serialNum", "{serial}", "-group", "{group}"),
    ha_only=("-HAOnly", "-enable"),
    recovery=("-autoRecovery", "-retry", "{retry}"),
    show=("-show",),
    group_by_label=False,
    recovery_key=("HAConfiguration", "reconnAtt"),
    recovery_value=None,
)
_VTL_53 = ClientRelease(
    name="5.3",
    default_root="/usr/safenet/lunaclient",
    ha_tool="vtl",
    ha_prefix=("haAdmin",),
    new_group=("newGroup", "-serialNum", "{serial}", "-label", "{label}"),
    add_member=("addMember", "-group", "{group}", "-serialNum", "{serial}"),
    ha_only=("HAOnly", "-enable"),
    recovery=("autoRecovery", "-retry", "{retry}"),
    show=("show",),
    group_by_label=False,
    recovery_key=("HAConfiguration", "reconnAtt"),
    recovery_value=None,
)
_LUNACM_7 = ClientRelease(
    name="7",
    default_root="/usr/safenet/lunaclient",
    ha_tool="lunacm",
    ha_prefix=("-c", "hagroup"),
    new_group=("createGroup", "-label", "{label}", "-serialNumber", "{serial}"),
    add_member=("addMember", "-group", "{label}", "-serialNumber", "{serial}"),
    ha_only=("haonly", "-enable"),
    recovery=("recoveryMode", "-mode", "activeEnhanced"),
    show=("listGroups",),
    group_by_label=True,
    recovery_key=("VirtualToken", "VirtualTokenActiveRecovery"),
    recovery_value="activeEnhanced",
)

GENERATIONS: dict[str, ClientRelease] = {"5.1": _VTL_51, "5.3": _VTL_53, "7": _LUNACM_7}
_ALIASES = {"5": "5.1", "5.2": "5.3", "6": "5.3", "10": "7"}


def generation_named(name: str) -> ClientRelease:
    """``5.1``, ``5.3`` (also ``6``) or ``7`` (also ``10``)."""
    key = _ALIASES.get(name.strip(), name.strip())
    if key not in GENERATIONS:
        raise ClientToolError(f"unknown Luna client generation {name!r}: expected 5.1, 5.3, 6, 7 or 10")
    return GENERATIONS[key]


def _generation_of_version(major: int, minor: int) -> ClientRelease:
    if major < 5 or (major == 5 and minor < 3):
        return _VTL_51
    if major < 7:
        return _VTL_53
    return _LUNACM_7


# --- commands ------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class ToolCommand:
    """One tool invocation: ``tool`` (``vtl`` or ``lunacm``) with ``args``, never through a shell.

    ``secrets`` (the partition password) travel in ``stdin`` only, never in ``args``.
    """

    tool: str
    args: tuple[str, ...]
    name: str
    mutating: bool
    stdin: str | None = field(default=None, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        for secret in self.secrets:
            if any(secret in arg for arg in (self.tool, *self.args)):
                raise ValueError(f"{self.name}: a secret cannot be a command-line argument")
            if self.stdin is None or secret not in self.stdin:
                raise ValueError(f"{self.name}: a secret is given to the tool on stdin")

    @property
    def display(self) -> str:
        return " ".join([self.tool, *(MASK if arg in self.secrets else arg for arg in self.args)])

    def redact(self, text: str) -> str:
        """``text`` with every secret this command carries masked."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def __repr__(self) -> str:
        return f"ToolCommand({self.display!r}, mutating={self.mutating})"

    __str__ = __repr__


def _check_host(value: str, what: str) -> str:
    if not HOST_PATTERN.fullmatch(value):
        raise ClientToolError(f"invalid {what} {value!r} for a client tool argument")
    return value


def _check_serial(value: str) -> str:
    if not SERIAL_PATTERN.fullmatch(value):
        raise ClientToolError(f"invalid partition serial {value!r}: digits only")
    return value


def _check_label(value: str) -> str:
    if not LABEL_PATTERN.fullmatch(value):
        raise ClientToolError(f"invalid HA group label {value!r}: expected [A-Za-z][A-Za-z0-9_.-]{{0,31}}")
    return value


def _check_password(password: str) -> str:
    # Never echo the value: say only what is wrong with it.
    if not password:
        raise ClientToolError("the partition password is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        # A line break would end the answer to the password prompt early and answer the next one.
        raise ClientToolError(
            "the partition password cannot be typed at the client tool's prompt (control characters)"
        )
    return password


def _fill(template: tuple[str, ...], values: Mapping[str, str]) -> tuple[str, ...]:
    out = []
    for token in template:
        if token.startswith("{") and token.endswith("}"):
            out.append(values[token[1:-1]])
        else:
            out.append(token)
    return tuple(out)


def _ha_command(
    generation: ClientRelease,
    template: tuple[str, ...],
    *,
    mutating: bool,
    password: str | None = None,
    **values: str,
) -> ToolCommand:
    """With ``password``: the tool is left to prompt for it, and stdin answers the prompt, then
    the existing-objects question (``copy``)."""
    args = (*generation.ha_prefix, *_fill(template, values))
    sub = template[0].lstrip("-")
    prefix = "haAdmin" if generation.ha_tool == "vtl" else "hagroup"
    return ToolCommand(
        tool=generation.ha_tool,
        args=args,
        name=f"{prefix} {sub}",
        mutating=mutating,
        stdin=None if password is None else f"{password}\n{COPY}",
        secrets=() if password is None else (password,),
    )


def build_version() -> ToolCommand:
    return ToolCommand("vtl", ("ver",), "ver", mutating=False)


def build_add_server(host: str, cert_file: Path) -> ToolCommand:
    return ToolCommand(
        "vtl", ("addServer", "-n", _check_host(host, "host"), "-c", str(cert_file)), "addServer", True
    )


def build_delete_server(host: str) -> ToolCommand:
    return ToolCommand("vtl", ("deleteServer", "-n", _check_host(host, "host")), "deleteServer", True)


def build_list_servers() -> ToolCommand:
    return ToolCommand("vtl", ("listServers",), "listServers", mutating=False)


def build_verify() -> ToolCommand:
    return ToolCommand("vtl", ("verify",), "verify", mutating=False)


def build_list_slots() -> ToolCommand:
    return ToolCommand("vtl", ("listSlots",), "listSlots", mutating=False)


def build_slot_list() -> ToolCommand:
    """``lunacm -c slot list``: the Luna 7 client's view of every slot (read-only)."""
    return ToolCommand("lunacm", ("-c", "slot", "list"), "slot list", mutating=False)


def build_new_group(generation: ClientRelease, label: str, serial: str, password: str) -> ToolCommand:
    return _ha_command(
        generation,
        generation.new_group,
        mutating=True,
        password=_check_password(password),
        label=_check_label(label),
        serial=_check_serial(serial),
    )


def build_add_member(
    generation: ClientRelease, label: str, group_number: str, serial: str, password: str
) -> ToolCommand:
    """``group_number`` is used by vtl (``-group <number>``), ``label`` by lunacm (``-group <label>``)."""
    return _ha_command(
        generation,
        generation.add_member,
        mutating=True,
        password=_check_password(password),
        label=_check_label(label),
        group="" if generation.group_by_label else _check_serial(group_number),
        serial=_check_serial(serial),
    )


def build_enable_ha_only(generation: ClientRelease) -> ToolCommand:
    return _ha_command(generation, generation.ha_only, mutating=True)


def build_enable_auto_recovery(generation: ClientRelease, retry: int = DEFAULT_RECOVERY_RETRY) -> ToolCommand:
    return _ha_command(generation, generation.recovery, mutating=True, retry=str(int(retry)))


def build_show_groups(generation: ClientRelease) -> ToolCommand:
    """``vtl haAdmin show`` / ``lunacm -c hagroup listGroups -password ""`` (CredHub's way of not being
    asked for a password, REFERENCE §10.6)."""
    template = generation.show + (("-password", "") if generation.ha_tool == "lunacm" else ())
    return _ha_command(generation, template, mutating=False)


# --- parsing -------------------------------------------------------------------------------------


def parse_version(output: str) -> tuple[int, int] | None:
    """``vtl (64-bit) v7.4.0-226. Copyright …`` / ``LunaCM v7.4.0 …`` -> ``(7, 4)``."""
    m = re.search(r"\bv?(\d+)\.(\d+)(?:\.\d+)?(?:-\d+)?\b", output)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_list_servers(output: str) -> list[str]:
    """``Server: <host>  HTL required: <yes|no>`` lines -> hosts (REFERENCE §10.3)."""
    return re.findall(r"^\s*Server:\s*(\S+)", output, re.MULTILINE)


@dataclass(frozen=True)
class VerifiedSlot:
    """One row of ``vtl verify``. ``label`` is the partition's label, empty while a Luna 7
    partition is not initialized (the label is set by its initialization)."""

    slot: str
    serial: str
    label: str


def parse_verify(output: str) -> list[VerifiedSlot]:
    """The table of ``vtl verify`` (REFERENCE §10.4): the rows after the ``====`` line.

    5.x/6.x clients left-align the serial under ``Serial #`` and count slots from 1; the 10.x client
    seen with a Luna 7 appliance counts from 0 and right-aligns a 13-digit serial. Both read the
    same: slot, serial, then the label (possibly blank).
    """
    rows: list[VerifiedSlot] = []
    in_table = False
    for line in output.splitlines():
        if re.match(r"^\s*=+\s+=+", line):
            in_table = True
            continue
        if not in_table:
            continue
        m = re.match(r"^\s*(\d+)\s+(\d+)(?:\s+(.*?))?\s*$", line)
        if m:
            rows.append(VerifiedSlot(m.group(1), m.group(2), m.group(3) or ""))
        elif line.strip():
            in_table = False
    return rows


HA_VIRTUAL_SLOT = "HA Virtual Card Slot"
_SLOT_FIELD = re.compile(r"^\s*(?P<key>[A-Za-z][A-Za-z0-9 #/]*?)\s*->\s*(?P<value>.*?)\s*$")


@dataclass(frozen=True)
class LunacmSlot:
    """One slot of ``lunacm slot list`` (Luna client 7+), its ``Key -> value`` lines.

    A partition on a Luna 7 appliance shows ``Luna User Partition With SO …`` as its configuration
    (it has its own Partition SO) and an empty label until it is initialized; an HA group shows
    as an ``HA Virtual Card Slot`` whose serial is the group's.
    """

    slot_id: int
    label: str
    serial: str
    model: str = ""
    firmware: str = ""
    configuration: str = ""
    description: str = ""

    @property
    def ha_virtual(self) -> bool:
        return self.description == HA_VIRTUAL_SLOT

    @property
    def has_partition_so(self) -> bool:
        """A Luna 7 style partition with its own Partition SO and Crypto Officer."""
        return "with so" in self.configuration.lower()

    @property
    def initialized(self) -> bool:
        """Whether the partition has been initialized (it has a label)."""
        return bool(self.label)


_SLOT_KEYS = {
    "label": "label",
    "serial number": "serial",
    "model": "model",
    "firmware version": "firmware",
    "configuration": "configuration",
    "slot description": "description",
}


def parse_slot_list(output: str) -> list[LunacmSlot]:
    """The slots of ``lunacm slot list``: one block of ``Key -> value`` lines per slot, each
    starting at ``Slot Id ->``. Keys it does not know (``Tunnel Slot Id``, ``Bootloader Version``,
    ``FM HW Status``…) are skipped; the ``Current Slot Id:`` line and the result line too."""
    slots: list[LunacmSlot] = []
    current: dict[str, str] | None = None

    def close() -> None:
        if current is not None and current.get("slot_id", "").isdigit():
            slots.append(
                LunacmSlot(
                    slot_id=int(current["slot_id"]),
                    label=current.get("label", ""),
                    serial=current.get("serial", ""),
                    model=current.get("model", ""),
                    firmware=current.get("firmware", ""),
                    configuration=current.get("configuration", ""),
                    description=current.get("description", ""),
                )
            )

    for line in output.splitlines():
        m = _SLOT_FIELD.match(line)
        if m is None:
            continue
        key = " ".join(m.group("key").lower().split())
        if key == "slot id":
            close()
            current = {"slot_id": m.group("value")}
        elif current is not None and key in _SLOT_KEYS:
            current[_SLOT_KEYS[key]] = m.group("value")
    close()
    return slots


#: PKCS#11 results of a Crypto Officer login (what an HA command does first on each member) that
#: mean the partition is not ready for its members, and what the member's operator should do.
LOGIN_FAILURES: dict[str, str] = {
    "CKR_PIN_EXPIRED": (
        "its Crypto Officer's password is still the initial one and must be changed first (Luna 7 policy 21)"
    ),
    "CKR_USER_PIN_NOT_INITIALIZED": "the partition or its Crypto Officer is not initialized",
    "CKR_PIN_LOCKED": "its Crypto Officer is locked out after too many failed logins",
}
_CKR = re.compile(r"\bCKR_[A-Z0-9_]+")


def login_failure(output: str) -> str | None:
    """The first result of :data:`LOGIN_FAILURES` named in ``output`` (an HA command's failure)."""
    for m in _CKR.finditer(output):
        if m.group(0) in LOGIN_FAILURES:
            return m.group(0)
    return None


def parse_ha_slot(output: str, group_serial: str) -> int | None:
    """The slot of the ``HA Virtual Card Slot`` row showing ``group_serial`` in ``vtl listSlots``."""
    for line in output.splitlines():
        if "HA Virtual Card Slot" in line and group_serial in line.split():
            m = re.match(r"^\s*(\d+)", line)
            if m:
                return int(m.group(1))
    return None


def parse_group_number(output: str) -> str | None:
    """``HA Group Number: <n>`` from newGroup / createGroup output."""
    m = re.search(r"HA Group Number\s*:\s*(\d+)", output)
    return m.group(1) if m else None


# --- running -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletedRun:
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], "str | None", Mapping[str, str], float], CompletedRun]


def subprocess_runner(
    argv: Sequence[str], stdin: str | None, env: Mapping[str, str], timeout: float
) -> CompletedRun:
    """Run ``argv`` (no shell); raises ``subprocess.TimeoutExpired`` or ``OSError``."""
    done = subprocess.run(
        list(argv),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        errors="replace",
        env=dict(env),
        timeout=timeout,
        check=False,
    )
    return CompletedRun(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class ToolResult:
    """A finished command: its display, exit status and output (secrets masked)."""

    command: str
    returncode: int
    output: str
    already_done: bool = False


@dataclass(frozen=True)
class ToolRun:
    """A journal entry: what ran (masked), whether it could change anything, and how it ended."""

    command: str
    name: str
    mutating: bool
    returncode: int | None
    ok: bool


def _failure(output: str, tool: str) -> str | None:
    for line in output.splitlines():
        if _ERROR_LINE.match(line):
            return line.strip()
    if tool == "lunacm":
        results = _LUNACM_RESULT.findall(output)
        if results and results[-1] != "No Error":
            return f"Command Result : {results[-1]}"
    return None


def _summary(output: str, limit: int = 3) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return " | ".join(lines[-limit:]) if lines else "no output"


class ClientTools:
    """The Luna client tools of one installation, for one run. ``journal`` records every command."""

    def __init__(
        self,
        root: Path,
        generation: ClientRelease | str,
        *,
        config_path: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        runner: Runner | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.generation = (
            generation if isinstance(generation, ClientRelease) else generation_named(generation)
        )
        self.config_path = config_path
        self.timeout = timeout
        self._runner = runner or subprocess_runner
        self._env = dict(os.environ if env is None else env)
        if config_path is not None:
            # The real client reads $ChrystokiConfigurationPath/Chrystoki.conf (REFERENCE §10.1).
            self._env["ChrystokiConfigurationPath"] = str(Path(config_path).parent)
        self.journal: list[ToolRun] = []

    def __repr__(self) -> str:
        return f"ClientTools(root={str(self.root)!r}, generation={self.generation.name!r})"

    @property
    def mutating_commands(self) -> list[str]:
        return [run.command for run in self.journal if run.mutating]

    def executable(self, tool: str) -> Path:
        for candidate in (self.root / "bin" / tool, self.root / "bin" / "64" / tool):
            if candidate.exists():
                return candidate
        return self.root / "bin" / tool

    def run(self, command: ToolCommand, *, check: bool = True) -> ToolResult:
        """Run ``command``; with ``check`` a failure raises :class:`ClientToolError` (secrets masked)."""
        executable = self.executable(command.tool)
        display = command.display
        log.debug("running %s", display)
        problem: str | None = None
        try:
            done = self._runner([str(executable), *command.args], command.stdin, self._env, self.timeout)
        except subprocess.TimeoutExpired:
            problem = f"{display}: no answer within {self.timeout:g} s (killed)"
        except FileNotFoundError:
            problem = (
                f"{display}: {executable} not found (is the Luna client installed there? see --luna-root)"
            )
        except OSError as exc:
            problem = f"{display}: cannot run {executable}: {exc.strerror or type(exc).__name__}"
        if problem is not None:
            self.journal.append(ToolRun(display, command.name, command.mutating, None, False))
            raise ClientToolError(command.redact(problem))
        output = command.redact(done.stdout + ("\n" + done.stderr if done.stderr else ""))
        already = any(message in output for message in DUPLICATE_MESSAGES)
        failure = None
        if not already:
            failure = _failure(output, command.tool)
            if failure is None and done.returncode != 0:
                failure = _summary(output)
        self.journal.append(
            ToolRun(display, command.name, command.mutating, done.returncode, failure is None)
        )
        if failure is not None and check:
            raise ClientToolError(f"{display} failed (exit status {done.returncode}): {failure}")
        return ToolResult(display, done.returncode, output, already)

    # --- the commands the bootstrap uses -------------------------------------------------------

    def version(self) -> tuple[int, int] | None:
        result = self.run(build_version(), check=False)
        return parse_version(result.output)

    def list_servers(self) -> list[str]:
        result = self.run(build_list_servers(), check=False)
        if (
            _failure(result.output, "vtl") is not None
            and "no registered servers" not in result.output.lower()
        ):
            raise ClientToolError(f"{result.command} failed: {_failure(result.output, 'vtl')}")
        return parse_list_servers(result.output)

    def add_server(self, host: str, cert_file: Path) -> ToolResult:
        return self.run(build_add_server(host, cert_file))

    def delete_server(self, host: str) -> ToolResult:
        return self.run(build_delete_server(host))

    def verify(self) -> list[VerifiedSlot]:
        return parse_verify(self.run(build_verify()).output)

    def list_slots(self) -> str:
        return self.run(build_list_slots()).output

    def slot_list(self) -> list[LunacmSlot]:
        """``lunacm -c slot list``, parsed (Luna client 7+)."""
        return parse_slot_list(self.run(build_slot_list()).output)

    def new_group(self, label: str, serial: str, password: str) -> ToolResult:
        return self.run(build_new_group(self.generation, label, serial, password))

    def add_member(self, label: str, group_number: str, serial: str, password: str) -> ToolResult:
        return self.run(build_add_member(self.generation, label, group_number, serial, password))

    def enable_ha_only(self) -> ToolResult:
        return self.run(build_enable_ha_only(self.generation))

    def enable_auto_recovery(self, retry: int = DEFAULT_RECOVERY_RETRY) -> ToolResult:
        return self.run(build_enable_auto_recovery(self.generation, retry))

    def show_groups(self) -> str:
        return self.run(build_show_groups(self.generation)).output


def detect_generation(
    root: Path, *, runner: Runner | None = None, timeout: float = 30.0, env: Mapping[str, str] | None = None
) -> ClientRelease:
    """The client generation installed at ``root`` (REFERENCE §10.1).

    ``…/lunasa`` is the 5.1 client. Under any other root (``/usr/safenet/lunaclient``) the version
    comes from ``vtl ver``, then from ``lunacm -v`` when ``bin/lunacm`` exists: 5.0-5.2 -> 5.1,
    5.3-6.x -> 5.3, 7 and later -> 7. Undecidable: a :class:`ClientToolError` asking for
    ``--client-generation``.
    """
    root = Path(root)
    if root.name == "lunasa":
        return _VTL_51
    probe = ClientTools(root, _VTL_53, runner=runner, timeout=timeout, env=env)
    commands = [build_version()]
    if probe.executable("lunacm").exists():
        commands.append(ToolCommand("lunacm", ("-v",), "lunacm -v", mutating=False, stdin="exit\n"))
    for command in commands:
        try:
            version = parse_version(probe.run(command, check=False).output)
        except ClientToolError:
            continue
        if version is not None:
            return _generation_of_version(*version)
    raise ClientToolError(
        f"cannot tell the Luna client generation installed at {root} (no version from vtl ver or lunacm -v); "
        "pass --client-generation 5.1, 5.3 or 7"
    )
