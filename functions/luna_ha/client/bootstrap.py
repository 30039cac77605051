"""The ASG-member bootstrap (DESIGN §4): from the group's SSM parameters to a working HA slot.

Order of work, each step skipped when it is already in place:

1. Read every parameter under the path (one paginated ``GetParametersByPath``, recursive,
   decrypted) and check all of it: the group document, the client's current generation, its
   certificate and key, every member's server certificate. Read the Chrystoki.conf (and the
   ``java.security`` file if one is named) and ask ``vtl listServers`` what is registered. A
   missing or malformed parameter raises a :class:`BootstrapParameterError` naming it here,
   before anything is written. The partition password is read (Secrets Manager) here too, and
   only when an HA command will need it.
2. Client certificate and key to ``<root>/cert/client/<gen>.pem`` (0644) and ``<gen>Key.pem``
   (0600); ``ClientCertFile`` / ``ClientPrivKeyFile`` in the ``LunaSA Client`` section.
3. Each member's ``server.pem`` to ``<root>/cert/server/<host>.pem`` and ``vtl addServer`` (after
   ``vtl deleteServer`` when the server is registered with a certificate that is no longer the
   published one). ``<host>`` is written as :func:`luna_ha.layout.host_segment` spells it, so an
   IPv6 address or an odd name is still one safe file name.
4. ``vtl verify`` must list every member's partition serial (read-only), each with a label: a Luna 7
   partition has none until it is initialized, and a :class:`PartitionNotReady` says so before
   any HA command.
5. HA group ``<label>`` from the members' serials in order: the first one creates it, the others
   are added. A group of that label whose first member differs, or that holds a serial that is
   no longer a member, is taken out of Chrystoki.conf and built again (the group exists only in
   that file, REFERENCE §10.9). Then HA-only and auto-recovery. If creating the group or adding a
   member fails, Chrystoki.conf is put back as it was before this step, so no half-built group
   is left; a Crypto Officer login refused because the provider has not finished the partition
   (Luna 7: ``CKR_PIN_EXPIRED``, ``CKR_USER_PIN_NOT_INITIALIZED``) is a :class:`PartitionNotReady`.

Members are mapped by the partition serials the group document publishes, whatever their length:
a Luna 7 partition serial (13 digits) has nothing in common with its HSM's serial.
6. The HA slot from ``vtl listSlots`` (read-only); the env file; the LunaProvider in
   ``java.security``.

Every file is compared first and written only when its bytes differ, atomically (temporary file in
the same directory, fsync, rename; an existing file keeps its mode and owner, except the key and
certificate files, which get 0600 and 0644). So a re-run with nothing changed writes no file and
runs no mutating tool command. No secret reaches a message, a log line or a file other than the
key file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luna_ha.client.chrystoki import (
    HA_CONFIGURATION,
    LUNASA_CLIENT,
    ChrystokiConf,
    find_ha_group,
    remove_ha_group,
)
from luna_ha.client.tools import (
    DEFAULT_RECOVERY_RETRY,
    HOST_PATTERN,
    LABEL_PATTERN,
    LOGIN_FAILURES,
    SERIAL_PATTERN,
    ClientTools,
    ToolResult,
    login_failure,
    parse_group_number,
    parse_ha_slot,
)
from luna_ha.errors import ClientToolError, PartitionNotReady, StoreError
from luna_ha.layout import (
    GroupDocument,
    Member,
    Parameter,
    check_path,
    client_cert_name,
    client_current_name,
    client_key_name,
    group_name,
    host_segment,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
    from mypy_boto3_ssm.client import SSMClient

__all__ = [
    "LUNA_PROVIDER",
    "BootstrapInputs",
    "BootstrapParameterError",
    "BootstrapReport",
    "MalformedParameter",
    "MissingParameter",
    "PartitionNotReady",
    "add_luna_provider",
    "bootstrap",
    "build_env_file",
    "load_inputs",
    "write_atomic",
]

log = logging.getLogger("luna_ha.client")

LUNA_PROVIDER = "com.safenetinc.luna.provider.LunaProvider"
_GENERATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_CERT = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)
_KEY = re.compile(
    r"-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----.+-----END (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----",
    re.DOTALL,
)
_PROVIDER_LINE = re.compile(r"^\s*security\.provider\.(\d+)\s*[=:]\s*(\S*)")


# --- errors --------------------------------------------------------------------------------------


class BootstrapParameterError(StoreError):
    """A published parameter the bootstrap needs is missing or unusable. ``parameter`` is its name."""

    def __init__(self, parameter: str, problem: str) -> None:
        self.parameter = parameter
        self.problem = problem
        super().__init__(f"Parameter {parameter}: {problem}")


class MissingParameter(BootstrapParameterError):
    """The parameter does not exist (or is not readable with this role)."""

    def __init__(self, parameter: str, problem: str = "is missing") -> None:
        super().__init__(parameter, problem)


class MalformedParameter(BootstrapParameterError):
    """The parameter exists but its value is not what the layout says it holds."""


# --- inputs (pure) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapInputs:
    """Everything the bootstrap needs from SSM, checked. The key never shows in a repr."""

    path: str
    document: GroupDocument
    client: str
    generation: str
    cert_pem: str
    key_pem: str = field(repr=False)
    server_certs: tuple[tuple[Member, str], ...] = ()

    @property
    def serials(self) -> list[str]:
        return [m.serial for m in self.document.members]


def _published_clients(parameters: Mapping[str, Parameter], path: str, document: GroupDocument) -> list[str]:
    names = set(document.clients)
    prefix = f"{path}/clients/"
    for name in parameters:
        if name.startswith(prefix) and name.endswith("/current") and name.count("/") == prefix.count("/") + 1:
            names.add(name[len(prefix) : -len("/current")])
    return sorted(names)


def _value(parameters: Mapping[str, Parameter], name: str) -> Parameter:
    parameter = parameters.get(name)
    if parameter is None:
        raise MissingParameter(name)
    if not parameter.value.strip():
        raise MalformedParameter(name, "is empty")
    return parameter


def load_inputs(parameters: Mapping[str, Parameter], path: str, client: str | None) -> BootstrapInputs:
    """Check what :meth:`ParameterStore.read` returned for ``path``; pick the client.

    Without ``client`` the only published client is used. Errors name the parameter and never
    quote a key.
    """
    group_parameter = _value(parameters, group_name(path))
    try:
        document = GroupDocument.from_json(group_parameter.value)
    except ValueError as exc:
        raise MalformedParameter(group_parameter.name, str(exc)) from None
    where = group_parameter.name
    if not LABEL_PATTERN.fullmatch(document.label):
        raise MalformedParameter(where, f"label {document.label!r} is not a valid HA group label")
    if not document.members:
        raise MalformedParameter(where, "lists no members")
    if not document.partition_secret_arn.strip():
        raise MalformedParameter(where, "has an empty partition_secret_arn")
    seen: set[str] = set()
    for index, member in enumerate(document.members):
        if not SERIAL_PATTERN.fullmatch(member.serial):
            raise MalformedParameter(
                where, f"members[{index}].serial {member.serial!r} is not a partition serial"
            )
        if not HOST_PATTERN.fullmatch(member.host):
            raise MalformedParameter(
                where, f"members[{index}].host {member.host!r} is not a host name or address"
            )
        if member.serial in seen:
            raise MalformedParameter(where, f"members[{index}].serial {member.serial} is listed twice")
        seen.add(member.serial)

    if client is None:
        published = _published_clients(parameters, path, document)
        if not published:
            raise MissingParameter(f"{path}/clients/<name>/current", "no client is published under this path")
        if len(published) > 1:
            raise BootstrapParameterError(
                f"{path}/clients",
                f"{len(published)} clients are published ({', '.join(published)}): pass --client",
            )
        client = published[0]
    try:
        current_name = client_current_name(path, client)
    except ValueError:
        raise BootstrapParameterError(f"{path}/clients/{client}", "is not a valid client name") from None
    generation = _value(parameters, current_name).value.strip()
    if not _GENERATION.fullmatch(generation) or generation == "current":
        raise MalformedParameter(current_name, f"{generation!r} is not a generation name")
    cert_name = client_cert_name(path, client, generation)
    key_name = client_key_name(path, client, generation)
    cert = _value(parameters, cert_name)
    if not _CERT.search(cert.value):
        raise MalformedParameter(cert_name, "is not a PEM certificate")
    key = _value(parameters, key_name)
    if not _KEY.search(key.value):
        raise MalformedParameter(key_name, "is not a PEM private key")

    servers = []
    for member in document.members:
        cert_parameter = _value(parameters, member.server_cert_parameter)
        if not _CERT.search(cert_parameter.value):
            raise MalformedParameter(member.server_cert_parameter, "is not a PEM certificate")
        servers.append((member, cert_parameter.value))
    return BootstrapInputs(
        path=path,
        document=document,
        client=client,
        generation=generation,
        cert_pem=cert.value,
        key_pem=key.value,
        server_certs=tuple(servers),
    )


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _cert_bodies(text: str) -> set[str]:
    return {"".join(m.group(1).split()) for m in _CERT.finditer(text)}


def build_env_file(label: str, serial: str, slot: int | None, generation: str) -> str:
    """The env file for applications (``KEY=value`` lines; sourceable, and a systemd EnvironmentFile)."""
    lines = [
        "# Written by luna-ha client bootstrap; re-run it rather than editing this file.",
        f"LUNA_HA_GROUP_LABEL={label}",
        f"LUNA_HA_GROUP_SERIAL={serial}",
    ]
    if slot is not None:
        lines.append(f"LUNA_HA_SLOT={slot}")
    lines.append(f"LUNA_HA_CLIENT_GENERATION={generation}")
    return "\n".join(lines) + "\n"


def add_luna_provider(text: str) -> str | None:
    """``text`` (a java.security file) with the LunaProvider registered; None when it already is.

    The new ``security.provider.<N>`` line takes the next number after the highest one and goes
    right after the last provider line (at the end when there is none).
    """
    lines = text.splitlines(keepends=True)
    numbers = []
    last = -1
    for index, line in enumerate(lines):
        m = _PROVIDER_LINE.match(line)
        if m:
            if m.group(2) == LUNA_PROVIDER:
                return None
            numbers.append(int(m.group(1)))
            last = index
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    entry = f"security.provider.{max(numbers, default=0) + 1}={LUNA_PROVIDER}{newline}"
    where = last + 1 if last >= 0 else len(lines)
    if where > 0 and not lines[where - 1].endswith("\n"):
        lines[where - 1] += newline
    lines.insert(where, entry)
    return "".join(lines)


# --- files ---------------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, fsync and rename.

    The temporary file has ``mode`` before a byte is written; an existing file's owner is kept
    when this process may set it. A symbolic link is followed (``java.security`` often is one): its
    target is replaced, the link stays.
    """
    if path.is_symlink():
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        previous: os.stat_result | None = path.stat()
    except FileNotFoundError:
        previous = None
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        if previous is not None and (previous.st_uid, previous.st_gid) != (os.geteuid(), os.getegid()):
            with contextlib.suppress(PermissionError):
                os.fchown(fd, previous.st_uid, previous.st_gid)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


