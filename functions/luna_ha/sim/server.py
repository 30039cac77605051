"""A simulated Luna SA appliance reachable over SSH on 127.0.0.1 (paramiko server).

    with SimulatedAppliance(initialized=True) as hsm:
        ...connect to hsm.host:hsm.port as hsm.username / hsm.password, pin hsm.host_key_line...

* One thread accepts, one thread per connection, one per channel; all are daemon threads and
  ``stop()`` closes every connection and abandons every hanging command (it does not run), so
  nothing blocks process exit.
  ``TCP_NODELAY`` on every accepted socket; paramiko's server-side logging goes to the silenced
  ``luna_ha.sim.transport`` logger.
* Host key: a generated ed25519 key (plus an RSA 2048 key with ``rsa_host_key=True``).
  ``algorithms`` narrows what the server offers, per kind (``kex``, ``keys``, ``ciphers``,
  ``macs``), to play an old appliance: ``algorithms={"macs": ["hmac-md5"]}``.
* ``password_change_required=True`` (settable at any time): a new shell first asks for a new
  password, as at a Luna 7 appliance's first login (``terminal.py``); once changed, ``password``
  is the new one and later logins open lunash at once.
  Authentication: user ``manager`` (by default) with a generated random password, and the
  ``authorized_key`` (an OpenSSH public key line) when given.
* ``session`` channels only. A shell request gets an interactive lunash: ``ShellSession`` behind
  a ``ShellTerminal`` (echo, line editing, faults, latency); without a PTY it works the same
  without echo (commands piped on stdin). The shell's exit status is 0.
* exec: ``scp -t <name>`` / ``scp -f <name>`` run the legacy SCP protocol against the home
  directory (``scp.py``); uploads are journaled as mutating. Each file passes the SCP faults
  (``faults.py``); a transfer they cut short sends no exit status. Any other exec request (a lunash
  command) is refused: ``Error:  Command execution over SSH exec is not supported by this appliance;
  use an interactive shell.`` on stderr and exit status 1 — whether Luna SA 5.x accepts exec is
  unknown, and the project's automation never relies on it. No subsystems (no SFTP).
* REST (``rest.py``): a 7.x appliance also serves the Luna REST API over HTTPS on the same host,
  its own ephemeral port (``rest_port``) and its own self-signed certificate (``rest_certificate_
  fingerprint``), over the same state, journal and faults; the same manager credentials open a REST
  session. ``rest=True``/``False`` overrides the default (on for 7.x dialects only).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import ipaddress
import logging
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

from luna_ha.sim.appliance import CommandLine, ShellSession
from luna_ha.sim.faults import FLOOD_FILE_SIZE, Direction, Faults
from luna_ha.sim.journal import Journal
from luna_ha.sim.keys import key_fingerprint, key_line, make_ed25519_host_key, make_rsa_host_key
from luna_ha.sim.rest import RestServer
from luna_ha.sim.scp import ScpError, parse_scp_command, serve_download, serve_upload
from luna_ha.sim.state import DEFAULT_DIALECT, ApplianceModel, KeyType
from luna_ha.sim.terminal import ShellTerminal, pty_echo

LOOPBACK = "127.0.0.1"
DEFAULT_USERNAME = "manager"
TRANSPORT_LOG = "luna_ha.sim.transport"
EXEC_REFUSED = (
    "Error:  Command execution over SSH exec is not supported by this appliance; "
    "use an interactive shell.\r\n"
)
_REQUEST_TIMEOUT = 10.0
#: ``algorithms`` kinds -> paramiko ``SecurityOptions`` attributes.
_ALGORITHM_OPTIONS = {"kex": "kex", "keys": "key_types", "ciphers": "ciphers", "macs": "digests"}

_transport_log = logging.getLogger(TRANSPORT_LOG)
_transport_log.setLevel(logging.CRITICAL + 1)
_transport_log.propagate = False


@dataclass
class _ChannelRequest:
    pty: bool = False
    echo: bool = True
    kind: str | None = None
    command: str = ""
    ready: threading.Event = field(default_factory=threading.Event)


class _SshHandler(paramiko.ServerInterface):
    """paramiko callbacks of one connection; requests are kept per channel id."""

    def __init__(self, appliance: SimulatedAppliance) -> None:
        self._appliance = appliance
        self._lock = threading.Lock()
        self._requests: dict[int, _ChannelRequest] = {}

    def request(self, chanid: int) -> _ChannelRequest:
        with self._lock:
            return self._requests.setdefault(chanid, _ChannelRequest())

    def get_allowed_auths(self, username: str) -> str:
        return "password,publickey" if self._appliance.authorized_key else "password"

    def check_auth_password(self, username: str, password: str) -> int:
        a = self._appliance
        ok = hmac.compare_digest(username.encode(), a.username.encode()) & hmac.compare_digest(
            password.encode(), a.password.encode()
        )
        return AUTH_SUCCESSFUL if ok else AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        wanted = self._appliance.authorized_key
        if wanted and username == self._appliance.username:
            name, blob = wanted.split()[:2]
            if key.get_name() == name and hmac.compare_digest(key.asbytes(), base64.b64decode(blob)):
                return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind != "session":
            return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        self.request(chanid)
        return OPEN_SUCCEEDED

    def check_channel_pty_request(
        self,
        channel: paramiko.Channel,
        term: bytes,
        width: int,
        height: int,
        pixelwidth: int,
        pixelheight: int,
        modes: bytes,
    ) -> bool:
        request = self.request(channel.get_id())
        request.pty, request.echo = True, pty_echo(modes)
        return True

    def check_channel_window_change_request(
        self, channel: paramiko.Channel, width: int, height: int, pixelwidth: int, pixelheight: int
    ) -> bool:
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        request = self.request(channel.get_id())
        if request.kind is not None:
            return False
        request.kind = "shell"
        request.ready.set()
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        request = self.request(channel.get_id())
        if request.kind is not None:
            return False
        request.kind, request.command = "exec", command.decode(errors="replace")
        request.ready.set()
        return True

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        return False


class _TransferCut(Exception):
    """A fault ended an SCP transfer: the connection is gone (or the client left a hang)."""


class _TransferFaults:
    """The SCP faults of one exec channel, as the ``before``/``after`` hooks of ``scp.py``."""

    def __init__(
        self,
        faults: Faults,
        direction: Direction,
        transport: paramiko.Transport,
        channel: paramiko.Channel,
        stopping: threading.Event,
    ) -> None:
        self._faults, self._direction = faults, direction
        self._transport, self._channel, self._stopping = transport, channel, stopping
        self._drop_after = False

    def _abandoned(self) -> bool:
        return self._channel.closed or not self._transport.is_active() or self._stopping.is_set()

    def _cut(self) -> None:
        self._transport.close()
        raise _TransferCut

    def before(self, name: str) -> None:
        action = self._faults.on_transfer(self._direction, name)
        if action is None:
            return
        if action.kind == "fail":
            raise ScpError(f"scp: {name}: {action.message}")
        if action.kind == "flood":
            if self._direction == "download":
                self._channel.sendall(f"C0644 {FLOOD_FILE_SIZE} {name}\n".encode())
            else:
                self._channel.sendall(b"\x01scp: ")
            self._faults.stream_flood(self._channel.sendall, self._abandoned)
            raise _TransferCut
        if action.kind == "hang":
            assert action.hang is not None
            if not action.hang.hold(self._abandoned):
                raise _TransferCut
        elif action.after_execute:
            self._drop_after = True
        else:
            self._cut()

    def after(self, name: str) -> None:
        if self._drop_after:
            self._cut()


class SimulatedAppliance:
    """One simulated Luna SA appliance: state, journal, faults, and an SSH server on loopback
    (127.0.0.1 unless ``host`` names another 127.x.y.z address)."""

    def __init__(
        self,
        *,
        hostname: str = "luna-sa",
        serial: str | None = None,
        host: str = LOOPBACK,
        port: int = 0,
        username: str = DEFAULT_USERNAME,
        password: str | None = None,
        authorized_key: str | None = None,
        rsa_host_key: bool = False,
        initialized: bool = False,
        label: str | None = None,
        admin_password: str | None = None,
        domain: str | None = None,
        dialect: str = DEFAULT_DIALECT,
        key_type: KeyType = "rsa",
        latency: Mapping[str, float] | None = None,
        default_latency: float = 0.0,
        algorithms: Mapping[str, Sequence[str]] | None = None,
        password_change_required: bool = False,
        rest: bool | None = None,
    ) -> None:
        if initialized:
            admin_password = admin_password or secrets.token_urlsafe(12)
            domain = domain or secrets.token_urlsafe(12)
        address = ipaddress.ip_address(host)
        if address.version != 4 or not address.is_loopback:
            raise ValueError(f"the simulator listens on IPv4 loopback addresses only, not {host}")
        self.hostname = hostname
        self.host = host
        self.port = port
        self.username = username
        self.password = password or secrets.token_urlsafe(16)
        self.authorized_key = authorized_key
        self.password_change_required = password_change_required
        unknown = set(algorithms or {}) - set(_ALGORITHM_OPTIONS)
        if unknown:
            kinds = ", ".join(_ALGORITHM_OPTIONS)
            raise ValueError(f"unknown algorithm kinds {sorted(unknown)} (use {kinds})")
        self.algorithms = {kind: tuple(names) for kind, names in (algorithms or {}).items()}
        self.state = ApplianceModel.create(
            hostname=hostname,
            serial=serial or str(secrets.randbelow(900_000) + 100_000),
            dialect=dialect,
            key_type=key_type,
            initialized=initialized,
            label=label,
            admin_password=admin_password,
            domain=domain,
        )
        self.journal = Journal()
        self.faults = Faults(latency, default_latency)
        self.connections = 0
        self.refused = 0
        self._host_keys = [make_ed25519_host_key(), *([make_rsa_host_key()] if rsa_host_key else [])]
        self._wrong_keys: list[paramiko.PKey] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._transports: set[paramiko.Transport] = set()
        serve_rest = self.state.family == 7 if rest is None else rest
        self.rest_service: RestServer | None = (
            RestServer(self.state, self.journal, self.faults, self._rest_credentials, host=host)
            if serve_rest
            else None
        )

    # -- identity ---------------------------------------------------------------------------------

    @property
    def host_key(self) -> paramiko.PKey:
        return self._host_keys[0]

    @property
    def host_key_line(self) -> str:
        return key_line(self.host_key)

    @property
    def host_key_fingerprint(self) -> str:
        return key_fingerprint(self.host_key)

    @property
    def host_key_lines(self) -> list[str]:
        return [key_line(k) for k in self._host_keys]

    @property
    def serial(self) -> str:
        return self.state.serial

    @property
    def rest(self) -> RestServer:
        """The REST service (7.x appliances by default); raises for an appliance without one."""
        if self.rest_service is None:
            raise RuntimeError(f"simulated appliance {self.hostname} serves no REST API (rest=False)")
        return self.rest_service

    @property
    def rest_port(self) -> int:
        """The port of the REST API (HTTPS); 0 until started."""
        return self.rest.port

    @property
    def rest_certificate_fingerprint(self) -> str:
        """``SHA256:`` + unpadded base64 of the SHA-256 of the REST certificate's DER."""
        return self.rest.fingerprint

    def _rest_credentials(self, username: str, password: str) -> bool:
        return bool(
            hmac.compare_digest(username.encode(), self.username.encode())
            & hmac.compare_digest(password.encode(), self.password.encode())
        )

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> SimulatedAppliance:
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
        except OSError:
            listener.close()
            raise
        listener.listen(64)
        self.port = listener.getsockname()[1]
        if self.rest_service is not None:
            try:
                self.rest_service.start()
            except OSError:
                listener.close()
                raise
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"sim-{self.hostname}", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self.rest_service is not None:
            self.rest_service.stop()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            transports = list(self._transports)
        for transport in transports:
            transport.close()
        if self._acceptor is not None:
            self._acceptor.join(timeout=2)

    def __enter__(self) -> SimulatedAppliance:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- connections ------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            if self._stopping.is_set():
                sock.close()
                return
            if self.faults.refusing:
                with self._lock:
                    self.refused += 1
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                number = self.connections
            threading.Thread(
                target=self._serve_connection,
                args=(sock, number),
                name=f"sim-{self.hostname}-{number}",
                daemon=True,
            ).start()

    def _keys_to_present(self) -> list[paramiko.PKey]:
        if not self.faults.host_key_wrong:
            return self._host_keys
        with self._lock:
            if self._wrong_keys is None:
                self._wrong_keys = [
                    make_ed25519_host_key() if k.get_name() == "ssh-ed25519" else make_rsa_host_key()
                    for k in self._host_keys
                ]
            return self._wrong_keys

    def _serve_connection(self, sock: socket.socket, number: int) -> None:
        transport = paramiko.Transport(sock)
        transport.set_log_channel(TRANSPORT_LOG)
        for key in self._keys_to_present():
            transport.add_server_key(key)
        options = transport.get_security_options()
        for kind, names in self.algorithms.items():
            setattr(options, _ALGORITHM_OPTIONS[kind], names)
        handler = _SshHandler(self)
        with self._lock:
            self._transports.add(transport)
        try:
            transport.start_server(server=handler)
            while transport.is_active() and not self._stopping.is_set():
                channel = transport.accept(timeout=0.5)
                if channel is not None:
                    threading.Thread(
                        target=self._serve_channel,
                        args=(transport, channel, handler, f"{number}.{channel.get_id()}"),
                        daemon=True,
                    ).start()
        except (paramiko.SSHException, OSError, EOFError):
            pass
        finally:
            with self._lock:
                self._transports.discard(transport)
            transport.close()

    def _serve_channel(
        self, transport: paramiko.Transport, channel: paramiko.Channel, handler: _SshHandler, session_id: str
    ) -> None:
        request = handler.request(channel.get_id())
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            try:
                if not request.ready.wait(_REQUEST_TIMEOUT):
                    return
                if request.kind == "shell":
                    ShellTerminal(
                        ShellSession(self.state, self.journal, session_id),
                        transport,
                        channel,
                        echo=request.pty and request.echo,
                        faults=self.faults,
                        stopping=self._stopping,
                        password_change=self._password_changed if self.password_change_required else None,
                        username=self.username,
                    ).run()
                    status: int | None = 0
                else:
                    status = self._run_exec(transport, channel, request.command, session_id)
                if status is not None and transport.is_active() and not channel.closed:
                    channel.send_exit_status(status)
            finally:
                channel.close()

    def _run_exec(
        self, transport: paramiko.Transport, channel: paramiko.Channel, command: str, session_id: str
    ) -> int | None:
        """Run an exec request; the exit status, or None when a fault cut the transfer short."""
        try:
            request = parse_scp_command(command)
        except ScpError as problem:
            upload = any(w.startswith("-") and "t" in w for w in command.split()[1:])
            self.journal.record(
                session=session_id,
                kind="scp",
                line=command,
                command="scp upload" if upload else None,
                mutating=upload,
                result=1,
            )
            channel.sendall(b"\x01" + str(problem).encode() + b"\n")
            return 1
        if request is None:
            line = CommandLine(command, self.state.dialect)
            self.journal.record(
                session=session_id,
                kind="exec",
                line=line.masked,
                command=line.name,
                mutating=line.command is not None and line.command.mutating,
                auth=line.command is not None and line.command.auth,
                result=1,
            )
            channel.sendall_stderr(EXEC_REFUSED.encode())
            return 1
        upload = request.direction == "upload"
        seq = self.journal.record(
            session=session_id, kind="scp", line=command, command=f"scp {request.direction}", mutating=upload
        )
        faults = _TransferFaults(self.faults, request.direction, transport, channel, self._stopping)
        try:
            if upload:
                serve_upload(channel, request, self._store_file, before=faults.before, after=faults.after)
            else:
                serve_download(
                    channel, request.name or "", self._load_file, before=faults.before, after=faults.after
                )
        except ScpError as problem:
            self.journal.finish(seq, 1)  # before the client can see the error
            with contextlib.suppress(OSError, EOFError):
                channel.sendall(b"\x01" + str(problem).encode() + b"\n")
            return 1
        except _TransferCut:
            return None
        self.journal.finish(seq, 0)
        return 0

    def _password_changed(self, new: str) -> None:
        self.password = new
        self.password_change_required = False

    def _store_file(self, name: str, data: bytes) -> None:
        with self.state.lock:
            self.state.files[name] = data

    def _load_file(self, name: str) -> bytes | None:
        with self.state.lock:
            return self.state.files.get(name)


