"""Files to and from an appliance's home directory: legacy SCP over exec channels (it has no SFTP).

A :class:`ScpTransfer` runs on an open SSH session, which it reaches through one seam,
:class:`ScpSession`: the session's transport (to open an exec channel per file), its byte bound
(everything received counts against the session's, shell and SCP together) and its end (a download
announced larger than ``max_size`` closes the connection). Each transfer is also bounded in time,
:data:`SCP_TIMEOUT` and the run's deadline, whichever ends first. Every error names the appliance
and the step.
"""

from __future__ import annotations

import re
import time
from typing import Protocol

import paramiko

from luna_ha.clock import Deadline
from luna_ha.errors import CommandFailed, CommandTimeout, ConnectionLost, OutputTooLarge

#: What one file downloaded by SCP may be (`server.pem` is 1-2 KiB).
MAX_DOWNLOAD_SIZE = 256 * 1024
#: How long one SCP transfer may take in all (also capped by the run's deadline).
SCP_TIMEOUT = 30.0
_RECV_CHUNK = 65536
_MAX_LINE = 4096  # an SCP header or error line longer than this is cut there

_SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ScpSession(Protocol):
    """What a transfer needs of the SSH session it runs on (``LunaShell`` is one)."""

    def transport(self, step: str) -> paramiko.Transport:
        """The session's open transport; raises ``ConnectionLost`` when it is not open."""
        ...

    def count_received(self, size: int, step: str, waiting_for: str) -> None:
        """Count ``size`` bytes received against the session's bound (raises past it)."""
        ...

    def close(self) -> None: ...


class ScpTransfer:
    """Uploads and downloads on one session; ``label`` names the appliance in every error."""

    def __init__(self, session: ScpSession, *, label: str, deadline: Deadline) -> None:
        self.session = session
        self.label = label
        self.deadline = deadline

    def put(self, name: str, data: bytes, *, step: str) -> None:
        """Copy ``data`` to ``name`` in the appliance home directory (``scp -t``)."""
        _check_file_name(name)
        with self._open(f"scp -t {name}", step, name) as channel:
            channel.ack()
            channel.send(f"C0644 {len(data)} {name}\n".encode())
            channel.ack()
            channel.send(data + b"\x00")
            channel.ack()

    def get(self, name: str, *, step: str, max_size: int = MAX_DOWNLOAD_SIZE) -> bytes:
        """Fetch ``name`` from the appliance home directory (``scp -f``), ``max_size`` bytes at most."""
        _check_file_name(name)
        with self._open(f"scp -f {name}", step, name) as channel:
            channel.send(b"\x00")
            header = channel.line()
            if not header.startswith("C"):
                message = header[1:].strip() if header[:1] in ("\x01", "\x02") else header.strip()
                raise CommandFailed(self.label, step, f"scp of '{name}' failed: {message[:200]}")
            try:
                size = int(header.split()[1])
            except (IndexError, ValueError):
                raise CommandFailed(self.label, step, f"scp of '{name}': bad header") from None
            if size > max_size:
                self.session.close()
                raise OutputTooLarge(
                    self.label,
                    step,
                    f"scp of '{name}': the appliance announced {size} bytes, more than {_kib(max_size)}; "
                    "the connection was closed",
                )
            channel.send(b"\x00")
            data = channel.read(size + 1)
            channel.send(b"\x00")
        return data[:size]

    def _open(self, command: str, step: str, name: str) -> _ScpChannel:
        transport = self.session.transport(step)
        limit = self.deadline.cap(SCP_TIMEOUT)
        try:
            channel = transport.open_session(timeout=limit)
            channel.exec_command(command)  # nosec B601 - file name validated by _check_file_name
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectionLost(self.label, step, f"cannot start '{command}' ({exc})") from None
        return _ScpChannel(self, channel, step, name, ends=time.monotonic() + limit)


class _ScpChannel:
    """One transfer's exec channel: bounded reads (in time and in the session's bytes); closed on exit."""

    def __init__(
        self, transfer: ScpTransfer, channel: paramiko.Channel, step: str, name: str, *, ends: float
    ) -> None:
        self._transfer = transfer
        self._channel = channel
        self._step = step
        self._name = name
        self._ends = ends

    def __enter__(self) -> _ScpChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._channel.close()

    def send(self, data: bytes) -> None:
        self._channel.sendall(data)

    def ack(self) -> None:
        code = self.read(1)
        if code != b"\x00":
            message = self.line() if code in (b"\x01", b"\x02") else ""
            raise CommandFailed(
                self._transfer.label, self._step, f"scp of '{self._name}' refused: {message.strip()[:200]}"
            )

    def line(self) -> str:
        line = b""
        while not line.endswith(b"\n"):
            line += self.read(1)
            if len(line) > _MAX_LINE:
                break
        return line.decode("utf-8", errors="replace")

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes, within the transfer's time and the session's bytes."""
        label, step, what = self._transfer.label, self._step, f"scp of '{self._name}'"
        data = b""
        while len(data) < size:
            remaining = self._ends - time.monotonic()
            if remaining <= 0:
                raise CommandTimeout(label, step, f"{what} stalled")
            self._channel.settimeout(remaining)
            try:
                chunk = self._channel.recv(min(size - len(data), _RECV_CHUNK))
            except TimeoutError:
                raise CommandTimeout(label, step, f"{what} stalled") from None
            if not chunk:
                raise ConnectionLost(label, step, f"{what} ended early")
            self._transfer.session.count_received(len(chunk), step, what)
            data += chunk
        return data


def _kib(size: int) -> str:
    return f"{size // 1024} KiB"


def _check_file_name(name: str) -> None:
    if not _SAFE_FILE_NAME.match(name):
        raise ValueError(f"unsafe file name for the appliance: {name[:40]!r}")
