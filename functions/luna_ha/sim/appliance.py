"""The socket-free state machine of a simulated Luna appliance's shell (5.x/6.x and 7.x dialects).

``ApplianceModel`` (``state.py``) is the appliance; one ``ShellSession`` per interactive shell turns
each received line into the text lunash prints back. The terminal layer (``server.py``) echoes
what is typed (``*`` for secrets) and ends the line with CRLF; ``feed`` returns everything after
that: for a command

    <blank line>
    <body lines>
    <blank line>
    Command Result : <n> (<text>)
    [<hostname>] lunash:>

and for a question (a command lacking ``-force``, or a missing inline password) the question's
lines and an input marker (``> ``; some 7.x questions indent it or end with their own text);
the next line fed is the answer. Lines end with CRLF. The commands a line can name are those
of the appliance's dialect (``commands.commands_for``).

An empty line prints the prompt again; ``quit`` at the prompt is a no-op (prompt only); ``exit``
ends the session (``closed`` becomes true, no output). HSM Admin login belongs to the session.
Every received line goes to the journal with its secrets masked.
"""

from __future__ import annotations

from luna_ha.sim.commands import EXIT, QUIT, commands_for, word_tree_for
from luna_ha.sim.dialogue import (
    INPUT_MARKER,
    RESULT_TEXT,
    SHELL_FAILURE,
    SUCCESS,
    Ask,
    Context,
    Interaction,
    LoginState,
    Reply,
    ShellCommand,
    Stop,
    fail,
)
from luna_ha.sim.journal import MASK, Journal, JournalEntry
from luna_ha.sim.state import (
    DEFAULT_DIALECT,
    DIALECTS,
    ApplianceModel,
    Dialect,
    Partition,
    RegisteredClient,
)
from luna_ha.sim.syntax import (
    Arguments,
    SyntaxProblem,
    mask_spans,
    mask_unparsed,
    parse_arguments,
    resolve_command,
    tokenize,
)

__all__ = [
    "DIALECTS",
    "INPUT_MARKER",
    "ApplianceModel",
    "CommandLine",
    "Dialect",
    "Journal",
    "JournalEntry",
    "Partition",
    "RegisteredClient",
    "ShellSession",
]

CRLF = "\r\n"


class CommandLine:
    """A command line read against a dialect's table (5.x/6.x by default): name, traits and masked
    text even when it fails."""

    def __init__(self, line: str, dialect: Dialect = DIALECTS[DEFAULT_DIALECT]) -> None:
        self.name: str | None = None
        self.command: ShellCommand | None = None
        self.args: Arguments | None = None
        self.problem: str | None = None
        self.masked = mask_unparsed(line)
        try:
            tokens = tokenize(line)
            self.name, used = resolve_command(tokens, word_tree_for(dialect))
            rest = tokens[used:]
            self.command = commands_for(dialect).get(self.name)
            if self.command is None:
                if self.name not in (EXIT, QUIT):
                    raise SyntaxProblem(f"'{self.name}' is not available in this simulator.")
                if rest:
                    raise SyntaxProblem(f"Unexpected argument: {rest[0].text}")
                return
            self.args = parse_arguments(rest, self.command.syntax)
            self.masked = mask_spans(line, self.args.secret_spans)
        except SyntaxProblem as problem:
            self.problem = problem.message


