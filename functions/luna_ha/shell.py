"""What the engine needs of a session with one appliance, and the values a session hands back.

:class:`ApplianceShell` is the port: :class:`~luna_ha.ssh.LunaShell` is the adapter over SSH, and a
test may give the engine any object of this shape (``Engine(shell_factory=...)``). No paramiko here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from luna_ha.errors import CommandFailed
from luna_ha.lunash.commands import Command
from luna_ha.lunash.dialect import Outcome
from luna_ha.lunash.parsers import CommandResult, known_outcome, parse_result


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

    @classmethod
    def parse(cls, text: str) -> Output:
        return cls(text, parse_result(text))

    @property
    def ok(self) -> bool:
        return self.result.ok

    def checked(self, host: str, step: str, command: Command, tolerate: Collection[Outcome] = ()) -> Output:
        """This output when it succeeded or failed with a known outcome in ``tolerate``; otherwise
        ``CommandFailed`` naming the appliance, the step and the command (masked)."""
        if self.ok or known_outcome(command.name, self.result) in tolerate:
            return self
        detail = (
            "; ".join(line.strip() for line in self.result.errors) or f"Command Result {self.result.code}"
        )
        raise CommandFailed(host, step, f"'{command.display}' failed: {detail}")


class ApplianceShell(Protocol):
    """One open session with one appliance: lunash commands, and files in its home directory.

    Opened by entering it (``with factory(target, deadline, observer) as shell``), closed on exit.
    A failed command raises (``CommandFailed`` naming appliance and step) unless its outcome is in
    ``tolerate``; then the failed ``Output`` comes back for the caller to read."""

    def __enter__(self) -> ApplianceShell: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def run(self, command: Command, *, step: str | None = None, tolerate: Collection[Outcome] = ()) -> Output:
        """Send one lunash command; its parsed result."""
        ...

    def put_file(self, name: str, data: bytes, *, step: str) -> None:
        """Write ``name`` in the appliance home directory."""
        ...

    def get_file(self, name: str, *, step: str) -> bytes:
        """Read ``name`` from the appliance home directory."""
        ...

    def close(self) -> None: ...
