"""The terminal side of one interactive lunash shell over an SSH channel.

Line editing as a PTY in canonical mode would do it: typed characters are echoed (``*`` while a
password is asked; nothing when the client turned ECHO off or asked for no PTY), CR, LF or CRLF
end a line, backspace edits, Ctrl-C ends the shell (as on the appliance), Ctrl-D on an empty line
is ``exit``. Each line then passes the faults (drop, hang, fail) and, once a command has finished,
its latency, before the ``ShellSession``'s output is sent.

With ``password_change`` the shell first asks for a new password, as a Luna 7 appliance does at
the first login (REFERENCE.md §1.1): the banner, a notice, ``Changing password for user <name>.``,
``New password:``, ``Retype new password:`` (nothing is echoed). On 7.x dialects the notice is the
one a 7.2 appliance prints (boxed notice and password rules; the rules are not enforced); on
5.x/6.x its wording is chosen here. Two equal answers call ``password_change(new)`` and open
lunash; different ones end the shell. The answers are never journaled.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable

import paramiko

from luna_ha.sim.appliance import ShellSession
from luna_ha.sim.faults import Faults

_TTY_OP_ECHO = 53


def pty_echo(modes: bytes) -> bool:
    """Whether the encoded terminal modes of a pty-req leave ECHO on (the default)."""
    i = 0
    while i < len(modes):
        opcode = modes[i]
        if opcode == 0 or opcode >= 160 or i + 5 > len(modes):
            break
        if opcode == _TTY_OP_ECHO:
            return int.from_bytes(modes[i + 1 : i + 5], "big") != 0
        i += 5
    return True


_BOX_7 = "*" * 53
_BOX_LINE_7 = "**" + " " * 49 + "**"


def password_notice_7(username: str) -> tuple[str, ...]:
    """What a Luna 7 appliance prints between its banner and ``New password:`` at a first login."""
    return (
        "",
        _BOX_7,
        _BOX_LINE_7,
        "**   For security purposes, you must change your   **",
        "**   password.                                     **",
        _BOX_LINE_7,
        "**   Please ensure you store your new password     **",
        "**   in a secure location.                         **",
        _BOX_LINE_7,
        "**               DO NOT LOSE IT!                   **",
        _BOX_LINE_7,
        _BOX_7,
        "",
        f"Changing password for user {username}.",
        "",
        "You can now choose the new password.",
        "",
        "The password must be at least 8 characters long.",
        "The password must contain characters from at least 3 of the following 4 categories:",
        "    - Uppercase letters (A through Z)",
        "    - Lowercase letters (a through z)",
        "    - Numbers (0 through 9)",
        "    - Non-alphanumeric characters (such as !, $, #, %)",
        "",
    )


class ShellTerminal:
    """The terminal side of one interactive shell: line editing, echo, faults, latency."""

    def __init__(
        self,
        session: ShellSession,
        transport: paramiko.Transport,
        channel: paramiko.Channel,
        *,
        echo: bool,
        faults: Faults,
        stopping: threading.Event,
        password_change: Callable[[str], None] | None = None,
        username: str = "",
    ) -> None:
        self.session = session
        self.transport = transport
        self.channel = channel
        self.echo = echo
        self.faults = faults
        self.stopping = stopping
        self.ordinal = 0
        self.current: str | None = None
        self.buffer: list[str] = []
        self.echoed: list[str] = []
        self.password_change = password_change
        self.username = username
        self.new_passwords: list[str] = []

    def send(self, text: str) -> None:
        if text:
            self.channel.sendall(text.encode())

    def echo_out(self, text: str) -> None:
        """Echo typed input; it leaves with the next :meth:`flush`, as a terminal's echo of input
        that arrived together leaves in one read of the pty, not one SSH packet a character."""
        if self.echo:
            self.echoed.append(text)

    def flush(self) -> None:
        text, self.echoed = "".join(self.echoed), []
        self.send(text)

    def abandoned(self) -> bool:
        return self.channel.closed or not self.transport.is_active() or self.stopping.is_set()

    def run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        if self.password_change is not None:
            dialect = self.session.state.dialect
            notice = (
                password_notice_7(self.username)
                if dialect.family >= 7
                else (
                    "*" * 66,
                    "*   For security purposes, you must change your password now.   *",
                    "*" * 66,
                    f"Changing password for user {self.username}.",
                )
            )
            self.send("\r\n".join((dialect.banner, "", *notice, "New password: ")))
        else:
            self.send(self.session.greeting())
        after_cr = False
        while not self.session.closed:
            data = self.channel.recv(4096)
            if not data:
                return
            for char in decoder.decode(data):
                if char == "\n" and after_cr:
                    after_cr = False
                    continue
                after_cr = char == "\r"
                if not self.key(char):
                    return
            self.flush()

    def key(self, char: str) -> bool:
        """Handle one typed character; False ends the shell."""
        if char in "\r\n":
            line = "".join(self.buffer)
            self.buffer.clear()
            self.echo_out("\r\n")
            self.flush()
            if self.password_change is not None:
                return self.new_password(line)
            return self.line(line) and not self.session.closed
        if char == "\x03":
            return False
        if char == "\x04" and not self.buffer:
            self.line("exit")
            return False
        if char in "\x7f\x08":
            if self.buffer:
                self.buffer.pop()
                self.echo_out("\b \b")
            return True
        if char.isprintable() or char == "\t":
            self.buffer.append(char)
            if self.password_change is None:
                self.echo_out("*" if self.session.awaiting_secret else char)
        return True

    def new_password(self, line: str) -> bool:
        """One answer of the forced password change; False ends the shell."""
        self.new_passwords.append(line)
        if len(self.new_passwords) == 1:
            self.send("Retype new password: ")
            return True
        first, again = self.new_passwords
        self.new_passwords.clear()
        if not first or first != again:
            self.send("Sorry, passwords do not match.\r\npasswd: Authentication token manipulation error\r\n")
            return False
        assert self.password_change is not None
        self.password_change(first)
        self.password_change = None
        self.send(
            "passwd: all authentication tokens updated successfully.\r\n"
            "Password change successful.\r\n\r\n" + self.session.prompt
        )
        return True

    def line(self, line: str) -> bool:
        """Run one line through faults, the session and latency; False when the connection dropped."""
        command = self.session.command_of(line)
        action = None
        if command is not None:
            self.ordinal += 1
            self.current = command
            action = self.faults.on_command(command, self.ordinal)
        if action is not None and action.kind == "drop" and not action.after_execute:
            self.session.receive_only(line)
            self.transport.close()
            return False
        if action is not None and action.kind == "flood":
            self.session.receive_only(line)
            self.flush()
            self.faults.stream_flood(self.channel.sendall, self.abandoned)
            return False
        if action is not None and action.kind == "hang":
            assert action.hang is not None
            if not action.hang.hold(self.abandoned):
                self.session.receive_only(line)
                return False
        output = (
            self.session.fail(line, action.message)
            if action is not None and action.kind == "fail"
            else self.session.feed(line)
        )
        if action is not None and action.kind == "drop":
            self.transport.close()
            return False
        if not self.session.awaiting_answer and (command is not None or self.current is not None):
            delay = self.faults.latency_for(self.current)
            self.current = None
            if delay > 0 and self.stopping.wait(delay):
                return False
        self.send(output)
        return True