# --- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapReport:
    """What a bootstrap found and did. ``changes`` is empty when nothing had to change."""

    parameter_path: str
    client: str
    generation: str
    client_generation: str
    group_label: str
    group_serial: str
    slot: int | None
    changes: tuple[str, ...]
    files_written: tuple[str, ...]
    commands: tuple[str, ...]
    mutating_commands: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)


class _Run:
    def __init__(self, tools: ClientTools) -> None:
        self.tools = tools
        self.changes: list[str] = []
        self.files: list[str] = []
        self.warnings: list[str] = []

    def change(self, text: str) -> None:
        log.info("%s", text)
        self.changes.append(text)

    def converge_file(self, path: Path, data: bytes, mode: int | None, what: str) -> bool:
        """Write ``path`` only if its bytes differ; ``mode`` None: keep the mode (new files 0644)."""
        current = _read_bytes(path)
        if current == data:
            if mode is not None and path.stat().st_mode & 0o777 != mode:
                path.chmod(mode)
                self.change(f"set mode {mode:04o} on {what} {path}")
                return True
            return False
        keep = path.stat().st_mode & 0o777 if current is not None else 0o644
        write_atomic(path, data, keep if mode is None else mode)
        self.files.append(str(path))
        self.change(f"{'wrote' if current is None else 'updated'} {what} {path}")
        return True

    def read_conf(self, path: Path) -> ChrystokiConf:
        raw = _read_bytes(path)
        if raw is None:
            raise ClientToolError(f"Chrystoki.conf not found at {path} (see --config)")
        return ChrystokiConf(raw.decode("utf-8", errors="surrogateescape"))

    def write_conf(self, path: Path, conf: ChrystokiConf, what: str) -> None:
        data = conf.render().encode("utf-8", errors="surrogateescape")
        if self.converge_file(path, data, None, "Chrystoki.conf") and what:
            self.changes[-1] += f" ({what})"


