"""One SSH session to one appliance: pinned host key, an interactive lunash shell, SCP over exec.

The only module that imports paramiko for the client side. A session is a context manager:

    with LunaShell(target) as shell:
        result = shell.run(build_hsm_show(), step="observe")
        shell.put_file("web-3f2a1c-r0.pem", pem_bytes, step="upload certificate")

The host key is checked before any credential is sent. Every error names the appliance and the
step and never carries a secret: the echo of a sensitive command is masked before anything sees it.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import hashlib
import logging
import socket
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from io import StringIO
from types import TracebackType

import paramiko

from luna_ha.clock import Deadline
from luna_ha.errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandTimeout,
    ConnectFailed,
    ConnectionLost,
    HostKeyMismatch,
    OutputTooLarge,
    PasswordChangeRequired,
    UnexpectedPrompt,
)
from luna_ha.lunash.commands import Command
from luna_ha.lunash.dialect import (
    CONFIRM_PROMPT_PATTERNS,
    PASSWORD_CHANGE_PATTERNS,
    PASSWORD_PROMPT_PATTERNS,
    PROMPT_RE,
    Outcome,
)
from luna_ha.lunash.parsers import CommandResult, known_outcome, parse_result
from luna_ha.scp import MAX_DOWNLOAD_SIZE, ScpTransfer

log = logging.getLogger(__name__)


# Every read from an appliance is bounded in bytes as well as in time, so that a flooding peer
# (or something pretending to be an appliance) cannot grow the function's memory: past a bound the
# connection is closed and the step fails with OutputTooLarge, naming the appliance and the step.
#: What one command's answer (or the login banner) may be, up to its prompt. `hsm show` is ~2 KiB;
#: `client list` of an appliance with 10,000 clients ~400 KiB.
MAX_COMMAND_OUTPUT = 512 * 1024
#: Everything one session may receive, shell and SCP together (a run of 20 clients reads ~50 KiB).
MAX_SESSION_OUTPUT = 8 * 1024 * 1024
_RECV_CHUNK = 65536
_TAIL = 400  # prompts and questions are looked for in this many last characters

# What a session offers. An allow-list, not a deny-list: an algorithm a newer paramiko adds is not
# offered until it is listed here. SHA-1 and MD5 (in kex, host-key signatures and MACs), CBC and
# 3DES are never offered unless the appliance's `LegacyAlgorithms` is true.
MODERN_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "kex": (
        "curve25519-sha256@libssh.org",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group14-sha256",
    ),
    "keys": (
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "rsa-sha2-512",
        "rsa-sha2-256",
    ),
    "ciphers": (
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
    ),
    "macs": (
        "hmac-sha2-256",
        "hmac-sha2-512",
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
    ),
}

# What `LegacyAlgorithms: true` adds, for old Luna SA 5.x/6.x sshd (README lists the same).
# "keys" are host-key algorithms; ssh-rsa is also allowed for the manager's own RSA key then.
LEGACY_ALGORITHMS: dict[str, tuple[str, ...]] = {
    "kex": (
        "diffie-hellman-group-exchange-sha1",
        "diffie-hellman-group14-sha1",
        "diffie-hellman-group1-sha1",
    ),
    "keys": ("ssh-rsa",),
    "ciphers": ("aes128-cbc", "aes192-cbc", "aes256-cbc", "3des-cbc"),
    "macs": ("hmac-sha1", "hmac-sha1-96", "hmac-md5", "hmac-md5-96"),
}


def offered_algorithms(legacy: bool) -> dict[str, tuple[str, ...]]:
    """The algorithms a session may offer, per kind; legacy ones after the modern ones."""
    return {
        kind: modern + (LEGACY_ALGORITHMS[kind] if legacy else ())
        for kind, modern in MODERN_ALGORITHMS.items()
    }


# Host-key signature algorithms that can prove a key of each type.
_SIGNATURES: dict[str, tuple[str, ...]] = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


@dataclass(frozen=True)
class HostKeyPin:
    """The appliance's expected host key: a full OpenSSH public key line or a SHA256 fingerprint."""

    key_line: str | None = None
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        if (self.key_line is None) == (self.fingerprint is None):
            raise ValueError("a host key pin needs exactly one of key_line or fingerprint")

    @property
    def algorithm(self) -> str | None:
        return self.key_line.split()[0] if self.key_line else None

    def matches(self, key: paramiko.PKey) -> bool:
        if self.key_line is not None:
            parts = self.key_line.split()
            return parts[0] == key.get_name() and base64.b64decode(parts[1]) == key.asbytes()
        return fingerprint_of(key) == self.fingerprint


