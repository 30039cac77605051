"""Errors of the lunash dialect layer. Messages name the command and the problem, never whole
outputs and never secret values."""

from __future__ import annotations

from luna_ha.errors import CommandBuildError, LunaHAError

_MAX_DETAIL = 160


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


class InvalidArgument(CommandBuildError):
    """A builder argument cannot be placed safely on a lunash line; ``argument`` names it."""

    def __init__(self, argument: str, problem: str) -> None:
        self.argument = argument
        self.problem = problem
        super().__init__(f"{argument}: {problem}")


class ParseError(LunaHAError):
    """Output of ``command`` does not have the expected shape; ``problem`` says what was missing."""

    def __init__(self, command: str, problem: str) -> None:
        self.command = command
        self.problem = _clip(problem)
        super().__init__(f"Cannot read '{command}' output: {self.problem}")


class CommandReportedFailure(ParseError):
    """The output is a failure report (non-zero ``Command Result`` or ``Error:`` lines), not data."""

    def __init__(self, command: str, code: int | None, errors: tuple[str, ...]) -> None:
        self.code = code
        self.errors = errors
        detail = "; ".join(errors[:2]) if errors else "no Error: line"
        super().__init__(command, f"the command failed (Command Result {code}): {detail}")


class ClientNotFound(CommandReportedFailure):
    """``client show`` / ``client fingerprint`` named a client that is not registered."""


class HsmUnreachable(CommandReportedFailure):
    """The appliance answered but its HSM card did not (`Unable to communicate with HSM`)."""