def _recovery_enabled(conf: ChrystokiConf, tools: ClientTools) -> bool:
    section, key = tools.generation.recovery_key
    value = conf.get(section, key)
    if tools.generation.recovery_value is not None:
        return (value or "").lower() == tools.generation.recovery_value.lower()
    try:
        return value is not None and int(value) != 0
    except ValueError:
        return False


#: What a member's operator does about a partition the provider has not finished.
UNFINISHED_ADVICE = (
    "the provider has not finished this partition; re-run the stack update (the Luna HA resource "
    "initializes the partition and its Crypto Officer and changes the Crypto Officer's first "
    "password), then run this bootstrap again"
)
_LEFT_AS_IT_WAS = "the HA group is left as it was before this run"


def _not_ready(member: Member, reason: str) -> PartitionNotReady:
    if reason == "no label":
        what = "is not initialized (vtl verify lists it without a label)"
        advice = UNFINISHED_ADVICE
    else:
        what = f"refused the Crypto Officer login ({reason}): {LOGIN_FAILURES[reason]}"
        advice = (
            "its Crypto Officer password must be reset on the appliance by the Partition SO, and the "
            "partition secret must hold that password"
            if reason == "CKR_PIN_LOCKED"
            else UNFINISHED_ADVICE
        )
    return PartitionNotReady(member.host, member.serial, reason, f"{what}; {advice}; {_LEFT_AS_IT_WAS}")