def fingerprint_of(key: paramiko.PKey) -> str:
    """The OpenSSH form of a key's SHA256 fingerprint (``SHA256:`` + unpadded base64)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class SshTarget:
    """Where and how to reach one appliance. Secret fields never show in a repr."""

    label: str  # the Host as the user wrote it; names the appliance in every message
    host: str
    port: int
    pin: HostKeyPin
    username: str
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
    legacy_algorithms: bool = False
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class CommandRecord:
    """What a session reports after each command: for progress, counting and journals."""

    host: str
    command: str  # the display form: secrets masked
    name: str
    mutating: bool
    ok: bool
    seconds: float


Observer = Callable[[CommandRecord], None]


@dataclass(frozen=True)
class Output:
    """One command's output (echo and prompt removed, secrets masked) and its parsed result."""

    text: str
    result: CommandResult

    @property
    def ok(self) -> bool:
        return self.result.ok


class LunaShell:
    """An interactive lunash session over one SSH connection (plus SCP channels on it)."""

    def __init__(
        self,
        target: SshTarget,
        *,
        deadline: Deadline | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.target = target
        self.deadline = deadline or Deadline.never()
        self.observer = observer
        self._transport: paramiko.Transport | None = None
        self._channel: paramiko.Channel | None = None
        self.hostname: str | None = None  # the appliance's own name, from its prompt
        self.received = 0  # bytes read from the appliance in this session (shell and SCP)
        self._files = ScpTransfer(self, label=target.label, deadline=self.deadline)

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> LunaShell:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self, step: str = "connect") -> None:
        t = self.target
        timeout = self.deadline.cap(t.connect_timeout)
        try:
            sock = socket.create_connection((t.host, t.port), timeout=timeout)
        except OSError as exc:
            raise ConnectFailed(
                t.label, step, f"cannot reach {t.host}:{t.port} ({exc.strerror or exc})"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = client_transport(sock, legacy=t.legacy_algorithms, pinned=t.pin.algorithm)
        self._transport = transport
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise ConnectFailed(
                t.label, step, f"SSH handshake with {t.host}:{t.port} failed ({exc})"
            ) from None
        key = transport.get_remote_server_key()
        if not t.pin.matches(key):
            self.close()
            raise HostKeyMismatch(
                t.label,
                step,
                f"the appliance presented {key.get_name()} {fingerprint_of(key)}, which is not the pinned "
                "host key; no credentials were sent. Check HostKey/HostKeyFingerprint.",
            )
        self._authenticate(step)
        self._open_shell(step)

    def _authenticate(self, step: str) -> None:
        t = self.target
        transport = self.transport(step)
        try:
            if t.private_key:
                pkey = _load_private_key(t.private_key, t.passphrase)
                if pkey is None:
                    self.close()
                    raise AuthenticationFailed(
                        t.label,
                        step,
                        "the private key of the manager secret cannot be loaded "
                        "(wrong passphrase, or not an OpenSSH/PEM ed25519, ECDSA or RSA key)",
                    )
                transport.auth_publickey(t.username, pkey)
            else:
                transport.auth_password(t.username, t.password or "")
        except paramiko.AuthenticationException:
            self.close()
            raise AuthenticationFailed(
                t.label, step, f"the appliance rejected the credentials of user '{t.username}'"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise ConnectFailed(
                t.label, step, f"authentication did not complete ({type(exc).__name__})"
            ) from None

    def _open_shell(self, step: str) -> None:
        transport = self.transport(step)
        try:
            channel = transport.open_session(timeout=self.deadline.cap(self.target.connect_timeout))
            channel.get_pty(term="vt100", width=400, height=2000)
            channel.invoke_shell()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise ConnectFailed(self.target.label, step, f"cannot open the lunash shell ({exc})") from None
        self._channel = channel
        banner = self._read_until_prompt(step, "the first lunash prompt", self.target.connect_timeout)
        match = PROMPT_RE.search(banner)
        if match and match.groupdict().get("hostname"):
            self.hostname = match.group("hostname")

    def close(self) -> None:
        for closable in (self._channel, self._transport):
            if closable is not None:
                with contextlib.suppress(Exception):  # best effort on the way out
                    closable.close()
        self._channel = None
        self._transport = None

    # -- commands --------------------------------------------------------------------------
    def run(
        self,
        command: Command,
        *,
        step: str | None = None,
        check: bool = True,
        tolerate: Collection[Outcome] = (),
    ) -> Output:
        """Send one lunash command and return its parsed result.

        With ``check`` a failed result raises ``CommandFailed`` naming the command (masked), unless
        it is one of the known outcomes in ``tolerate`` (``client delete`` of a client that is
        already gone, say): then the failed ``Output`` is returned for the caller to read.
        """
        step = step or command.name
        channel = self._require_channel(step)
        started = time.monotonic()
        try:
            channel.sendall((command.text + "\n").encode())
        except (OSError, EOFError, paramiko.SSHException):
            self.close()
            raise ConnectionLost(
                self.target.label, step, f"the connection closed before '{command.display}'"
            ) from None
        # What the appliance echoed back is masked here, at the one edge where output comes in.
        raw = command.redact(
            self._read_until_prompt(step, f"the result of '{command.display}'", command.timeout)
        )
        body = _strip_echo_and_prompt(raw)
        result = parse_result(body)
        ok = result.ok
        self._report(command.display, command.name, mutating=command.mutating, ok=ok, started=started)
        log.debug("appliance %s ran %s: %s", self.target.label, command.display, "ok" if ok else "failed")
        if check and not ok and known_outcome(command.name, result) not in tolerate:
            detail = "; ".join(line.strip() for line in result.errors) or f"Command Result {result.code}"
            raise CommandFailed(self.target.label, step, f"'{command.display}' failed: {detail}")
        return Output(body, result)

    def _report(self, command: str, name: str, *, mutating: bool, ok: bool, started: float) -> None:
        if self.observer is not None:
            seconds = time.monotonic() - started
            self.observer(CommandRecord(self.target.label, command, name, mutating, ok, seconds))

    def _read_until_prompt(self, step: str, waiting_for: str, timeout: float) -> str:
        channel = self._require_channel(step)
        limit = self.deadline.cap(timeout)
        ends = time.monotonic() + limit
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        parts: list[str] = []
        tail = ""
        size = 0
        while True:
            if PROMPT_RE.search(tail):
                return "".join(parts)
            if any(p.search(tail) for p in PASSWORD_CHANGE_PATTERNS):
                self.close()
                raise PasswordChangeRequired(
                    self.target.label,
                    step,
                    f"the appliance wants a new password for '{self.target.username}' before it opens "
                    "lunash (a first login). Log in once by hand, set a new password, put it in the "
                    "manager secret, then re-run.",
                )
            if any(p.search(tail) for p in PASSWORD_PROMPT_PATTERNS):
                # Never answer a password prompt blindly: a wrong answer to `hsm login` costs an
                # attempt. Drop the connection instead; the appliance discards the command.
                self.close()
                raise UnexpectedPrompt(
                    self.target.label, step, f"lunash asked for a password while waiting for {waiting_for}"
                )
            if any(p.search(tail) for p in CONFIRM_PROMPT_PATTERNS):
                self._quit_prompt(step)
                raise UnexpectedPrompt(
                    self.target.label,
                    step,
                    f"lunash asked for confirmation while waiting for {waiting_for}; answered 'quit'",
                )
            remaining = ends - time.monotonic()
            if remaining <= 0:
                self.close()
                raise CommandTimeout(
                    self.target.label,
                    step,
                    f"no lunash prompt after {limit:.0f} s while waiting for {waiting_for}",
                )
            channel.settimeout(min(remaining, 1.0))
            try:
                chunk = channel.recv(_RECV_CHUNK)
            except TimeoutError:
                continue
            except (OSError, EOFError, paramiko.SSHException):
                chunk = b""
            if not chunk:
                self.close()
                raise ConnectionLost(
                    self.target.label,
                    step,
                    f"the appliance closed the connection while waiting for {waiting_for}",
                )
            size += len(chunk)
            self.count_received(len(chunk), step, waiting_for)
            if size > MAX_COMMAND_OUTPUT:
                self.close()
                raise OutputTooLarge(
                    self.target.label,
                    step,
                    f"the appliance sent more than {_kib(MAX_COMMAND_OUTPUT)} without a lunash prompt while "
                    f"waiting for {waiting_for}; the connection was closed",
                )
            text = decoder.decode(chunk)
            parts.append(text)
            tail = (tail + text)[-_TAIL:]

    def _quit_prompt(self, step: str) -> None:
        channel = self._require_channel(step)
        try:
            channel.sendall(b"quit\n")
            self._read_until_prompt(step, "the prompt after 'quit'", 10.0)
        except Exception:
            self.close()

    # -- files (SCP, luna_ha.scp) ----------------------------------------------------------
    def put_file(self, name: str, data: bytes, *, step: str = "upload file") -> None:
        """Copy ``data`` to ``name`` in the appliance home directory (legacy SCP, ``scp -t``)."""
        started = time.monotonic()
        self._files.put(name, data, step=step)
        self._report(f"scp -t {name}", "scp put", mutating=True, ok=True, started=started)

    def get_file(self, name: str, *, step: str = "download file", max_size: int = MAX_DOWNLOAD_SIZE) -> bytes:
        """Fetch ``name`` from the appliance home directory (legacy SCP, ``scp -f``)."""
        started = time.monotonic()
        data = self._files.get(name, step=step, max_size=max_size)
        self._report(f"scp -f {name}", "scp get", mutating=False, ok=True, started=started)
        return data

    # -- what the SCP transfers use (luna_ha.scp.ScpSession) -------------------------------
    def transport(self, step: str) -> paramiko.Transport:
        """The open transport; raises ``ConnectionLost`` when it is not open."""
        if self._transport is None or not self._transport.is_active():
            raise ConnectionLost(self.target.label, step, "the SSH connection is not open")
        return self._transport

    def count_received(self, size: int, step: str, waiting_for: str) -> None:
        """Count ``size`` bytes received against the session's bound."""
        self.received += size
        if self.received > MAX_SESSION_OUTPUT:
            self.close()
            raise OutputTooLarge(
                self.target.label,
                step,
                f"the appliance sent more than {_kib(MAX_SESSION_OUTPUT)} in this session (while waiting "
                f"for {waiting_for}); the connection was closed",
            )

    # -- helpers ---------------------------------------------------------------------------
    def _require_channel(self, step: str) -> paramiko.Channel:
        if self._channel is None or self._channel.closed:
            raise ConnectionLost(self.target.label, step, "the lunash shell is not open")
        return self._channel


def client_transport(sock: socket.socket, *, legacy: bool, pinned: str | None) -> paramiko.Transport:
    """A client transport on ``sock`` that offers only :func:`offered_algorithms` (not started)."""
    allowed = offered_algorithms(legacy)
    # Client public-key algorithms are not in the security options: ssh-rsa (SHA-1) is disabled here.
    transport = paramiko.Transport(sock, disabled_algorithms={} if legacy else {"pubkeys": ["ssh-rsa"]})
    options = transport.get_security_options()
    options.kex = _allowed(allowed["kex"], options.kex)
    options.key_types = _allowed(allowed["keys"], options.key_types)
    options.ciphers = _allowed(allowed["ciphers"], options.ciphers)
    options.digests = _allowed(allowed["macs"], options.digests)
    if pinned is not None:
        # Ask for the pinned key's type only, so an appliance with several host keys presents
        # the pinned one. An `ssh-rsa` key is signed with rsa-sha2-* unless legacy is enabled.
        wanted = _allowed(_SIGNATURES.get(pinned, (pinned,)), options.key_types)
        if wanted:
            options.key_types = wanted
    return transport


def _allowed(preferred: Sequence[str], available: Collection[str]) -> tuple[str, ...]:
    """``preferred``, in its order, without what paramiko does not have."""
    return tuple(name for name in preferred if name in available)


def _kib(size: int) -> str:
    return f"{size // 1024} KiB"


def _strip_echo_and_prompt(raw: str) -> str:
    """The output of one command without its echoed first line and the trailing prompt."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[0].strip() != "" and not lines[0].lstrip().startswith("Command Result"):
        lines = lines[1:]
    if lines and PROMPT_RE.search(lines[-1]):
        lines = lines[:-1]
    return "\n".join(lines)


def _load_private_key(text: str, passphrase: str | None) -> paramiko.PKey | None:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            key: paramiko.PKey = cls.from_private_key(StringIO(text), password=passphrase)
            return key
        except (paramiko.SSHException, ValueError):
            continue
    return None
