"""How a simulated lunash command talks: replies, questions, failures, the per-command context.

A handler gets a ``Context`` and the parsed ``Arguments`` and returns a ``Reply`` or, when it may
ask something, is a generator that yields ``Ask`` and receives the typed answer; the shell's
prompt state machine (``appliance.py``) drives it. Failures raise ``Stop`` with their reply.

Chosen texts (REFERENCE.md is silent): anything but ``proceed`` at a confirmation (normally
``quit``) prints ``Command aborted.`` with ``Command Result : 65535 (Luna Shell execution)``;
two different answers to a password/domain question print ``Error:  The two entries do not
match.``, an empty one ``Error:  A value is required.``
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field

from luna_ha.sim.state import ApplianceModel
from luna_ha.sim.syntax import Arguments, Syntax

SUCCESS = 0
SHELL_FAILURE = 65535
#: What the shell prints where the answer to a question is typed (after the question's lines).
INPUT_MARKER = "> "
RESULT_TEXT = {SUCCESS: "Success", SHELL_FAILURE: "Luna Shell execution"}


@dataclass(frozen=True)
class Reply:
    body: tuple[str, ...]
    code: int = SUCCESS


@dataclass(frozen=True)
class Ask:
    lines: tuple[str, ...]
    #: The answer is a password or cloning domain: echoed as `*`, journaled masked.
    secret: bool = False
    #: Printed on a line of its own after ``lines``; the answer is typed after it.
    marker: str = INPUT_MARKER


class Stop(Exception):
    """Ends a command early with ``reply`` (an error, or an aborted confirmation)."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        super().__init__(reply.body)


def fail(*messages: str) -> Stop:
    return Stop(Reply(tuple(f"Error:  {m}" for m in messages), SHELL_FAILURE))


class LoginState:
    """HSM Admin login of one shell session: valid for the HSM generation it was made in."""

    def __init__(self) -> None:
        self.generation: int | None = None

    def logged_in(self, state: ApplianceModel) -> bool:
        return not state.zeroized and self.generation == state.generation


@dataclass
class Context:
    state: ApplianceModel
    login: LoginState
    name: str
    #: Lines printed so far, shown before the next question or the final reply.
    said: list[str] = field(default_factory=list)

    @property
    def logged_in(self) -> bool:
        return self.login.logged_in(self.state)

    def say(self, *lines: str) -> None:
        self.said.extend(lines)

    def ask(self, *lines: str, secret: bool = False, marker: str = INPUT_MARKER) -> Ask:
        ask = Ask((*self.said, *lines), secret, marker)
        self.said.clear()
        return ask

    def done(self, *lines: str) -> Reply:
        return Reply((*lines, f"'{self.name}' successful."))


Interaction = Generator[Ask, str, Reply]
Handler = Callable[[Context, Arguments], Reply | Interaction]


@dataclass(frozen=True)
class ShellCommand:
    name: str
    handler: Handler
    syntax: Syntax = field(default_factory=Syntax)
    mutating: bool = False
    auth: bool = False


def confirm(ctx: Context, *lines: str, marker: str = INPUT_MARKER) -> Generator[Ask, str, None]:
    answer = yield ctx.ask(*lines, marker=marker)
    if answer.strip().lower() != "proceed":
        raise Stop(Reply(("Command aborted.",), SHELL_FAILURE))


def ask_twice(
    ctx: Context, question: str, again: str, marker: str = INPUT_MARKER
) -> Generator[Ask, str, str]:
    first = yield ctx.ask(question, secret=True, marker=marker)
    second = yield ctx.ask(again, secret=True, marker=marker)
    if first != second:
        raise fail("The two entries do not match.")
    if not first:
        raise fail("A value is required.")
    return first
