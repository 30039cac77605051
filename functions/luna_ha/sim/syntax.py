"""lunash command-line syntax: tokens, abbreviated words and options, secret masking.

Rules (REFERENCE.md §1.2): ``noun verb -option value``; command words and option names are
case-insensitive and may be abbreviated to any unambiguous prefix (an exact name always wins);
values keep their case and may be double-quoted (a quoted token is never read as an option).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from luna_ha.sim.journal import MASK


class SyntaxProblem(Exception):
    """The line cannot be read as a command; ``message`` becomes an ``Error:`` line."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int
    quoted: bool

    @property
    def is_option(self) -> bool:
        return not self.quoted and len(self.text) > 1 and self.text.startswith("-")


@dataclass(frozen=True)
class OptionSpec:
    name: str
    takes_value: bool = True
    required: bool = False
    #: Its value is a password or cloning domain: masked in the journal.
    secret: bool = False


@dataclass(frozen=True)
class Syntax:
    options: tuple[OptionSpec, ...] = ()
    #: Required positional arguments, by name (`ntls bind <device>`).
    positionals: tuple[str, ...] = ()


@dataclass(frozen=True)
class Arguments:
    values: Mapping[str, str]
    flags: frozenset[str]
    positionals: tuple[str, ...]
    #: (start, end) of each secret value in the line.
    secret_spans: tuple[tuple[int, int], ...]

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def __getitem__(self, name: str) -> str:
        return self.values[name]


def tokenize(line: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        start, quoted, parts = i, False, []
        while i < n and not line[i].isspace():
            if line[i] == '"':
                close = line.find('"', i + 1)
                if close < 0:
                    raise SyntaxProblem("Unterminated quoted value.")
                parts.append(line[i + 1 : close])
                quoted, i = True, close + 1
            else:
                parts.append(line[i])
                i += 1
        tokens.append(Token("".join(parts), start, i, quoted))
    return tokens


def resolve(word: str, candidates: Sequence[str], what: str) -> str:
    """The candidate ``word`` names: an exact match (any case) or its only prefix match."""
    lowered = word.lower()
    for candidate in candidates:
        if candidate.lower() == lowered:
            return candidate
    matches = [c for c in candidates if c.lower().startswith(lowered)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SyntaxProblem(f"Invalid {what}: {word}")
    raise SyntaxProblem(f"Ambiguous {what}: {word} (could be: {', '.join(matches)})")


def resolve_command(tokens: Sequence[Token], tree: Mapping[str, Sequence[str]]) -> tuple[str, int]:
    """(canonical command, number of tokens it used). ``tree`` maps nouns to verbs; a verb may be
    several words (``my`` -> ``file delete``), each resolved on its own; no verbs: a one-word command.
    When one verb begins another (``init`` and ``init co``), the longer wins if the line goes on
    with its next word."""
    if not tokens or tokens[0].is_option:
        raise SyntaxProblem("Invalid command: " + (tokens[0].text if tokens else ""))
    noun = resolve(tokens[0].text, list(tree), "command")
    words = [noun]
    remaining = [verb.split() for verb in tree[noun]]
    while remaining:
        used = len(words)
        if any(not rest for rest in remaining):
            # A whole command; a longer one (`partition init` / `partition init co`) only when
            # the next word names its continuation.
            longer = _continuation(tokens, used, [rest for rest in remaining if rest])
            if longer is None:
                break
            words.append(longer)
            remaining = [rest[1:] for rest in remaining if rest and rest[0] == longer]
            continue
        choices = list(dict.fromkeys(rest[0] for rest in remaining))
        if len(tokens) <= used or tokens[used].is_option:
            heads = [" ".join(rest) for rest in remaining]
            raise SyntaxProblem(
                f"Incomplete command: {' '.join(words)} (expected one of: {', '.join(heads)})"
            )
        word = resolve(tokens[used].text, choices, "command")
        words.append(word)
        remaining = [rest[1:] for rest in remaining if rest[0] == word]
    return " ".join(words), len(words)


def _continuation(tokens: Sequence[Token], used: int, longer: list[list[str]]) -> str | None:
    """The next word of a longer command than the one ``tokens[:used]`` already names, or None."""
    if not longer or len(tokens) <= used or tokens[used].is_option:
        return None
    try:
        return resolve(tokens[used].text, list(dict.fromkeys(rest[0] for rest in longer)), "command")
    except SyntaxProblem:
        return None


def parse_arguments(tokens: Sequence[Token], syntax: Syntax) -> Arguments:
    names = [f"-{o.name}" for o in syntax.options]
    by_name = {o.name: o for o in syntax.options}
    values: dict[str, str] = {}
    flags: set[str] = set()
    positionals: list[str] = []
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.is_option:
            positionals.append(token.text)
            i += 1
            continue
        option = by_name[resolve(token.text, names, "option")[1:]]
        if option.name in values or option.name in flags:
            raise SyntaxProblem(f"Option given more than once: -{option.name}")
        if not option.takes_value:
            flags.add(option.name)
            i += 1
            continue
        if i + 1 >= len(tokens) or tokens[i + 1].is_option:
            raise SyntaxProblem(f"Missing value for option: -{option.name}")
        value = tokens[i + 1]
        values[option.name] = value.text
        if option.secret:
            spans.append((value.start, value.end))
        i += 2
    for option in syntax.options:
        if option.required and option.name not in values:
            raise SyntaxProblem(f"Missing required option: -{option.name}")
    if len(positionals) > len(syntax.positionals):
        raise SyntaxProblem(f"Unexpected argument: {positionals[len(syntax.positionals)]}")
    if len(positionals) < len(syntax.positionals):
        raise SyntaxProblem(f"Missing argument: <{syntax.positionals[len(positionals)]}>")
    return Arguments(values, frozenset(flags), tuple(positionals), tuple(spans))


def mask_spans(line: str, spans: Sequence[tuple[int, int]]) -> str:
    for start, end in sorted(spans, reverse=True):
        line = line[:start] + MASK + line[end:]
    return line


#: Option names that may carry a secret somewhere in lunash (`-password`, `-domain`, `-sopw`, and
#: 7.x `-psopin`, `-copin`; `-c` also over-masks `-client` values of lines that do not parse).
_SECRET_OPTION_INITIALS = ("-p", "-d", "-s", "-c")


def mask_unparsed(line: str) -> str:
    """Conservative masking of a line that did not parse: the value after any option whose name
    starts like a secret option's is masked (over-masking a partition name is harmless)."""
    try:
        tokens = tokenize(line)
    except SyntaxProblem:
        first = line.split(maxsplit=2)[:2]
        return " ".join([*first, MASK])
    spans = [
        (value.start, value.end)
        for option, value in itertools.pairwise(tokens)
        if option.is_option and option.text.lower().startswith(_SECRET_OPTION_INITIALS)
    ]
    return mask_spans(line, spans)
