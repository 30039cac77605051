"""The simulator's fault rules (which command or SCP transfer a fault hits) and the SCP fault hooks."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from luna_ha.sim.faults import SCP_FAILURE, FaultAction, Faults
from luna_ha.sim.scp import FileHook, ScpError, ScpRequest, serve_download, serve_upload


def kinds(faults: Faults, commands: list[str]) -> list[str | None]:
    """The fault kind each command line of one session meets (None: no fault)."""
    return [
        action.kind if (action := faults.on_command(command, ordinal)) else None
        for ordinal, command in enumerate(commands, 1)
    ]


# -- which command: nth and occurrence ------------------------------------------------------------


def test_fail_and_hang_at_the_nth_command_line_only_when_it_is_that_command() -> None:
    faults = Faults()
    faults.fail("partition list", nth=3)
    faults.hang("client show", nth=2)
    session = ["hsm show", "client show", "partition list", "partition list", "client show"]
    assert kinds(faults, session) == [None, "hang", "fail", None, None]
    assert kinds(faults, ["client show", "client show", "partition list"]) == [None, "hang", "fail"], (
        "without times, every session that gets there"
    )


def test_occurrence_hits_the_nth_matching_command_then_acts_times_times() -> None:
    faults = Faults()
    faults.fail("client show", occurrence=2, times=1)
    session = ["client show", "hsm show", "client show", "client show"]
    assert kinds(faults, session) == [None, None, "fail", None]


def test_occurrence_counts_across_sessions_from_when_the_fault_is_set() -> None:
    faults = Faults()
    assert kinds(faults, ["partition list"]) == [None]
    faults.drop(command="partition list", occurrence=2)
    assert kinds(faults, ["partition list"]) == [None]
    assert kinds(faults, ["hsm show", "partition list"]) == [None, "drop"]
    assert kinds(faults, ["partition list"]) == [None], "a drop fires once by default"


def test_occurrence_without_times_acts_from_then_on() -> None:
    faults = Faults()
    faults.fail("hsm show", occurrence=2)
    assert kinds(faults, ["hsm show"] * 4) == [None, "fail", "fail", "fail"]


def test_occurrence_counts_commands_another_fault_acted_on() -> None:
    faults = Faults()
    faults.fail("hsm show", times=1)
    hang = faults.hang("hsm show", occurrence=2, times=1)
    first, second = faults.on_command("hsm show", 1), faults.on_command("hsm show", 2)
    assert first is not None and first.kind == "fail"
    assert second is not None and second.hang is hang
    assert faults.on_command("hsm show", 3) is None


def test_occurrence_and_nth_together_count_the_commands_at_that_place() -> None:
    faults = Faults()
    faults.fail("client list", nth=2, occurrence=2, times=1)
    assert kinds(faults, ["hsm show", "client list", "client list"]) == [None, None, None]
    assert kinds(faults, ["hsm show", "client list"]) == [None, "fail"]


def test_drop_at_an_occurrence_of_any_command_line() -> None:
    faults = Faults()
    faults.drop(occurrence=3, after_execute=True)
    action = [faults.on_command(c, n) for n, c in enumerate(["hsm show", "client list", "hsm show"], 1)]
    assert action[:2] == [None, None]
    assert action[2] == FaultAction("drop", after_execute=True)


@pytest.mark.parametrize(
    ("set_fault", "message"),
    [
        pytest.param(lambda f: f.fail("hsm show", nth=0), "nth counts command lines from 1", id="nth-0"),
        pytest.param(
            lambda f: f.hang("hsm show", occurrence=0), "occurrence counts from 1", id="occurrence-0"
        ),
        pytest.param(lambda f: f.drop(command="hsm show", times=0), "times counts from 1", id="times-0"),
        pytest.param(lambda f: f.drop(), "drop needs a command", id="drop-anything"),
        pytest.param(lambda f: f.fail("scp upload", nth=1), "nth counts shell command lines", id="scp-nth"),
        pytest.param(
            lambda f: f.hang("client list", file="web.pem"), "file selects SCP transfers", id="lunash-file"
        ),
        pytest.param(lambda f: f.drop(nth=1, file="web.pem"), "file selects SCP transfers", id="any-file"),
        pytest.param(
            lambda f: f.fail("scp uplod"), r"unknown lunash command 'scp uplod' .*'scp upload'", id="typo"
        ),
        pytest.param(lambda f: f.set_latency(1.0, "scp upload"), "unknown lunash command", id="scp-latency"),
    ],
)
def test_fault_selectors_are_validated(set_fault: Callable[[Faults], object], message: str) -> None:
    faults = Faults()
    with pytest.raises(ValueError, match=message):
        set_fault(faults)
    assert faults.on_command("hsm show", 1) is None
    assert faults.on_transfer("upload", "web.pem") is None


# -- which transfer: direction, file, occurrence ---------------------------------------------------


def test_transfer_faults_select_by_direction_and_file() -> None:
    faults = Faults()
    faults.fail("scp download", "Permission denied", file="server.pem")
    faults.drop(command="SCP Upload", after_execute=True)
    assert faults.on_transfer("download", "other.pem") is None
    assert faults.on_transfer("download", "server.pem") == FaultAction("fail", "Permission denied")
    assert faults.on_transfer("upload", "web.pem") == FaultAction("drop", after_execute=True)
    assert faults.on_transfer("upload", "web.pem") is None, "a drop fires once by default"
    assert faults.on_transfer("download", "server.pem") is not None, "a fail stays until cleared"


def test_transfer_faults_count_occurrences_of_their_direction() -> None:
    faults = Faults()
    hang = faults.hang("scp upload", occurrence=2, times=1)
    assert faults.on_transfer("download", "server.pem") is None
    assert faults.on_transfer("upload", "a.pem") is None
    action = faults.on_transfer("upload", "b.pem")
    assert action is not None and action.hang is hang
    assert faults.on_transfer("upload", "c.pem") is None


def test_command_faults_and_transfer_faults_do_not_meet() -> None:
    faults = Faults()
    faults.drop(nth=1, times=None)
    faults.fail("hsm show")
    assert faults.on_transfer("upload", "web.pem") is None
    assert faults.on_transfer("download", "server.pem") is None
    faults.clear()
    faults.fail("scp upload")
    assert faults.on_command("hsm show", 1) is None


def test_a_failed_transfer_has_a_default_reason_and_clear_releases_transfer_hangs() -> None:
    faults = Faults()
    faults.fail("scp upload")
    hang = faults.hang("scp download", file="server.pem")
    assert faults.on_transfer("upload", "web.pem") == FaultAction("fail", SCP_FAILURE)
    faults.clear()
    assert hang.released
    assert faults.on_transfer("upload", "web.pem") is None


# -- the SCP hooks the faults act through ----------------------------------------------------------


class ScriptedChannel:
    """What a client sends, all at once; records what the appliance sends and when hooks ran."""

    def __init__(self, incoming: bytes, events: list[str]) -> None:
        self._incoming, self.events = incoming, events

    def recv(self, nbytes: int) -> bytes:
        data, self._incoming = self._incoming[:nbytes], self._incoming[nbytes:]
        return data

    def sendall(self, s: bytes) -> None:
        self.events.append(f"send {s!r}")


def hooks(events: list[str]) -> dict[str, FileHook]:
    return {"before": lambda n: events.append(f"before {n}"), "after": lambda n: events.append(f"after {n}")}


def test_upload_hooks_run_once_the_file_is_announced_and_once_it_is_stored() -> None:
    events: list[str] = []
    channel = ScriptedChannel(b"C0644 3 app.pem\nabc\0", events)
    stored = serve_upload(
        channel,
        ScpRequest("upload", None, "."),
        lambda name, data: events.append(f"store {name} {data!r}"),
        **hooks(events),
    )
    assert stored == ["app.pem"]
    assert events == [
        "send b'\\x00'",  # ready
        "before app.pem",
        "send b'\\x00'",  # the C line accepted
        "store app.pem b'abc'",
        "after app.pem",
        "send b'\\x00'",  # the file acknowledged
    ]


def test_an_upload_refused_anyway_meets_no_fault() -> None:
    events: list[str] = []
    channel = ScriptedChannel(b"C0644 3 server.pem\nabc\0", events)
    with pytest.raises(ScpError, match="Permission denied"):
        serve_upload(channel, ScpRequest("upload", None, "."), lambda *_: None, **hooks(events))
    assert not [e for e in events if e.startswith(("before", "after"))]


def test_a_failing_before_hook_stores_nothing() -> None:
    def fail(name: str) -> None:
        raise ScpError(f"scp: {name}: No space left on device")

    stored: dict[str, bytes] = {}
    channel = ScriptedChannel(b"C0644 3 web.pem\nabc\0", [])
    with pytest.raises(ScpError, match="scp: web.pem: No space left on device"):
        serve_upload(channel, ScpRequest("upload", "web.pem", "web.pem"), stored.__setitem__, before=fail)
    assert stored == {}
    assert channel.events == ["send b'\\x00'"], "the C line was never acknowledged"


def test_download_hooks_run_before_the_header_and_between_header_and_content() -> None:
    events: list[str] = []
    channel = ScriptedChannel(b"\0\0\0", events)
    serve_download(channel, "server.pem", {"server.pem": b"PEM"}.get, **hooks(events))
    assert events == [
        "before server.pem",
        "send b'C0644 3 server.pem\\n'",
        "after server.pem",
        "send b'PEM\\x00'",
    ]


def test_a_held_download_sends_the_file_as_it_is_when_released() -> None:
    files = {"server.pem": b"old"}
    channel = ScriptedChannel(b"\0\0\0", [])
    serve_download(channel, "server.pem", files.get, before=lambda _: files.update({"server.pem": b"new"}))
    assert channel.events[-1] == "send b'new\\x00'"


def test_a_missing_download_meets_no_fault() -> None:
    called, files = threading.Event(), dict[str, bytes]()
    with pytest.raises(ScpError, match="No such file"):
        serve_download(ScriptedChannel(b"\0", []), "nope.pem", files.get, before=lambda _: called.set())
    assert not called.is_set()