def _unique_serials(n: int) -> list[str]:
    serials: set[str] = set()
    while len(serials) < n:
        serials.add(str(secrets.randbelow(900_000) + 100_000))
    return sorted(serials)


def start_appliances(
    n: int,
    *,
    port_base: int | None = None,
    distinct_hosts: bool = False,
    dialects: Sequence[str] | None = None,
    **options: Any,
) -> list[SimulatedAppliance]:
    """Start ``n`` appliances (hostnames ``luna-sim-01`` …, distinct serials) with the same options.

    ``port_base`` gives appliance i the port ``port_base + i``; by default every port is ephemeral.
    ``distinct_hosts`` puts appliance i on ``127.0.0.<i+1>`` (distinct Host values, all loopback).
    ``dialects`` gives appliance i the software ``dialects[i]`` (a group that mixes them).
    If one cannot start, those already started are stopped and the error propagates.
    """
    if distinct_hosts and n > 254:
        raise ValueError("distinct loopback hosts allow at most 254 appliances")
    serials = _unique_serials(n)

    def make(i: int) -> SimulatedAppliance:
        kwargs = {"hostname": f"luna-sim-{i + 1:02d}", "serial": serials[i], **options}
        if port_base is not None:
            kwargs["port"] = port_base + i
        if distinct_hosts:
            kwargs["host"] = f"127.0.0.{i + 1}"
        if dialects is not None:
            kwargs["dialect"] = dialects[i]
        return SimulatedAppliance(**kwargs)

    with ThreadPoolExecutor(max_workers=min(8, max(1, n))) as pool:
        appliances = list(pool.map(make, range(n)))
    started: list[SimulatedAppliance] = []
    try:
        for appliance in appliances:
            started.append(appliance.start())
    except BaseException:
        stop_appliances(started)
        raise
    return started


def stop_appliances(appliances: list[SimulatedAppliance]) -> None:
    for appliance in appliances:
        appliance.stop()


@contextlib.contextmanager
def running_appliances(n: int, **options: Any) -> Iterator[list[SimulatedAppliance]]:
    """``start_appliances`` as a context manager; in a pytest fixture::

    @pytest.fixture
    def appliances() -> Iterator[list[SimulatedAppliance]]:
        with running_appliances(16, initialized=True) as started:
            yield started
    """
    appliances = start_appliances(n, **options)
    try:
        yield appliances
    finally:
        stop_appliances(appliances)


def wait_for(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate()`` until true or ``timeout``; for tests that observe server-side effects."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