def _wrong_password(member: Member) -> ClientToolError:
    """CKR_PIN_INCORRECT: the secret is wrong, or (Luna 7) the Crypto Officer still has the initial
    password the provider set, which members never have."""
    return ClientToolError(
        f"Partition {member.serial} on {member.host} refused the login (CKR_PIN_INCORRECT): the partition "
        "secret's password is not the one members log in with (on a Luna 7 appliance, the Crypto "
        "Officer's). If the provider has not finished the partition, its Crypto Officer still has "
        "its initial password: re-run the stack update; otherwise correct the partition secret. Each "
        "refused login uses up one of the partition's login attempts: do not retry in a loop; "
        f"{_LEFT_AS_IT_WAS}"
    )


def _group_is_stale(conf: ChrystokiConf, label: str, serials: list[str]) -> bool:
    group = find_ha_group(conf, label)
    if group is None:
        return False
    return not group.members or group.members[0] != serials[0] or not set(group.members) <= set(serials)


def _ha_needs_password(conf: ChrystokiConf, label: str, serials: list[str]) -> bool:
    group = find_ha_group(conf, label)
    return group is None or _group_is_stale(conf, label, serials) or not set(serials) <= set(group.members)


def _build_group(
    run: _Run,
    tools: ClientTools,
    config_path: Path,
    document: GroupDocument,
    partition_password: Callable[[], str],
) -> None:
    """Create the HA group or add the members it lacks, logging in to each member as the tools do."""
    label, members = document.label, document.members
    serials = [m.serial for m in members]

    def as_member(member: Member, call: Callable[..., ToolResult], *args: str) -> ToolResult:
        try:
            return call(*args)
        except ClientToolError as exc:
            reason = login_failure(str(exc))
            if reason is not None:
                raise _not_ready(member, reason) from exc
            if "CKR_PIN_INCORRECT" in str(exc):
                raise _wrong_password(member) from exc
            raise

    conf = run.read_conf(config_path)
    if _group_is_stale(conf, label, serials):
        old = find_ha_group(conf, label)
        remove_ha_group(conf, label)
        run.write_conf(
            config_path, conf, f"HA group {label} with members {','.join(old.members if old else ())} removed"
        )
    group = find_ha_group(conf, label)
    number = group.serial if group is not None else ""
    if group is None:
        result = as_member(members[0], tools.new_group, label, serials[0], partition_password())
        run.change(f"created HA group {label} with {serials[0]}")
        number = parse_group_number(result.output) or ""
        conf = run.read_conf(config_path)
        group = find_ha_group(conf, label)
        if group is None:
            raise ClientToolError(f"HA group {label} is not in {config_path} after creating it")
        number = number or group.serial
    for member in members[1:]:
        if member.serial in group.members:
            continue
        as_member(member, tools.add_member, label, number, member.serial, partition_password())
        run.change(f"added {member.serial} to HA group {label}")