class ShellSession:
    """One lunash shell: feed it received lines, send back what it returns."""

    def __init__(self, state: ApplianceModel, journal: Journal, session_id: str) -> None:
        self.state = state
        self.journal = journal
        self.session_id = session_id
        self.login = LoginState()
        self.closed = False
        self._pending: Interaction | None = None
        self._ask: Ask | None = None
        self._ctx: Context | None = None
        self._seq = -1

    # -- what the terminal layer needs ---------------------------------------------------------

    @property
    def prompt(self) -> str:
        return f"[{self.state.hostname}] lunash:>"

    def greeting(self) -> str:
        return self.state.dialect.banner + CRLF + CRLF + self.prompt

    @property
    def awaiting_answer(self) -> bool:
        return self._ask is not None

    @property
    def awaiting_secret(self) -> bool:
        return self._ask is not None and self._ask.secret

    @property
    def logged_in(self) -> bool:
        return self.login.logged_in(self.state)

    def command_of(self, line: str) -> str | None:
        """The canonical command a line at the prompt names (None for answers and non-commands)."""
        if self.awaiting_answer or not line.strip():
            return None
        return CommandLine(line, self.state.dialect).name

    # -- input --------------------------------------------------------------------------------

    def feed(self, line: str) -> str:
        """Process one received line (without its line ending); returns the output to send."""
        line = line.rstrip("\r\n")
        if self.closed:
            return ""
        if self._pending is not None:
            return self._answer(line)
        if not line.strip():
            return self.prompt
        parsed = CommandLine(line, self.state.dialect)
        self._begin(parsed)
        if parsed.problem is not None:
            return self._finish(fail(parsed.problem).reply)
        if parsed.command is None:
            self.closed = parsed.name == EXIT
            self.journal.finish(self._seq, SUCCESS)
            return "" if self.closed else self.prompt
        assert parsed.args is not None
        self._ctx = Context(self.state, self.login, parsed.command.name)
        try:
            with self.state.lock:
                outcome = parsed.command.handler(self._ctx, parsed.args)
        except Stop as stop:
            return self._finish(stop.reply)
        if isinstance(outcome, Reply):
            return self._finish(outcome)
        self._pending = outcome
        return self._step(None)

    def receive_only(self, line: str) -> None:
        """Journal a command line that was received but never executed (the connection dropped)."""
        self._begin(CommandLine(line.rstrip("\r\n"), self.state.dialect))

    def fail(self, line: str, message: str) -> str:
        """Answer a command line with an injected ``Error:`` (a fault) instead of running it."""
        self._begin(CommandLine(line.rstrip("\r\n"), self.state.dialect))
        return self._finish(fail(message).reply)

    # -- internals ----------------------------------------------------------------------------

    def _begin(self, parsed: CommandLine) -> None:
        command = parsed.command
        self._ctx = None
        self._seq = self.journal.record(
            session=self.session_id,
            kind="command",
            line=parsed.masked,
            command=parsed.name,
            mutating=command is not None and command.mutating,
            auth=command is not None and command.auth,
        )

    def _answer(self, line: str) -> str:
        assert self._ask is not None and self._ctx is not None
        self.journal.record(
            session=self.session_id,
            kind="answer",
            line=MASK if self._ask.secret else line,
            command=self._ctx.name,
        )
        return self._step(line)

    def _step(self, answer: str | None) -> str:
        assert self._pending is not None
        started = self._ask is not None
        try:
            with self.state.lock:
                ask = next(self._pending) if answer is None else self._pending.send(answer)
        except StopIteration as done:
            return self._finish(done.value)
        except Stop as stop:
            return self._finish(stop.reply)
        self._ask = ask
        opens_blank = started or (bool(ask.lines) and ask.lines[0] == "")
        lines = list(ask.lines) if opens_blank else ["", *ask.lines]
        return CRLF.join(lines) + CRLF + ask.marker

    def _finish(self, reply: Reply) -> str:
        started = self._ask is not None
        said = self._ctx.said if self._ctx is not None else []
        self._pending, self._ask, self._ctx = None, None, None
        self.journal.finish(self._seq, reply.code)
        text = RESULT_TEXT.get(reply.code, RESULT_TEXT[SHELL_FAILURE])
        lines = [
            *([] if started else [""]),
            *said,
            *reply.body,
            "",
            f"Command Result : {reply.code} ({text})",
        ]
        return CRLF.join(lines) + CRLF + self.prompt
