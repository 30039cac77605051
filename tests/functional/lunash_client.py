"""A small paramiko client for driving the simulator in tests (not the product's ``ssh.py``).

Pinned host key, password or key auth, an interactive PTY shell read up to the prompt or the
``> `` input marker, and SCP put/get over exec. ``TCP_NODELAY`` on the client socket.
"""

from __future__ import annotations

import re
import socket
import time
from types import TracebackType

import paramiko

from luna_ha.sim.keys import key_line

PROMPT_RE = re.compile(r"\[[^\]\r\n]*\] lunash:>$")
QUESTION_RE = re.compile(r"\r\n> $")
PROMPT_OR_QUESTION_RE = re.compile(rf"(?:{PROMPT_RE.pattern})|(?:{QUESTION_RE.pattern})")


class HostKeyRejected(Exception):
    pass


class ReadTimeout(Exception):
    def __init__(self, waited_for: str, received: str) -> None:
        self.received = received
        super().__init__(f"timed out waiting for {waited_for!r}; received {received[-300:]!r}")


class Shell:
    def __init__(self, channel: paramiko.Channel, timeout: float) -> None:
        self.channel = channel
        self.timeout = timeout
        self.greeting = self.read_until(PROMPT_RE)

    def read_until(self, pattern: re.Pattern[str], timeout: float | None = None) -> str:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        received = ""
        while not pattern.search(received):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReadTimeout(pattern.pattern, received)
            self.channel.settimeout(remaining)
            try:
                data = self.channel.recv(65536)
            except TimeoutError:
                raise ReadTimeout(pattern.pattern, received) from None
            if not data:
                raise EOFError(f"shell closed; received {received[-300:]!r}")
            received += data.decode()
        return received

    def send(self, line: str, timeout: float | None = None) -> str:
        """Send one line; return what came back up to the next prompt or question."""
        self.channel.sendall((line + "\r").encode())
        return self.read_until(PROMPT_OR_QUESTION_RE, timeout)

    def run(self, line: str, timeout: float | None = None) -> str:
        """Send one line and expect to get back to the prompt (no question)."""
        output = self.send(line, timeout)
        if not PROMPT_RE.search(output):
            raise AssertionError(f"{line!r} asked a question: {output!r}")
        return output

    def close(self) -> None:
        self.channel.close()


class LunashClient:
    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        *,
        host_key_line: str,
        password: str | None = None,
        pkey: paramiko.PKey | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.timeout = timeout
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = paramiko.Transport(sock)
        try:
            self.transport.start_client(timeout=timeout)
            presented = key_line(self.transport.get_remote_server_key())
            if presented != host_key_line:
                raise HostKeyRejected(f"host key {presented} is not the pinned one")
            if pkey is not None:
                self.transport.auth_publickey(username, pkey)
            else:
                self.transport.auth_password(username, password or "")
        except BaseException:
            self.transport.close()
            raise

    def open_shell(self, *, pty: bool = True) -> Shell:
        channel = self.transport.open_session(timeout=self.timeout)
        if pty:
            channel.get_pty(term="vt100", width=200)
        channel.invoke_shell()
        return Shell(channel, self.timeout)

    def exec(self, command: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
        channel = self.transport.open_session(timeout=self.timeout)
        channel.settimeout(self.timeout)
        channel.exec_command(command)
        if stdin:
            channel.sendall(stdin)
        channel.shutdown_write()
        stdout, stderr = _drain(channel), channel.makefile_stderr("rb").read()
        return channel.recv_exit_status(), stdout, stderr

    def scp_put(self, name: str, data: bytes) -> None:
        channel = self.transport.open_session(timeout=self.timeout)
        channel.settimeout(self.timeout)
        channel.exec_command(f"scp -t {name}")
        _expect_ack(channel)
        channel.sendall(f"C0644 {len(data)} {name}\n".encode())
        _expect_ack(channel)
        channel.sendall(data + b"\0")
        _expect_ack(channel)
        channel.shutdown_write()
        status = channel.recv_exit_status()
        channel.close()
        if status != 0:
            raise OSError(f"scp upload of {name} ended with status {status}")

    def scp_get(self, name: str) -> bytes:
        channel = self.transport.open_session(timeout=self.timeout)
        channel.settimeout(self.timeout)
        channel.exec_command(f"scp -f {name}")
        channel.sendall(b"\0")
        header = _read_line(channel)
        if not header.startswith(b"C"):
            raise OSError(header[1:].decode(errors="replace").strip() or "scp download refused")
        size = int(header.split(b" ")[1])
        channel.sendall(b"\0")
        data = _read_exact(channel, size + 1)
        channel.sendall(b"\0")
        status = channel.recv_exit_status()
        channel.close()
        if data[-1:] != b"\0" or status != 0:
            raise OSError(f"scp download of {name} failed (status {status})")
        return data[:-1]

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> LunashClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _read_exact(channel: paramiko.Channel, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = channel.recv(n - len(data))
        if not chunk:
            raise EOFError("scp channel closed")
        data += chunk
    return data


def _read_line(channel: paramiko.Channel) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        line += _read_exact(channel, 1)
    return line


def _expect_ack(channel: paramiko.Channel) -> None:
    code = _read_exact(channel, 1)
    if code != b"\0":
        raise OSError(_read_line(channel).decode(errors="replace").strip())


def _drain(channel: paramiko.Channel) -> bytes:
    data = b""
    while chunk := channel.recv(65536):
        data += chunk
    return data
