"""What the simulated appliance received: one entry per command line, prompt answer, SCP, exec or
REST request.

Secrets never enter the journal: the values of ``-password``, ``-domain`` and ``-sopw`` (however
abbreviated), every answer to a password or cloning-domain prompt, and every password or domain
in a REST request body are replaced by ``********`` before an entry is made. Tests use
``mutating()`` / ``since(mark)`` to assert that a converge that has nothing to do sends no
mutating command.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Literal

MASK = "********"

EntryKind = Literal["command", "answer", "scp", "exec", "rest"]


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    time: float
    session: str
    kind: EntryKind
    #: The received text with secret values masked.
    line: str
    #: Canonical command (`client assignPartition`, `scp upload`), or None when it did not parse.
    command: str | None
    #: The command changes appliance configuration (init, regenCert, ntls bind, partition and
    #: client changes, file uploads), whether or not it succeeded.
    mutating: bool = False
    #: The command changes login state only (`hsm login`, `hsm logout`).
    auth: bool = False
    #: `Command Result` code (SCP/exec: the exit status; REST: the HTTP status); None until
    #: finished, for answers, and for what a fault cut short.
    result: int | None = None


class Journal:
    """Thread-safe, append-only (results are filled in when a command finishes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[JournalEntry] = []

    def record(
        self,
        *,
        session: str,
        kind: EntryKind,
        line: str,
        command: str | None,
        mutating: bool = False,
        auth: bool = False,
        result: int | None = None,
    ) -> int:
        """Add an entry; returns its sequence number for ``finish``."""
        with self._lock:
            seq = len(self._entries)
            self._entries.append(
                JournalEntry(seq, time.time(), session, kind, line, command, mutating, auth, result)
            )
            return seq

    def finish(self, seq: int, result: int) -> None:
        with self._lock:
            self._entries[seq] = replace(self._entries[seq], result=result)

    def entries(self) -> list[JournalEntry]:
        with self._lock:
            return list(self._entries)

    def commands(self) -> list[JournalEntry]:
        """Command lines only (no prompt answers), in arrival order."""
        return [e for e in self.entries() if e.kind == "command"]

    def mutating(self) -> list[JournalEntry]:
        return [e for e in self.entries() if e.mutating]

    def mark(self) -> int:
        """A position to pass to ``since``."""
        with self._lock:
            return len(self._entries)

    def since(self, mark: int) -> list[JournalEntry]:
        with self._lock:
            return self._entries[mark:]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
