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
* ``wrong_host_key(True)``: new connections are served with a different host key.
* Latency: seconds to wait before a command's final output, per canonical command or default.

Commands are named canonically (``partition create``), case-insensitively.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from luna_ha.sim.commands import COMMANDS, EXIT, QUIT

FaultKind = Literal["drop", "fail", "hang"]
_KNOWN = {name.lower(): name for name in (*COMMANDS, EXIT, QUIT)}


def _canonical(command: str) -> str:
    try:
        return _KNOWN[command.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown lunash command {command!r} (use the canonical name)") from None


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
    message: str = ""
    after_execute: bool = False
    hang: Hang | None = None


@dataclass
class _Rule:
    action: FaultAction
    command: str | None
    nth: int | None
    times: int | None

    def matches(self, command: str, ordinal: int) -> bool:
        return (self.command is None or self.command == command) and (self.nth is None or self.nth == ordinal)


class Faults:
    def __init__(self, latency: Mapping[str, float] | None = None, default_latency: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._hangs: list[Hang] = []
        self._refuse = False
        self._wrong_key = False
        self._latency = {_canonical(k): float(v) for k, v in (latency or {}).items()}
        self._default_latency = float(default_latency)

    # -- setting ---------------------------------------------------------------------------------

    def refuse(self, on: bool = True) -> None:
        self._refuse = on

    def wrong_host_key(self, on: bool = True) -> None:
        self._wrong_key = on

    def drop(
        self,
        *,
        command: str | None = None,
        nth: int | None = None,
        after_execute: bool = False,
        times: int | None = 1,
    ) -> None:
        if command is None and nth is None:
            raise ValueError("drop needs a command, an nth command line, or both")
        if nth is not None and nth < 1:
            raise ValueError("nth counts command lines from 1")
        self._add(FaultAction("drop", after_execute=after_execute), command, nth, times)

    def fail(self, command: str, message: str | None = None, *, times: int | None = None) -> None:
        name = _canonical(command)
        self._add(FaultAction("fail", message or f"'{name}' failed. (simulated fault)"), name, None, times)

    def hang(self, command: str, *, times: int | None = None) -> Hang:
        hang = Hang()
        with self._lock:
            self._hangs.append(hang)
        self._add(FaultAction("hang", hang=hang), command, None, times)
        return hang

    def set_latency(self, seconds: float, command: str | None = None) -> None:
        """Per-command latency, or the default for every other command when ``command`` is None."""
        with self._lock:
            if command is None:
                self._default_latency = seconds
            else:
                self._latency[_canonical(command)] = seconds

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

    def _add(self, action: FaultAction, command: str | None, nth: int | None, times: int | None) -> None:
        rule = _Rule(action, None if command is None else _canonical(command), nth, times)
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
        with self._lock:
            for rule in self._rules:
                if rule.matches(command, ordinal):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self._rules.remove(rule)
                    return rule.action
        return None

    def latency_for(self, command: str | None) -> float:
        with self._lock:
            if command is None:
                return self._default_latency
            return self._latency.get(command, self._default_latency)
