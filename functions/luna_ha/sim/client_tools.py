"""Simulated Luna client tools (``vtl``, ``lunacm``) for tests and the demo. Not the real client.

Run as ``python -m luna_ha.sim.client_tools vtl|lunacm <args…>``; :func:`install_simulated_client`
makes a fake install tree whose ``bin/vtl`` and ``bin/lunacm`` are small shell scripts doing that.
Like the real tools (REFERENCE §10) they keep their state in the Chrystoki.conf they are pointed at
(``$ChrystokiConfigurationPath/Chrystoki.conf``) and in the server CA file (``ServerCAFile``):

* ``vtl addServer -n <host> -c <pem>`` appends the certificate to the CA file and adds
  ``ServerNameNN`` / ``ServerPortNN`` / ``ServerHtlNN`` to ``LunaSA Client``; ``deleteServer``
  takes them out again; ``listServers`` lists them.
* ``vtl haAdmin …`` (5.1 dash form, 5.3 bare form; refused on 7) and ``lunacm -c hagroup …`` (5.3
  and 7) write the ``VirtualToken`` / ``HASynchronize`` / ``HAConfiguration`` sections; a group's
  serial is ``"1"`` + its first member's serial (REFERENCE §10.9).
* ``vtl verify`` / ``listSlots`` and ``lunacm -c slot list`` list the partitions of the registered
  servers. There is no NTLS: the test says which partitions each appliance has, as JSON in
  ``LUNA_HA_SIM_PARTITIONS`` (``{"10.0.1.10": ["150"]}``, ``{"10.0.1.10": {"150": "payments"}}``,
  or, for a partition of a simulated appliance's model, the object :func:`partitions_json` makes
  from it). A server is reachable only when its certificate is in the CA file, and nothing is
  found unless ``ClientCertFile`` and ``ClientPrivKeyFile`` name existing files.

Luna 7 appliances (a partition with ``"family": 7``) are shown the way the Luna 7 client shows
them: a 13-digit serial unrelated to the HSM's, an empty label until the partition is initialized,
``Luna User Partition With SO (PW) …`` as its configuration, and ``vtl verify`` counting slots from
0 with the serial right-aligned (client 10.x). The HA commands log in to each member as its Crypto
Officer, whose password is the one members have; the login is refused with the PKCS#11 result the
partition's state calls for: ``CKR_USER_PIN_NOT_INITIALIZED`` (partition or Crypto Officer not
initialized), ``CKR_PIN_LOCKED``, ``CKR_PIN_INCORRECT``, then ``CKR_PIN_EXPIRED`` for a right
password that is still the initial one (policy 21). The state is a snapshot: a failed login here
uses up no attempt on the appliance.

Other environment variables (all optional except where said):

* ``LUNA_HA_SIM_ROOT``, ``LUNA_HA_SIM_CLIENT_GENERATION`` (``5.1``, ``5.3``, ``7``): set by the bin
  scripts. ``LUNA_HA_SIM_CLIENT_VERSION`` overrides the version ``vtl ver`` prints.
* ``LUNA_HA_SIM_DEFAULT_CONFIG``: the Chrystoki.conf used when ``ChrystokiConfigurationPath`` is unset.
* ``LUNA_HA_SIM_PASSWORD``: when set, HA commands fail unless given this partition password; and
  any invocation fails (exit 97, an ``Error:`` line, journalled with ``secret_on_command_line``)
  when this password is in its own ``/proc/self/cmdline`` or arguments, where every local user
  could read it.
* ``LUNA_HA_SIM_JOURNAL``: a file to which every invocation is appended as a JSON line (passwords
  masked).
* ``LUNA_HA_SIM_FAULTS``: comma-separated ``<command>=<fault>``, ``<command>`` as in the journal
  (``addServer``, ``verify``, ``haAdmin newGroup``, ``hagroup createGroup``…, case-insensitive);
  ``<fault>`` is ``error0`` (print an ``Error:`` line, exit 0, change nothing), ``exit<N>`` (print
  a message without ``Error:``, exit N, change nothing) or ``hang`` (sleep for an hour).

The HA commands that need the partition password (``haAdmin newGroup`` / ``addMember``,
``hagroup createGroup`` / ``addMember`` / ``listGroups``) take ``-password <pw>`` as the real tools
do, and without it prompt ``Enter the password: `` and read one line from stdin (REFERENCE §10.6
gives this prompt for ``listGroups``; that newGroup / addMember / createGroup prompt the same way
is this simulator's reading of REFERENCE §0.4, "omitted passwords are prompted for"). The journal
says where the password came from (``password_from``: ``prompt`` or ``argument``).

Output texts follow REFERENCE §10 where it gives them; the rest (marked ``[U]`` there) is this
simulator's choice, kept short and in the same style. For Luna 7: ``slot list`` blocks follow the
Luna 7 client's output published with an uninitialized partition (7.1 and 7.2 clients); the HA
virtual slot's model and configuration lines, the login failures' wording and the choice of
``CKR_USER_PIN_NOT_INITIALIZED`` for an uninitialized partition (the PKCS#11 result of a user
login where no user PIN exists) are this simulator's reading.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, get_args

from luna_ha.client.chrystoki import (
    HA_CONFIGURATION,
    HA_SYNCHRONIZE,
    LUNASA_CLIENT,
    VIRTUAL_TOKEN,
    ChrystokiConf,
    HAGroupEntry,
    find_ha_group,
    ha_groups,
    registered_servers,
)

if TYPE_CHECKING:
    from luna_ha.sim.state import ApplianceModel, Partition

__all__ = [
    "CHRYSTOKI_TEMPLATES",
    "LoginState",
    "SimPartition",
    "install_simulated_client",
    "main",
    "partitions_json",
]

MASK = "********"
CONFIG_DIR_VARIABLE = "ChrystokiConfigurationPath"
VERSIONS = {"5.1": "5.1.0-25", "5.3": "6.2.2-4", "7": "7.4.0-226"}
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\s*", re.DOTALL)
_LUNACM_OK = "Command Result : No Error"
_LUNACM_FAILED = "Command Result : 0x00000005 (CKR_GENERAL_ERROR)"
#: PKCS#11 result codes of the login failures the simulated HA commands report.
CKR_CODES = {
    "CKR_PIN_INCORRECT": 0xA0,
    "CKR_PIN_EXPIRED": 0xA3,
    "CKR_PIN_LOCKED": 0xA4,
    "CKR_USER_PIN_NOT_INITIALIZED": 0x102,
}
ENTER_PROMPT = "Enter the password: "
#: Exit status of an invocation that found the partition password on its own command line.
SECRET_ON_COMMAND_LINE_EXIT = 97


class _Fail(Exception):
    """A simulated tool failure: ``message`` lines printed, then exit with ``code``; lunacm ends
    with ``result`` (a PKCS#11 result name) or a general error."""

    def __init__(self, message: str, code: int = 1, result: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.result = result


#: What a Crypto Officer login meets on a partition: ``ready``, or why it is refused.
LoginState = Literal["ready", "uninitialized", "co_uninitialized", "locked_out", "pin_to_be_changed"]
_LOGIN_STATES: tuple[LoginState, ...] = get_args(LoginState)


@dataclass(frozen=True)
class SimPartition:
    """A partition as the simulated client sees it through NTLS."""

    serial: str
    label: str
    family: int = 5
    model: str = ""
    firmware: str = ""
    login: LoginState = "ready"
    #: SHA-256 (hex) of the password members log in with; None: ``LUNA_HA_SIM_PASSWORD`` decides.
    password_sha256: str | None = None

    @classmethod
    def from_json(cls, serial: str, value: Any) -> SimPartition:
        if not isinstance(value, dict):
            return cls(serial, str(value))
        login = next((state for state in _LOGIN_STATES if state == value.get("login", "ready")), None)
        if login is None:
            raise _Fail(
                f"Error: simulator: unknown login state {value.get('login')!r} for partition {serial}"
            )
        digest = value.get("password_sha256")
        return cls(
            serial=serial,
            label=str(value.get("label", "")),
            family=int(value.get("family", 5)),
            model=str(value.get("model", "")),
            firmware=str(value.get("firmware", "")),
            login=login,
            password_sha256=str(digest) if digest else None,
        )

    @property
    def configuration(self) -> str:
        if self.family >= 7:
            return "Luna User Partition With SO (PW) Signing With Cloning Mode"
        return "Luna User Partition, No SO (PW) Signing With Cloning Mode"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _login_state(partition: Partition) -> LoginState:
    if not partition.has_so:
        return "ready"
    if not partition.initialized:
        return "uninitialized"
    if not partition.co.initialized:
        return "co_uninitialized"
    if partition.co.locked_out:
        return "locked_out"
    return "pin_to_be_changed" if partition.co.pin_to_be_changed else "ready"


def partitions_json(appliances: Mapping[str, ApplianceModel], client: str | None = None) -> str:
    """``LUNA_HA_SIM_PARTITIONS`` for simulated appliances' models, keyed by the host members reach
    them at: every partition (only those assigned to ``client`` when given, as NTLS shows them)
    with its serial, label, model, firmware and the state a Crypto Officer login meets. The
    password members log in with (7.x: the Crypto Officer's) travels only as its SHA-256."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for host, model in appliances.items():
        with model.lock:
            assigned = None if client is None else model.clients.get(client)
            entries: dict[str, dict[str, Any]] = {}
            for partition in model.partitions.values():
                if client is not None and (assigned is None or partition.name not in assigned.partitions):
                    continue
                password = partition.client_password
                entries[partition.serial] = {
                    "label": partition.label if partition.has_so else partition.name,
                    "family": model.family,
                    "model": f"LunaSA {model.dialect.software_version.split('-')[0]}",
                    "firmware": model.dialect.firmware,
                    "login": _login_state(partition),
                    "password_sha256": _sha256(password) if password else None,
                }
            out[host] = entries
    return json.dumps(out)


@dataclass
class _Env:
    root: Path
    generation: str
    config: Path
    partitions: dict[str, dict[str, SimPartition]]
    password: str | None
    out: TextIO
    stdin: TextIO
    #: Where the partition password of this invocation came from: "prompt", "argument" or "".
    pin_source: str = ""

    @classmethod
    def load(cls, out: TextIO, stdin: TextIO) -> _Env:
        generation = os.environ.get("LUNA_HA_SIM_CLIENT_GENERATION", "5.3")
        root = Path(os.environ.get("LUNA_HA_SIM_ROOT", "/usr/safenet/lunaclient"))
        if os.environ.get(CONFIG_DIR_VARIABLE):
            config = Path(os.environ[CONFIG_DIR_VARIABLE]) / "Chrystoki.conf"
        elif os.environ.get("LUNA_HA_SIM_DEFAULT_CONFIG"):
            config = Path(os.environ["LUNA_HA_SIM_DEFAULT_CONFIG"])
        else:
            raise _Fail("Error: the simulated client needs ChrystokiConfigurationPath (no /etc here)")
        raw = json.loads(os.environ.get("LUNA_HA_SIM_PARTITIONS", "{}") or "{}")
        partitions: dict[str, dict[str, SimPartition]] = {}
        for host, value in raw.items():
            if isinstance(value, dict):
                partitions[host] = {str(k): SimPartition.from_json(str(k), v) for k, v in value.items()}
            else:
                partitions[host] = {str(serial): SimPartition(str(serial), "partition") for serial in value}
        return cls(root, generation, config, partitions, os.environ.get("LUNA_HA_SIM_PASSWORD"), out, stdin)

    # --- state -----------------------------------------------------------------------------------

    def conf(self) -> ChrystokiConf:
        try:
            text = self.config.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            raise _Fail(f"Error: Unable to open the configuration file {self.config}") from None
        return ChrystokiConf(text)

    def save(self, conf: ChrystokiConf) -> None:
        # In place, as the real tools do.
        self.config.write_text(conf.render(), encoding="utf-8", errors="surrogateescape")

    def ca_file(self, conf: ChrystokiConf) -> Path:
        return Path(conf.get(LUNASA_CLIENT, "ServerCAFile") or self.root / "cert" / "server" / "CAFile.pem")

    def ca_certs(self, conf: ChrystokiConf) -> list[str]:
        path = self.ca_file(conf)
        return [m.group(0).strip() + "\n" for m in _PEM.finditer(path.read_text())] if path.exists() else []

    def client_cert_ok(self, conf: ChrystokiConf) -> bool:
        cert = conf.get(LUNASA_CLIENT, "ClientCertFile")
        key = conf.get(LUNASA_CLIENT, "ClientPrivKeyFile")
        return bool(cert and key and Path(cert).is_file() and Path(key).is_file())

    def visible(self, conf: ChrystokiConf) -> list[SimPartition]:
        """Every partition reachable through NTLS, in server order."""
        if not self.client_cert_ok(conf):
            return []
        certs = self.ca_certs(conf)
        found: list[SimPartition] = []
        for index, host in enumerate(registered_servers(conf)):
            if index < len(certs):
                found.extend(self.partitions.get(host, {}).values())
        return found

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")


def _options(args: Sequence[str]) -> dict[str, str]:
    """``-name value`` pairs (names lower-cased); a flag without a value maps to ``""``."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        name = args[i]
        if not name.startswith("-"):
            raise _Fail(f"Error: unexpected argument '{name}'")
        if i + 1 < len(args) and not args[i + 1].startswith("-"):
            out[name[1:].lower()] = args[i + 1]
            i += 2
        else:
            out[name[1:].lower()] = ""
            i += 1
    return out


def _need(options: dict[str, str], *names: str) -> list[str]:
    missing = [n for n in names if n.lower() not in options]
    if missing:
        raise _Fail(f"Error: missing required parameter(s): {', '.join('-' + n for n in missing)}")
    return [options[n.lower()] for n in names]


def _nn(index: int) -> str:
    return f"{index:02d}"


# --- vtl -----------------------------------------------------------------------------------------


def _vtl_ver(env: _Env, args: Sequence[str]) -> None:
    version = os.environ.get("LUNA_HA_SIM_CLIENT_VERSION") or VERSIONS.get(env.generation, "6.2.2-4")
    env.print(f"vtl (64-bit) v{version}. Copyright (c) 2019 SafeNet, Inc. All rights reserved.")


def _vtl_add_server(env: _Env, args: Sequence[str]) -> None:
    host, cert_file = _need(_options(args), "n", "c")
    port = _options(args).get("p") or "1792"
    conf = env.conf()
    if host in registered_servers(conf):
        raise _Fail("This server is already registered.")
    try:
        pem = Path(cert_file).read_text()
    except (OSError, UnicodeDecodeError):
        raise _Fail(f"Error: Unable to read the server certificate file {cert_file}") from None
    block = _PEM.search(pem)
    if block is None:
        raise _Fail(f"Error: {cert_file} does not hold a PEM certificate")
    ca = env.ca_file(conf)
    ca.parent.mkdir(parents=True, exist_ok=True)
    existing = ca.read_text() if ca.exists() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    ca.write_text(existing + block.group(0).strip() + "\n")
    nn = _nn(len(registered_servers(conf)))
    conf.set(LUNASA_CLIENT, f"ServerName{nn}", host)
    conf.set(LUNASA_CLIENT, f"ServerPort{nn}", port)
    conf.set(LUNASA_CLIENT, f"ServerHtl{nn}", "0")
    env.save(conf)
    env.print(f"New server {host} successfully added to server list.")


def _vtl_delete_server(env: _Env, args: Sequence[str]) -> None:
    (host,) = _need(_options(args), "n")
    conf = env.conf()
    servers = registered_servers(conf)
    if host not in servers:
        raise _Fail(f"Error: Server {host} is not registered.")
    index = servers.index(host)
    numbered: dict[int, dict[str, str]] = {}
    for key, value in conf.items(LUNASA_CLIENT):
        m = re.fullmatch(r"Server(Name|Port|Htl)(\d+)", key)
        if m:
            numbered.setdefault(int(m.group(2)), {})[m.group(1)] = value
            conf.remove(LUNASA_CLIENT, key)
    remaining = [numbered[n] for n in sorted(numbered) if numbered[n].get("Name") != host]
    for new, fields in enumerate(remaining):
        for kind, value in fields.items():
            conf.set(LUNASA_CLIENT, f"Server{kind}{_nn(new)}", value)
    certs = env.ca_certs(conf)
    if index < len(certs):
        del certs[index]
        env.ca_file(conf).write_text("".join(certs))
    env.save(conf)
    env.print(f"Server {host} successfully removed from server list.")


def _vtl_list_servers(env: _Env, args: Sequence[str]) -> None:
    servers = registered_servers(env.conf())
    if not servers:
        env.print("There are no registered servers.")
    for host in servers:
        env.print(f"Server: {host}  HTL required: no")


def _vtl_verify(env: _Env, args: Sequence[str]) -> None:
    conf = env.conf()
    if not registered_servers(conf):
        raise _Fail("Error: There are no registered servers", code=0)
    found = env.visible(conf)
    if not found:
        raise _Fail("Error: Unable to find any Luna SA slots/partitions among registered server(s).", code=0)
    env.print("The following Luna SA Slots/Partitions were found:")
    env.print()
    env.print("Slot    Serial #                Label")
    env.print("====    ================        =====")
    if env.generation == "7":  # the 10.x client: slots from 0, serial right-aligned
        for slot, p in enumerate(found):
            env.print(f"{slot:>4}    {p.serial:>16}        {p.label}")
        return
    for slot, p in enumerate(found, start=1):
        env.print(f"{slot:>4}    {p.serial:<16}        {p.label}")


def _vtl_list_slots(env: _Env, args: Sequence[str]) -> None:
    conf = env.conf()
    rows = []
    if conf.get(HA_CONFIGURATION, "HAOnly") != "1":
        rows = [("LunaNet Slot", p.label, p.serial) for p in env.visible(conf)]
    rows += [("HA Virtual Card Slot", g.label, g.serial) for g in ha_groups(conf)]
    env.print(f"Number of slots: {len(rows)}")
    env.print()
    env.print("The following slots were found:")
    env.print()
    env.print(f"{'Slot #':<7}{'Description':<21}{'Label':<33}{'Serial #':<17}Status")
    env.print(f"{'=' * 6:<7}{'=' * 20:<21}{'=' * 32:<33}{'=' * 16:<17}{'=' * 12}")
    for slot, (description, label, serial) in enumerate(rows, start=1):
        env.print(f"{slot:>4}   {description:<21}{label:<33}{serial:<17}Present")


# --- HA (vtl haAdmin and lunacm hagroup share the state changes) ---------------------------------


def _password(env: _Env, options: dict[str, str]) -> str:
    """``-password`` when given, else the line typed at the password prompt (stdin)."""
    if "password" in options:
        env.pin_source = "argument"
        return options["password"]
    env.out.write(ENTER_PROMPT)
    env.out.flush()
    line = env.stdin.readline()
    if not line:
        raise _Fail("Error: no password entered")
    env.pin_source = "prompt"
    return line.rstrip("\r\n")


def _login_refused(serial: str, result: str) -> _Fail:
    return _Fail(
        f"Error: Login to the partition with serial number {serial} failed ({result}).", result=result
    )


def _check_password(env: _Env, password: str, partition: SimPartition) -> None:
    """The Crypto Officer (5.x: partition owner) login an HA command makes on ``partition``."""
    serial = partition.serial
    if partition.login in {"uninitialized", "co_uninitialized"}:
        raise _login_refused(serial, "CKR_USER_PIN_NOT_INITIALIZED")
    if partition.login == "locked_out":
        raise _login_refused(serial, "CKR_PIN_LOCKED")
    if partition.password_sha256 is not None:
        right = _sha256(password) == partition.password_sha256
    else:
        right = env.password is None or password == env.password
    if not right:
        raise _login_refused(serial, "CKR_PIN_INCORRECT")
    if partition.login == "pin_to_be_changed":
        raise _login_refused(serial, "CKR_PIN_EXPIRED")


def _check_visible(env: _Env, conf: ChrystokiConf, serial: str) -> SimPartition:
    for partition in env.visible(conf):
        if partition.serial == serial:
            return partition
    raise _Fail(f"Error: Unable to find a partition with serial number {serial}.")


def _member_of_any(conf: ChrystokiConf, serial: str) -> HAGroupEntry | None:
    for group in ha_groups(conf):
        if serial in group.members:
            return group
    return None


def _create_group(env: _Env, label: str, serial: str, password: str) -> HAGroupEntry:
    conf = env.conf()
    if find_ha_group(conf, label) is not None:
        raise _Fail("Error: The label you specified for the new group has already been used.")
    if _member_of_any(conf, serial) is not None:
        raise _Fail(
            f"Error: The member serial {serial} you specified for the new group has already been used."
        )
    _check_password(env, password, _check_visible(env, conf, serial))
    env.stdin.read()  # the answer to the existing-objects question ("copy")
    nn = _nn(len(ha_groups(conf)))
    group = HAGroupEntry(nn, label, "1" + serial, (serial,))
    conf.set(VIRTUAL_TOKEN, f"VirtualToken{nn}Label", label)
    conf.set(VIRTUAL_TOKEN, f"VirtualToken{nn}SN", group.serial)
    conf.set(VIRTUAL_TOKEN, f"VirtualToken{nn}Members", serial)
    conf.set(HA_SYNCHRONIZE, label, "1")
    if conf.get(HA_CONFIGURATION, "AutoReconnectInterval") is None:
        conf.set(HA_CONFIGURATION, "AutoReconnectInterval", "60")
    env.save(conf)
    env.print(f'New group with label "{label}" created with group number {group.serial}.')
    _print_group(env, group)
    return group


def _add_member(env: _Env, group: HAGroupEntry | None, reference: str, serial: str, password: str) -> None:
    conf = env.conf()
    if group is None:
        raise _Fail(f"Error: HA group {reference} not found.")
    if _member_of_any(conf, serial) is not None:
        raise _Fail("Error: The member you specified is already part of an HA group.")
    _check_password(env, password, _check_visible(env, conf, serial))
    env.stdin.read()
    conf.set(VIRTUAL_TOKEN, f"VirtualToken{group.index}Members", ",".join((*group.members, serial)))
    env.save(conf)
    env.print(f"Member {serial} successfully added to group {group.serial}.")


def _print_group(env: _Env, group: HAGroupEntry) -> None:
    env.print("Group configuration is:")
    env.print()
    env.print(f" HA Group Label:  {group.label}")
    env.print(f" HA Group Number: {group.serial}")
    env.print(" Synchronization: enabled")
    env.print(f" Group Members:   {', '.join(group.members)}")
    env.print(" Standby members: <none>")


def _set_ha_only(env: _Env, options: dict[str, str]) -> None:
    if "enable" not in options and "disable" not in options:
        raise _Fail("Error: specify -enable or -disable")
    conf = env.conf()
    conf.set(HA_CONFIGURATION, "HAOnly", "1" if "enable" in options else "0")
    env.save(conf)
    env.print(f"HA Only mode has been {'enabled' if 'enable' in options else 'disabled'}.")


def _show_groups(env: _Env, tool: str) -> None:
    conf = env.conf()
    if tool == "vtl":
        reconn = conf.get(HA_CONFIGURATION, "reconnAtt") or "0"
        env.print("================ HA Global Configuration Settings ===============")
        env.print("HA Proxy: disabled")
        env.print(f"HA Auto Recovery: {'enabled' if reconn != '0' else 'disabled'}")
        env.print(f"Maximum Auto Recovery Retry: {reconn}")
        interval = conf.get(HA_CONFIGURATION, "AutoReconnectInterval") or "60"
        env.print(f"Auto Recovery Poll Interval: {interval} seconds")
        env.print("HA Logging: disabled")
        env.print(f"Only Show HA Slots: {'yes' if conf.get(HA_CONFIGURATION, 'HAOnly') == '1' else 'no'}")
        env.print("================ HA Group and Member Information ================")
    groups = ha_groups(conf)
    if not groups:
        env.print("There are no HA groups configured.")
    for group in groups:
        env.print(f"HA Group Label: {group.label}")
        env.print(f"HA Group Number: {group.serial}")
        env.print("Synchronization: enabled")
        env.print(f"Group Members: {', '.join(group.members)}")
        env.print("Standby members: ")
        env.print()


def _vtl_ha_admin(env: _Env, args: Sequence[str]) -> None:
    if env.generation == "7":
        raise _Fail("Error: haAdmin is not supported by this client; use lunacm hagroup.")
    if not args:
        raise _Fail("Error: haAdmin needs a sub-command")
    sub = args[0]
    dashed = sub.startswith("-")
    if dashed != (env.generation == "5.1"):
        raise _Fail(f"Error: Unknown haAdmin command '{sub}'")
    sub = sub.lstrip("-").lower()
    options = _options(args[1:])
    if sub == "newgroup":
        serial, label = _need(options, "serialNum", "label")
        _create_group(env, label, serial, _password(env, options))
    elif sub == "addmember":
        serial, number = _need(options, "serialNum", "group")
        conf = env.conf()
        group = next((g for g in ha_groups(conf) if g.serial == number), None)
        _add_member(env, group, number, serial, _password(env, options))
    elif sub == "haonly":
        _set_ha_only(env, options)
    elif sub == "autorecovery":
        (retry,) = _need(options, "retry")
        if not re.fullmatch(r"-?\d+", retry):
            raise _Fail(f"Error: invalid retry count '{retry}'")
        conf = env.conf()
        conf.set(HA_CONFIGURATION, "reconnAtt", retry)
        env.save(conf)
        env.print(f"Auto recovery has been enabled with a retry count of {retry}.")
    elif sub == "show":
        _show_groups(env, "vtl")
    else:
        raise _Fail(f"Error: Unknown haAdmin command '{args[0]}'")


# --- lunacm --------------------------------------------------------------------------------------


def _lunacm_hagroup(env: _Env, args: Sequence[str]) -> None:
    if env.generation == "5.1":
        raise _Fail("Error: 'hagroup' is not a valid command.")
    if not args:
        raise _Fail("Error: hagroup needs a sub-command")
    sub = args[0].lower()
    options = _options(args[1:])
    if sub == "creategroup":
        label, serial = _need(options, "label", "serialNumber")
        _create_group(env, label, serial, _password(env, options))
    elif sub == "addmember":
        label, serial = _need(options, "group", "serialNumber")
        _add_member(env, find_ha_group(env.conf(), label), label, serial, _password(env, options))
    elif sub == "haonly":
        _set_ha_only(env, options)
    elif sub == "recoverymode":
        (mode,) = _need(options, "mode")
        if mode.lower() not in {"activebasic", "activeenhanced"}:
            raise _Fail(f"Error: invalid recovery mode '{mode}'")
        conf = env.conf()
        conf.set(VIRTUAL_TOKEN, "VirtualTokenActiveRecovery", mode)
        env.save(conf)
        env.print(f"HA recovery mode set to {mode}.")
    elif sub == "listgroups":
        _password(env, options)
        _show_groups(env, "lunacm")
    else:
        raise _Fail(f"Error: '{args[0]}' is not a valid hagroup command.")


def _lunacm_slot_list(env: _Env, args: Sequence[str]) -> None:
    """Physical slots (hidden in HA-only mode), then the HA groups' virtual slots, from 0."""
    if args:
        raise _Fail(f"Error: unexpected argument '{args[0]}'")
    conf = env.conf()
    blocks: list[list[tuple[str, str]]] = []
    if conf.get(HA_CONFIGURATION, "HAOnly") != "1":
        for p in env.visible(conf):
            blocks.append(
                [
                    ("Label", p.label),
                    ("Serial Number", p.serial),
                    ("Model", p.model or "LunaSA"),
                    ("Firmware Version", p.firmware),
                    ("Configuration", p.configuration),
                    ("Slot Description", "Net Token Slot"),
                ]
            )
    firmware = next((p.firmware for p in env.visible(conf) if p.firmware), "")
    for group in ha_groups(conf):
        blocks.append(
            [
                ("Label", group.label),
                ("Serial Number", group.serial),
                ("Model", "LunaVirtual"),
                ("Firmware Version", firmware),
                ("Configuration", "Luna Virtual HSM (PW) Signing With Cloning Mode"),
                ("Slot Description", "HA Virtual Card Slot"),
            ]
        )
    for slot_id, block in enumerate(blocks):
        env.print(f"\tSlot Id ->\t\t{slot_id}")
        for key, value in block:
            env.print(f"\t{key} ->\t{value}".rstrip())
        env.print()
    env.print()
    env.print("\tCurrent Slot Id: 0")


# --- dispatch ------------------------------------------------------------------------------------

_VTL: dict[str, Callable[[_Env, Sequence[str]], None]] = {
    "ver": _vtl_ver,
    "addserver": _vtl_add_server,
    "deleteserver": _vtl_delete_server,
    "listservers": _vtl_list_servers,
    "verify": _vtl_verify,
    "listslots": _vtl_list_slots,
    "haadmin": _vtl_ha_admin,
}
_MUTATING = {
    "addserver",
    "deleteserver",
    "newgroup",
    "addmember",
    "haonly",
    "autorecovery",
    "creategroup",
    "recoverymode",
}


def _command_name(tool: str, args: Sequence[str]) -> str:
    if tool == "vtl":
        if args[:1] and args[0].lower() == "haadmin":
            return f"haAdmin {args[1].lstrip('-') if len(args) > 1 else ''}".strip()
        return args[0] if args else ""
    if args[:2] and args[0] == "-c" and args[1].lower() == "hagroup":
        return f"hagroup {args[2] if len(args) > 2 else ''}".strip()
    if args[:1] == ["-c"]:
        return " ".join(args[1:3])
    return " ".join(args[:1])


def _masked(args: Sequence[str]) -> list[str]:
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg.lower() == "-password" and out[i + 1]:
            out[i + 1] = MASK
    return out


def _faults() -> dict[str, str]:
    spec = os.environ.get("LUNA_HA_SIM_FAULTS", "")
    faults = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, kind = item.partition("=")
        faults[name.strip().lower()] = kind.strip().lower()
    return faults


def _secret_on_command_line(args: Sequence[str]) -> bool:
    """Whether the partition password (``LUNA_HA_SIM_PASSWORD``) is in this process's arguments or
    in ``/proc/self/cmdline``, which every local user can read while the process runs."""
    password = os.environ.get("LUNA_HA_SIM_PASSWORD")
    if not password:
        return False
    if any(password in arg for arg in args):
        return True
    try:
        cmdline = Path("/proc/self/cmdline").read_bytes()
    except OSError:
        return False
    return password.encode() in cmdline


def _journal(tool: str, name: str, args: Sequence[str], code: int, *, source: str, exposed: bool) -> None:
    path = os.environ.get("LUNA_HA_SIM_JOURNAL")
    if not path:
        return
    sub = name.split()[-1].lower() if name else ""
    entry = {
        "tool": tool,
        "command": name,
        "args": _masked(args),
        "mutating": sub in _MUTATING,
        "exit": code,
        "password_from": source,
        "secret_on_command_line": exposed,
    }
    with open(path, "a", encoding="utf-8") as journal:
        journal.write(json.dumps(entry) + "\n")


def _run(tool: str, args: Sequence[str], env: _Env) -> None:
    name = _command_name(tool, args)
    fault = _faults().get(name.lower())
    if fault == "hang":
        time.sleep(3600)
    if fault == "error0":
        raise _Fail(f"Error: simulated fault in {name}", code=0)
    if fault and fault.startswith("exit"):
        raise _Fail(f"simulated failure of {name}", code=int(fault[4:] or "1"))
    if tool == "vtl":
        if not args or args[0].lower() not in _VTL:
            raise _Fail(f"Error: Unknown command '{args[0] if args else ''}'")
        _VTL[args[0].lower()](env, args[1:])
        return
    if args[:1] == ["-v"]:
        return
    if len(args) >= 2 and args[0] == "-c" and args[1].lower() == "hagroup":
        _lunacm_hagroup(env, args[2:])
        return
    if len(args) >= 3 and args[0] == "-c" and [a.lower() for a in args[1:3]] == ["slot", "list"]:
        if env.generation == "5.1":
            raise _Fail("Error: 'slot' is not a valid command.")
        _lunacm_slot_list(env, args[3:])
        return
    raise _Fail(f"Error: '{' '.join(args[1:2])}' is not a valid command.")


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, stdin: TextIO | None = None) -> int:
    """Entry point: ``argv`` is ``["vtl", …]`` or ``["lunacm", …]``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    stdin = stdin or sys.stdin
    if not argv or argv[0] not in {"vtl", "lunacm"}:
        out.write("usage: python -m luna_ha.sim.client_tools vtl|lunacm <args>\n")
        return 2
    tool, args = argv[0], argv[1:]
    code = 0
    lunacm = tool == "lunacm"
    exposed = _secret_on_command_line(argv)
    env: _Env | None = None
    try:
        if exposed:
            raise _Fail(
                f"Error: the partition password is on the command line of process {os.getpid()}, "
                "readable by every local user in /proc/<pid>/cmdline",
                code=SECRET_ON_COMMAND_LINE_EXIT,
            )
        env = _Env.load(out, stdin)
        if lunacm:
            version = os.environ.get("LUNA_HA_SIM_CLIENT_VERSION") or VERSIONS.get(
                env.generation, "7.4.0-226"
            )
            env.print(f"LunaCM v{version}. Copyright (c) 2019 SafeNet. All rights reserved.")
            env.print()
        _run(tool, args, env)
        if lunacm:
            env.print()
            env.print(_LUNACM_OK)
    except _Fail as failure:
        out.write(failure.message + "\n")
        if lunacm:
            result = _LUNACM_FAILED
            if failure.result in CKR_CODES:
                result = f"Command Result : 0x{CKR_CODES[failure.result]:08x} ({failure.result})"
            out.write("\n" + result + "\n")
        code = failure.code
    source = env.pin_source if env is not None else ""
    _journal(tool, _command_name(tool, args), args, code, source=source, exposed=exposed)
    out.flush()
    return code


# --- a fake install tree ---------------------------------------------------------------------------

_CONF_51 = """\
Chrystoki2 = {{
   LibUNIX = /usr/lib/libCryptoki2.so;
   LibUNIX64 = /usr/lib/libCryptoki2_64.so;
}}

Luna = {{
  DefaultTimeOut = 500000;
  PEDTimeout1 = 100000;
  PEDTimeout2 = 200000;
  PEDTimeout3 = 10000;
  KeypairGenTimeOut = 2700000;
  CloningCommandTimeOut = 300000;
}}

CardReader = {{
  RemoteCommand = 1;
}}

Misc = {{
   ToolsDir = {root}/bin;
}}

LunaSA Client = {{
   NetClient = 1;

   ServerCAFile = {root}/cert/server/CAFile.pem;
   ClientCertFile = {root}/cert/client/ClientNameCert.pem;
   ClientPrivKeyFile = {root}/cert/client/ClientNameKey.pem;
   SSLConfigFile = {root}/bin/openssl.cnf;
   ReceiveTimeout = 20000;
}}
"""

_CONF_53 = """\
Chrystoki2 = {{
   LibUNIX = {root}/lib/libCryptoki2.so;
   LibUNIX64 = {root}/lib/libCryptoki2_64.so;
}}

Luna = {{
  DefaultTimeOut = 500000;
  PEDTimeout1 = 100000;
  PEDTimeout2 = 200000;
  PEDTimeout3 = 10000;
  KeypairGenTimeOut = 2700000;
  CloningCommandTimeOut = 300000;
  CommandTimeOutPedSet = 720000;
}}

CardReader = {{
  RemoteCommand = 1;
}}

Misc = {{
   ToolsDir = {root}/bin;
}}

LunaSA Client = {{
   SSLConfigFile = {root}/bin/openssl.cnf;
   ReceiveTimeout = 20000;
   NetClient = 1;
   ServerCAFile = {root}/cert/server/CAFile.pem;
   ClientCertFile = {root}/cert/client/ClientNameCert.pem;
   ClientPrivKeyFile = {root}/cert/client/ClientNameKey.pem;
   HtlDir = {root}/htl/;
}}
"""

_CONF_7 = """\
Chrystoki2 = {{
   LibUNIX = {root}/libs/64/libCryptoki2.so;
   LibUNIX64 = {root}/libs/64/libCryptoki2_64.so;
}}

Luna = {{
   DefaultTimeOut = 500000;
   PEDTimeout1 = 100000;
   PEDTimeout2 = 200000;
   PEDTimeout3 = 10000;
   KeypairGenTimeOut = 2700000;
   CloningCommandTimeOut = 300000;
   CommandTimeOutPedSet = 720000;
}}

CardReader = {{
   RemoteCommand = 1;
}}

Misc = {{
   PE1746Enabled = 0;
   ToolsDir = {root}/bin/64;
}}

LunaSA Client = {{
   ReceiveTimeout = 20000;
   SSLConfigFile = {root}/openssl.cnf;
   ClientPrivKeyFile = {root}/cert/client/ClientNameKey.pem;
   ClientCertFile = {root}/cert/client/ClientNameCert.pem;
   ServerCAFile = {root}/cert/server/CAFile.pem;
   NetClient = 1;
   TCPKeepAlive = 1;
}}

Secure Trusted Channel = {{
   ClientTokenLib = {root}/libs/64/libSoftToken.so;
   SoftTokenDir = {root}/configData/token;
   ClientIdentitiesDir = {root}/data/client_identities;
   PartitionIdentitiesDir = {root}/data/partition_identities;
}}
"""

CHRYSTOKI_TEMPLATES = {"5.1": _CONF_51, "5.3": _CONF_53, "7": _CONF_7}


def install_simulated_client(root: Path, generation: str, *, config_path: Path | None = None) -> Path:
    """Make a fake Luna client install at ``root``; return its Chrystoki.conf (``root/etc/Chrystoki.conf``).

    ``bin/vtl`` and ``bin/lunacm`` are shell scripts that run this module with the current Python;
    ``cert/client`` and ``cert/server`` exist and are empty; the Chrystoki.conf has the layout of
    ``generation`` (``5.1``, ``5.3`` or ``7``) with paths under ``root``.
    """
    if generation not in CHRYSTOKI_TEMPLATES:
        raise ValueError(f"unknown client generation {generation!r}: expected 5.1, 5.3 or 7")
    root = Path(root)
    config = Path(config_path) if config_path is not None else root / "etc" / "Chrystoki.conf"
    for sub in ("bin", "cert/client", "cert/server", "lib"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CHRYSTOKI_TEMPLATES[generation].format(root=root))
    for tool in ("vtl", "lunacm"):
        script = root / "bin" / tool
        script.write_text(
            "#!/bin/sh\n"
            "# Simulated Luna client tool (luna-ha tests and demo); not the real one.\n"
            f"LUNA_HA_SIM_ROOT={shlex.quote(str(root))}\n"
            f"LUNA_HA_SIM_CLIENT_GENERATION={shlex.quote(generation)}\n"
            f"LUNA_HA_SIM_DEFAULT_CONFIG={shlex.quote(str(config))}\n"
            "export LUNA_HA_SIM_ROOT LUNA_HA_SIM_CLIENT_GENERATION LUNA_HA_SIM_DEFAULT_CONFIG\n"
            f'exec {shlex.quote(sys.executable)} -m luna_ha.sim.client_tools {tool} "$@"\n'
        )
        script.chmod(0o755)
    return config


if __name__ == "__main__":
    raise SystemExit(main())
