"""One lunash session over SSH with one appliance: the interactive shell's prompt loop.

``LunaShell`` is the SSH adapter of :class:`~luna_ha.shell.ApplianceShell`. It connects through
:mod:`luna_ha.handshake` (allow-listed algorithms, the pinned host key checked before any
credential) and moves files through :mod:`luna_ha.scp` on the same connection. A session is a
context manager:

    with LunaShell(target) as shell:
        result = shell.run(build_hsm_show(), step="observe")
        shell.put_file("web-3f2a1c-r0.pem", pem_bytes, step="upload certificate")

Every error names the appliance and the step and never carries a secret: the echo of a sensitive
command is masked before anything sees it. Every read is bounded in time and in bytes.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import time
from collections.abc import Collection
from types import TracebackType

import paramiko

from luna_ha.clock import Deadline
from luna_ha.errors import (
    CommandTimeout,
    ConnectFailed,
    ConnectionLost,
    OutputTooLarge,
    PasswordChangeRequired,
    UnexpectedPrompt,
)
from luna_ha.handshake import SshTarget, connect
from luna_ha.lunash.commands import Command
from luna_ha.lunash.dialect import (
    CONFIRM_PROMPT_PATTERNS,
    PASSWORD_CHANGE_PATTERNS,
    PASSWORD_PROMPT_PATTERNS,
    PROMPT_RE,
    Outcome,
)
from luna_ha.scp import MAX_DOWNLOAD_SIZE, ScpTransfer
from luna_ha.shell import CommandRecord, Observer, Output

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
        """Connect (``luna_ha.handshake``: pinned host key, then credentials) and open lunash."""
        self._transport = connect(self.target, self.deadline, step)
        self._open_shell(step)

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
        output = Output.parse(_strip_echo_and_prompt(raw))
        ok = output.ok
        self._report(command.display, command.name, mutating=command.mutating, ok=ok, started=started)
        log.debug("appliance %s ran %s: %s", self.target.label, command.display, "ok" if ok else "failed")
        return output.checked(self.target.label, step, command, tolerate) if check else output

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