def bootstrap(
    parameter_path: str,
    client_name: str | None,
    *,
    ssm_client: SSMClient | Any,
    secrets_client: SecretsManagerClient | Any,
    luna_root: Path,
    config_path: Path,
    env_file: Path,
    tools: ClientTools,
    java_security: Path | None = None,
    recovery_retry: int = DEFAULT_RECOVERY_RETRY,
) -> BootstrapReport:
    """Configure this Luna client from the group published under ``parameter_path``; see the module doc."""
    from luna_ha.secrets import SecretReader
    from luna_ha.store import ParameterStore

    try:
        path = check_path(parameter_path)
    except ValueError as exc:
        raise BootstrapParameterError(parameter_path, str(exc)) from None
    luna_root, config_path, env_file = Path(luna_root), Path(config_path), Path(env_file)
    run = _Run(tools)
    first_command = len(tools.journal)  # a ClientTools may be reused: report this run's commands only

    # 1. read and check everything; nothing is written before this block ends.
    inputs = load_inputs(ParameterStore(ssm_client).read(path), path, client_name)
    document = inputs.document
    label, serials = document.label, inputs.serials
    conf = run.read_conf(config_path)
    java_text: str | None = None
    if java_security is not None:
        raw = _read_bytes(Path(java_security))
        if raw is None:
            raise ClientToolError(f"java.security file not found at {java_security}")
        java_text = raw.decode("utf-8", errors="surrogateescape")
    registered = set(tools.list_servers())
    secrets = SecretReader(secrets_client)  # memoises: the secret is fetched at most once per run

    def partition_password() -> str:
        return secrets.partition_secret(document.partition_secret_arn).password

    if _ha_needs_password(conf, label, serials):
        partition_password()  # read now, so that an unreadable secret fails before any write

    # 2. client certificate and key, and where Chrystoki.conf looks for them.
    client_dir = luna_root / "cert" / "client"
    cert_file = client_dir / f"{inputs.generation}.pem"
    key_file = client_dir / f"{inputs.generation}Key.pem"
    run.converge_file(key_file, _with_newline(inputs.key_pem).encode(), 0o600, "client key")
    run.converge_file(cert_file, _with_newline(inputs.cert_pem).encode(), 0o644, "client certificate")
    conf = run.read_conf(config_path)
    conf.set(LUNASA_CLIENT, "ClientCertFile", str(cert_file))
    conf.set(LUNASA_CLIENT, "ClientPrivKeyFile", str(key_file))
    run.write_conf(config_path, conf, f"client {inputs.client} generation {inputs.generation}")

    # 3. servers.
    server_dir = luna_root / "cert" / "server"
    ca_file = Path(conf.get(LUNASA_CLIENT, "ServerCAFile") or server_dir / "CAFile.pem")
    for member, pem in inputs.server_certs:
        server_file = server_dir / f"{host_segment(member.host)}.pem"
        run.converge_file(
            server_file, _with_newline(pem).encode(), 0o644, f"server certificate of {member.host}"
        )
        if member.host in registered:
            ca_text = (_read_bytes(ca_file) or b"").decode("utf-8", errors="replace")
            if _cert_bodies(pem) <= _cert_bodies(ca_text):
                continue
            tools.delete_server(member.host)
            run.change(f"vtl deleteServer {member.host} (its published server certificate changed)")
        result = tools.add_server(member.host, server_file)
        if result.already_done:
            run.warnings.append(f"vtl addServer {member.host}: the server was already registered")
        else:
            run.change(f"vtl addServer {member.host}")

    # 4. every member's partition must be visible through NTLS, and initialized.
    labels = {slot.serial: slot.label.strip() for slot in tools.verify()}
    missing = [m for m in document.members if m.serial not in labels]
    if missing:
        raise ClientToolError(
            "vtl verify does not list the partition(s) "
            + ", ".join(f"{m.serial} of {m.host}" for m in missing)
            + ": check that this client's certificate is registered and assigned on the appliance(s)"
        )
    unlabelled = [m for m in document.members if not labels[m.serial]]
    if unlabelled:
        raise _not_ready(unlabelled[0], "no label")

    # 5. the HA group, HA-only, auto-recovery.
    before_group = _read_bytes(config_path)
    try:
        _build_group(run, tools, config_path, document, partition_password)
    except ClientToolError:
        if before_group is not None and _read_bytes(config_path) != before_group:
            write_atomic(config_path, before_group, config_path.stat().st_mode & 0o777)
            log.warning("HA group %s not built: Chrystoki.conf is back as it was before", label)
        raise
    conf = run.read_conf(config_path)
    group = find_ha_group(conf, label)
    if group is None or set(group.members) != set(serials) or group.members[0] != serials[0]:
        members = ",".join(group.members) if group else "none"
        raise ClientToolError(
            f"HA group {label} has members {members} in {config_path}, expected {','.join(serials)}"
        )
    if conf.get(HA_CONFIGURATION, "HAOnly") != "1":
        tools.enable_ha_only()
        run.change("enabled HA-only")
    if not _recovery_enabled(conf, tools):
        tools.enable_auto_recovery(recovery_retry)
        run.change("enabled auto-recovery")
    group_serial = group.serial or document.ha_group_serial
    if group_serial != document.ha_group_serial:
        run.warnings.append(
            f"HA group {label} has serial {group_serial} here; "
            f"the group document says {document.ha_group_serial}"
        )

    # 6. slot, env file, Java provider.
    slot = parse_ha_slot(tools.list_slots(), group_serial)
    if slot is None:
        run.warnings.append(f"vtl listSlots does not show the HA slot of {label} ({group_serial})")
    env_text = build_env_file(label, group_serial, slot, inputs.generation)
    run.converge_file(env_file, env_text.encode(), None, "env file")
    if java_security is not None and java_text is not None:
        updated = add_luna_provider(java_text)
        if updated is not None:
            run.converge_file(
                Path(java_security), updated.encode("utf-8", errors="surrogateescape"), None, "java.security"
            )

    return BootstrapReport(
        parameter_path=path,
        client=inputs.client,
        generation=inputs.generation,
        client_generation=tools.generation.name,
        group_label=label,
        group_serial=group_serial,
        slot=slot,
        changes=tuple(run.changes),
        files_written=tuple(run.files),
        commands=tuple(r.command for r in tools.journal[first_command:]),
        mutating_commands=tuple(r.command for r in tools.journal[first_command:] if r.mutating),
        warnings=tuple(run.warnings),
    )
