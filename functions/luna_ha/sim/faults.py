"""Faults and latency a running simulated appliance injects; set and clear them at any time.

* ``refuse(True)``: every new TCP connection is reset right after accept (no SSH banner).
* ``drop(command=…, nth=…)``: the connection is closed when a shell receives that command (or its
  ``nth`` command line, counted per shell session from 1). By default before the command runs;
  ``after_execute=True`` runs it first and drops before any output (the client cannot know
  whether it happened). Fires once unless ``times`` says otherwise.
* ``fail(command, message)``: that command prints ``Error:  <message>`` and
  ``Command Result : 65535 (Luna Shell execution)`` without running. Until cleared.
* ``hang(command)``: that command prints nothing until the returned ``Hang`` is released (then
  it runs normally; ``clear()`` releases too), or the client closes the connection or the
  appliance stops (then it never runs and is journaled with result None). Until cleared.
* ``flood(command)``: once that command line is received the appliance streams text endlessly
  (``FLOOD_LINE`` over and over) and never prints a prompt; the command does not run and is
  journaled with result None. The stream ends when the client closes the connection or the
  appliance stops (the SSH window keeps the appliance's own memory flat). Until cleared.
* ``wrong_host_key(True)``: new connections are served with a different host key.
* Latency: seconds to wait before a command's final output, per canonical command or default;
  a REST request (7.x) waits as long before its answer, by its canonical name (``rest co init``)
  or the default. SCP transfers get none.

Commands are named canonically (``partition create``), case-insensitively.

Which use of a command: ``drop``, ``fail``, ``hang`` and ``flood`` all take ``nth`` (the command must be the
``nth`` command line of its shell session) and ``occurrence`` (the fault lets the first
``occurrence - 1`` matching commands through, counted across sessions from the moment it is set,
whether or not another fault acts on them, then acts ``times`` times). So
``fail("client show", occurrence=2, times=1)`` fails the second ``client show`` only.

SCP transfers take the same four faults under the journal's names ``scp upload`` and
``scp download``, optionally for one ``file`` (a home-directory file name), with ``occurrence``
counting that direction's transfers (``nth`` is for shell command lines only). A transfer is
one file; the fault acts once the appliance knows the file's name and would move it (an upload's
``C`` header line was accepted, a download's file exists):

* ``drop``: the connection closes before any of the file moves (an upload stores nothing).
  ``after_execute=True`` drops in the middle, where the client cannot know the outcome: an
  upload after the file is stored, before its last acknowledgement; a download after the file's
  header, before its content.
* ``fail(…, message)``: the client gets the error an scp client prints,
  ``scp: <file>: <message>`` (``\\x01`` line, exit status 1), and nothing moves.
* ``hang``: the transfer stalls until released (then goes on) or abandoned.
* ``flood``: a download announces a file of ``FLOOD_FILE_SIZE`` bytes and streams it endlessly;
  an upload is answered with an endless error line instead of its acknowledgement. Nothing is
  stored; the transfer ends when the client goes.

A transfer cut short by a drop or an abandoned hang is journaled with result None (no exit
status was ever sent), even when the upload was stored.

REST requests (``rest.py``, 7.x) take the same four faults under their canonical names
(``REST_REQUESTS``: ``rest hsm login``, ``rest partition init``, ``rest partition login``,
``rest co init``, ``rest co password``, and the session and read-only ones), selected by
``occurrence`` and ``times`` (``nth`` and ``file`` are for shell lines and transfers). A fault acts
once the request's method and path are known, before authentication:

* ``drop``: the connection closes without an answer; ``after_execute=True`` runs the request
  first (the client cannot know whether it happened).
* ``fail(…, message)``: HTTP 500 with ``{"error": message}``; the request does not run.
* ``hang``: no answer until released (then it runs) or abandoned (the client went, the appliance
  stopped: it never runs).
* ``flood``: HTTP 200 with a body that never ends; the request does not run.

A request cut short (drop, flood, abandoned hang) is journaled with result None.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypedDict, Unpack

import paramiko

from luna_ha.sim.commands import COMMANDS, EXIT, QUIT

FaultKind = Literal["drop", "fail", "hang", "flood"]
Direction = Literal["upload", "download"]
SCP_UPLOAD = "scp upload"
SCP_DOWNLOAD = "scp download"
TRANSFERS = (SCP_UPLOAD, SCP_DOWNLOAD)
SCP_FAILURE = "Input/output error (simulated fault)"
#: What a flooding appliance repeats (a plausible `hsm show` line, 80 bytes with its CRLF).
FLOOD_LINE = "   Partition: 154438865287,     Name: flood" + " " * 35 + "\r\n"
#: The size a flooded download announces (1 TiB).
FLOOD_FILE_SIZE = 1 << 40
_FLOOD_CHUNK = (FLOOD_LINE * (32768 // len(FLOOD_LINE))).encode()
#: The canonical names of the REST requests (``rest.py``), as faults and the journal name them.
REST_HSM_LOGIN = "rest hsm login"
REST_PARTITION_INIT = "rest partition init"
REST_PARTITION_LOGIN = "rest partition login"
REST_CO_INIT = "rest co init"
REST_CO_PASSWORD = "rest co password"  # noqa: S105 (a request name, not a password)
REST_REQUESTS = (
    "rest session open",
    "rest session close",
    "rest hsm list",
    "rest hsm show",
    REST_HSM_LOGIN,
    "rest partition list",
    "rest partition show",
    REST_PARTITION_INIT,
    REST_PARTITION_LOGIN,
    "rest co show",
    REST_CO_INIT,
    REST_CO_PASSWORD,
)
_KNOWN = {name.lower(): name for name in (*COMMANDS, EXIT, QUIT)}
_TARGETS = {**_KNOWN, **{name: name for name in (*TRANSFERS, *REST_REQUESTS)}}
#: What takes a latency: lunash commands and REST requests.
_TIMED = {**_KNOWN, **{name: name for name in REST_REQUESTS}}


def _canonical(command: str, known: Mapping[str, str] = _KNOWN) -> str:
    try:
        return known[command.strip().lower()]
    except KeyError:
        also = (
            " or an SCP transfer ('scp upload', 'scp download') or a REST request ('rest co init', ...)"
            if known is _TARGETS
            else ""
        )
        raise ValueError(f"unknown lunash command {command!r} (use the canonical name{also})") from None


class Hang:
    """Handle of a ``hang`` fault: observe that a command is hanging, then release it."""

    def __init__(self) -> None:
        self._released = threading.Event()
        self._started = threading.Event()

    @property
    def released(self) -> bool:
        return self._released.is_set()

    def wait_started(self, timeout: float = 10.0) -> bool:
        """True once some command is hanging on this fault."""
        return self._started.wait(timeout)

    def release(self) -> None:
        self._released.set()

    def hold(self, abandon: Callable[[], bool], poll: float = 0.05) -> bool:
        """Block until released (True) or ``abandon()`` turns true (False)."""
        self._started.set()
        while not self._released.wait(poll):
            if abandon():
                return False
        return True


@dataclass(frozen=True)
class FaultAction:
    kind: FaultKind
    #: ``fail``: the text after ``Error:  `` (lunash) or after ``scp: <file>: `` (SCP).
    message: str = ""
    after_execute: bool = False
    hang: Hang | None = None


@dataclass
class _Rule:
    action: FaultAction
    #: A canonical lunash command, ``scp upload`` / ``scp download``, or None (any command line).
    command: str | None
    nth: int | None
    file: str | None
    #: Matching commands or transfers still to let through before acting.
    skip: int
    times: int | None

    def matches_command(self, command: str, ordinal: int) -> bool:
        return (self.command is None or self.command == command) and (self.nth is None or self.nth == ordinal)

    def matches_transfer(self, transfer: str, name: str) -> bool:
        return self.command == transfer and (self.file is None or self.file == name)


class Where(TypedDict, total=False):
    """Which uses of a command a fault acts on (see the module docstring)."""

    nth: int | None
    occurrence: int | None
    file: str | None
    times: int | None


def _build_rule(action: FaultAction, command: str | None, where: Where, default_times: int | None) -> _Rule:
    """The rule for ``action`` at ``command`` and ``where``, its selectors checked."""
    unknown = sorted(set(where) - set(Where.__annotations__))
    if unknown:
        raise TypeError(
            f"unknown fault selector(s) {', '.join(unknown)} (use {', '.join(Where.__annotations__)})"
        )
    nth, occurrence, file = where.get("nth"), where.get("occurrence"), where.get("file")
    times = where.get("times", default_times)
    name = None if command is None else _canonical(command, _TARGETS)
    transfer = name in TRANSFERS
    if nth is not None and nth < 1:
        raise ValueError("nth counts command lines from 1")
    if nth is not None and transfer:
        raise ValueError("nth counts shell command lines; pick an SCP transfer by occurrence or file")
    if nth is not None and name in REST_REQUESTS:
        raise ValueError("nth counts shell command lines; pick a REST request by occurrence")
    if occurrence is not None and occurrence < 1:
        raise ValueError("occurrence counts from 1")
    if file is not None and not transfer:
        raise ValueError("file selects SCP transfers: use it with 'scp upload' or 'scp download'")
    if times is not None and times < 1:
        raise ValueError("times counts from 1 (None: until cleared)")
    return _Rule(action, name, nth, file, (occurrence or 1) - 1, times)


class Faults:
    def __init__(self, latency: Mapping[str, float] | None = None, default_latency: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._hangs: list[Hang] = []
        self._refuse = False
        self._wrong_key = False
        self._latency = {_canonical(k, _TIMED): float(v) for k, v in (latency or {}).items()}
        self._default_latency = float(default_latency)

    # -- setting ---------------------------------------------------------------------------------

    def refuse(self, on: bool = True) -> None:
        self._refuse = on

    def wrong_host_key(self, on: bool = True) -> None:
        self._wrong_key = on

    def drop(
        self, *, command: str | None = None, after_execute: bool = False, **where: Unpack[Where]
    ) -> None:
        """Close the connection at a command (or SCP transfer, or REST request); once unless
        ``times`` says otherwise.

        ``drop(command="scp upload", file="web.pem", after_execute=True)`` stores ``web.pem`` and
        drops before acknowledging it.
        """
        if command is None and where.get("nth") is None and where.get("occurrence") is None:
            raise ValueError("drop needs a command, an nth command line, an occurrence, or a combination")
        self._add(FaultAction("drop", after_execute=after_execute), command, where, default_times=1)

    def fail(self, command: str, message: str | None = None, **where: Unpack[Where]) -> None:
        """Answer a command with an error instead of running it; until cleared unless ``times``.

        ``fail("partition list", occurrence=2, times=1)`` fails the second ``partition list``;
        ``fail("scp download", "Permission denied", file="server.pem")`` fails that download with
        ``scp: server.pem: Permission denied``.
        """
        name = _canonical(command, _TARGETS)
        default = SCP_FAILURE if name in TRANSFERS else f"'{name}' failed. (simulated fault)"
        self._add(FaultAction("fail", message or default), name, where)

    def hang(self, command: str, **where: Unpack[Where]) -> Hang:
        """Stall a command (or SCP transfer) until the returned ``Hang`` is released; until cleared
        unless ``times``. ``hang("client show", nth=5)``: the fifth command line, if a ``client show``.
        """
        hang = Hang()
        self._add(FaultAction("hang", hang=hang), command, where)
        with self._lock:
            self._hangs.append(hang)
        return hang

    def flood(self, command: str, **where: Unpack[Where]) -> None:
        """Stream output endlessly instead of answering a command (or SCP transfer); until cleared
        unless ``times``. ``flood("hsm show")``: every ``hsm show`` gets an endless answer."""
        self._add(FaultAction("flood"), command, where)

    def set_latency(self, seconds: float, command: str | None = None) -> None:
        """Per-command latency, or the default for every other command when ``command`` is None."""
        with self._lock:
            if command is None:
                self._default_latency = seconds
            else:
                self._latency[_canonical(command, _TIMED)] = seconds

    def clear(self) -> None:
        """Remove every fault (latency stays) and release every hang."""
        with self._lock:
            self._rules.clear()
            hangs, self._hangs = self._hangs, []
            self._refuse = self._wrong_key = False
        for hang in hangs:
            hang.release()

    def release_hangs(self) -> None:
        with self._lock:
            hangs = list(self._hangs)
        for hang in hangs:
            hang.release()

    def _add(
        self, action: FaultAction, command: str | None, where: Where, *, default_times: int | None = None
    ) -> None:
        rule = _build_rule(action, command, where, default_times)
        with self._lock:
            self._rules.append(rule)

    # -- reading (the server) -------------------------------------------------------------------

    @property
    def refusing(self) -> bool:
        return self._refuse

    @property
    def host_key_wrong(self) -> bool:
        return self._wrong_key

    def on_command(self, command: str, ordinal: int) -> FaultAction | None:
        """The fault for the ``ordinal``-th command line of a session, consuming one use of it."""
        return self._take(lambda rule: rule.matches_command(command, ordinal))

    def on_rest(self, request: str) -> FaultAction | None:
        """The fault for a REST request (canonical name, ``rest co init``), consuming one use of it."""
        return self._take(lambda rule: rule.command == request)

    def on_transfer(self, direction: Direction, name: str) -> FaultAction | None:
        """The fault for a transfer of the home-directory file ``name``, consuming one use of it."""
        transfer = f"scp {direction}"
        return self._take(lambda rule: rule.matches_transfer(transfer, name))

    def _take(self, matches: Callable[[_Rule], bool]) -> FaultAction | None:
        """The first rule due among those matching; every matching rule counts the occurrence."""
        due: _Rule | None = None
        with self._lock:
            for rule in [r for r in self._rules if matches(r)]:
                if rule.skip > 0:
                    rule.skip -= 1
                elif due is None:
                    due = rule
            if due is None:
                return None
            if due.times is not None:
                due.times -= 1
                if due.times <= 0:
                    self._rules.remove(due)
            return due.action

    @staticmethod
    def stream_flood(send: Callable[[bytes], None], abandoned: Callable[[], bool]) -> None:
        """Send flood text with ``send`` until ``abandoned()`` or the connection fails. ``send``
        blocks while the client's SSH window is full, so a client that stops reading costs nothing."""
        try:
            while not abandoned():
                send(_FLOOD_CHUNK)
        except (OSError, EOFError, paramiko.SSHException):
            return

    def latency_for(self, command: str | None) -> float:
        with self._lock:
            if command is None:
                return self._default_latency
            return self._latency.get(command, self._default_latency)
