"""The appliance side of legacy SCP (``scp -t`` sink, ``scp -f`` source) over one exec channel.

Files live flat in the manager's home directory: a target is a plain file name (``./`` and
``~/`` prefixes are accepted and dropped); ``.``, ``~`` or an empty target on upload means "the
home directory", and the name from the ``C`` line is used. Directories (``-r``, ``D`` lines),
paths with ``/`` or ``..``, hidden names and files over 1 MiB are refused with an SCP error
(``\\x01scp: …``) and exit status 1. ``server.pem`` is read-only. Time lines (``-p``) are
acknowledged and ignored.

Both sides take two hooks per file (the simulator's faults use them): ``before(name)`` once the
file would move (an upload's ``C`` line passed the checks above, a download's file exists), and
``after(name)`` once it moved as far as the client cannot tell the outcome (an upload is stored,
its last acknowledgement not yet sent; a download's header is acknowledged, its content not yet
sent). A hook may block, raise ``ScpError`` (answered as usual) or raise anything else (the
transfer ends without another byte).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

MAX_FILE_BYTES = 1 << 20
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@+-]{0,254}")
_HOME_TARGETS = ("", ".", "~", "./", "~/")
READ_ONLY = frozenset({"server.pem"})


class Channel(Protocol):
    def recv(self, nbytes: int) -> bytes: ...

    def sendall(self, s: bytes) -> None: ...


FileHook = Callable[[str], None]


class ScpError(Exception):
    """Ends the transfer; the message goes to the client after ``\\x01``."""


def _no_hook(name: str) -> None:
    return None


@dataclass(frozen=True)
class ScpRequest:
    direction: Literal["upload", "download"]
    #: A home-directory file name, or None for "the home directory" (upload only).
    name: str | None
    target: str


def parse_scp_command(command: str) -> ScpRequest | None:
    """The request in an exec command line, or None when it is not an ``scp -t``/``-f`` call."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or words[0] != "scp":
        return None
    direction: Literal["upload", "download"] | None = None
    paths: list[str] = []
    options_done = False
    for word in words[1:]:
        if not options_done and word == "--":
            options_done = True
        elif not options_done and word.startswith("-") and len(word) > 1:
            if "r" in word:
                raise ScpError("scp: directories are not supported")
            if "t" in word:
                direction = "upload"
            if "f" in word:
                direction = "download"
        else:
            paths.append(word)
    if direction is None or len(paths) != 1:
        return None
    target = paths[0]
    if target in _HOME_TARGETS and direction == "upload":
        return ScpRequest(direction, None, target)
    return ScpRequest(direction, home_file_name(target), target)


def home_file_name(path: str) -> str:
    name = path.removeprefix("./").removeprefix("~/")
    if not _NAME_RE.fullmatch(name) or ".." in name:
        raise ScpError(f"scp: {path}: Permission denied")
    return name


class _Reader:
    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._buffer = b""

    def _fill(self) -> bool:
        data = self._channel.recv(65536)
        self._buffer += data
        return bool(data)

    def line(self) -> bytes | None:
        """One ``\\n``-terminated line without the newline; None at a clean end of stream."""
        while b"\n" not in self._buffer:
            if not self._fill():
                if self._buffer:
                    raise ScpError("scp: protocol error: truncated line")
                return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not self._fill():
                raise ScpError("scp: protocol error: unexpected end of file")
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def ack(self) -> None:
        code = self.exactly(1)
        if code == b"\0":
            return
        message = self.line() or b""
        raise ScpError(message.decode(errors="replace") or "scp: transfer refused by the client")


def serve_upload(
    channel: Channel,
    request: ScpRequest,
    store: Callable[[str, bytes], None],
    *,
    before: FileHook = _no_hook,
    after: FileHook = _no_hook,
) -> list[str]:
    """Receive files (sink side); ``store(name, data)`` keeps each. Returns the stored names."""
    reader, stored = _Reader(channel), list[str]()
    channel.sendall(b"\0")
    while True:
        line = reader.line()
        if line is None:
            return stored
        kind, rest = line[:1], line[1:].decode(errors="replace")
        if kind == b"T":
            channel.sendall(b"\0")
        elif kind == b"C":
            parts = rest.split(" ", 2)
            if len(parts) != 3 or not parts[1].isdigit():
                raise ScpError("scp: protocol error: bad C line")
            size = int(parts[1])
            name = request.name or home_file_name(parts[2])
            if name in READ_ONLY:
                raise ScpError(f"scp: {name}: Permission denied")
            if size > MAX_FILE_BYTES:
                raise ScpError(f"scp: {name}: file too large")
            before(name)
            channel.sendall(b"\0")
            data = reader.exactly(size)
            reader.ack()
            store(name, data)
            stored.append(name)
            after(name)
            channel.sendall(b"\0")
        elif kind in (b"D", b"E"):
            raise ScpError("scp: directories are not supported")
        elif kind in (b"\x01", b"\x02"):
            raise ScpError(rest or "scp: the client reported an error")
        else:
            raise ScpError("scp: protocol error: unexpected input")


def serve_download(
    channel: Channel,
    name: str,
    load: Callable[[str], bytes | None],
    *,
    before: FileHook = _no_hook,
    after: FileHook = _no_hook,
) -> None:
    """Send one file (source side); ``load(name)`` reads it, None when it does not exist."""
    reader = _Reader(channel)
    reader.ack()
    _existing(load, name)
    before(name)
    data = _existing(load, name)  # read again: a held transfer sends the file as it is then
    channel.sendall(f"C0644 {len(data)} {name}\n".encode())
    reader.ack()
    after(name)
    channel.sendall(data + b"\0")
    reader.ack()


def _existing(load: Callable[[str], bytes | None], name: str) -> bytes:
    data = load(name)
    if data is None:
        raise ScpError(f"scp: {name}: No such file or directory")
    return data
