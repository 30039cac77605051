"""The product's SSH session (``luna_ha.ssh``) against hostile or old simulated appliances."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from luna_ha import ssh
from luna_ha.errors import ConnectFailed, OutputTooLarge, PasswordChangeRequired
from luna_ha.handshake import HostKeyPin, SshTarget
from luna_ha.lunash.commands import build_hsm_show
from luna_ha.sim.server import SimulatedAppliance
from luna_ha.ssh import MAX_COMMAND_OUTPUT, LunaShell

T = TypeVar("T")
CHUNK = 65536  # the most one read can add past a bound
FLAT = 64 * 1024 * 1024  # "flat": far below what minutes of flood would cost, above allocator noise


def target_of(appliance: SimulatedAppliance, **extra: object) -> SshTarget:
    options: dict[str, object] = {"connect_timeout": 5.0, **extra}
    return SshTarget(
        label="hsm-a",
        host=appliance.host,
        port=appliance.port,
        pin=HostKeyPin(key_line=appliance.host_key_line),
        username=appliance.username,
        password=appliance.password,
        **options,  # type: ignore[arg-type]
    )


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_growth(action: Callable[[], T]) -> tuple[int, float]:
    """How much the process's resident memory grew at most while ``action`` ran, and its seconds."""
    baseline, peak, done = resident_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], resident_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        action()
    finally:
        seconds = time.monotonic() - started
        done.set()
        sampler.join()
    return max(0, peak[0] - baseline), seconds


@pytest.fixture
def appliance() -> Iterator[SimulatedAppliance]:
    with SimulatedAppliance(initialized=True) as started:
        yield started


# -- legacy algorithms ---------------------------------------------------------------------------


@pytest.fixture
def md5_only() -> Iterator[SimulatedAppliance]:
    with SimulatedAppliance(initialized=True, algorithms={"macs": ["hmac-md5"]}) as started:
        yield started


def test_an_appliance_offering_only_a_legacy_mac_is_refused_without_legacy_algorithms(
    md5_only: SimulatedAppliance,
) -> None:
    with pytest.raises(ConnectFailed, match=r"Appliance hsm-a, step 'connect': SSH handshake .* failed"):
        LunaShell(target_of(md5_only)).open()
    assert md5_only.journal.entries() == []


def test_the_same_appliance_is_reached_with_legacy_algorithms(md5_only: SimulatedAppliance) -> None:
    with LunaShell(target_of(md5_only, legacy_algorithms=True)) as shell:
        assert shell.run(build_hsm_show()).ok


# -- forced password change ----------------------------------------------------------------------


def test_a_first_login_that_wants_a_new_password_fails_at_once_saying_what_to_do() -> None:
    with SimulatedAppliance(initialized=True, password_change_required=True) as first_login:
        target = target_of(first_login, connect_timeout=30.0)
        started = time.monotonic()
        with pytest.raises(PasswordChangeRequired) as caught:
            LunaShell(target).open()

        assert time.monotonic() - started < 5
        message = str(caught.value)
        assert message.startswith("Appliance hsm-a, step 'connect': ")
        assert f"new password for '{first_login.username}'" in message
        assert "Log in once by hand" in message and "manager secret" in message
        assert first_login.password not in message
        # nothing was answered: the appliance still waits for its first password change
        assert first_login.password_change_required and first_login.password == target.password


# -- bounded output ------------------------------------------------------------------------------


def test_a_flooding_command_fails_at_the_output_bound_naming_appliance_and_step(
    appliance: SimulatedAppliance,
) -> None:
    appliance.faults.flood("hsm show")
    with LunaShell(target_of(appliance)) as shell:
        banner = shell.received

        def flooded() -> None:
            with pytest.raises(OutputTooLarge) as caught:
                shell.run(build_hsm_show(), step="observe: hsm show")
            assert str(caught.value).startswith(
                "Appliance hsm-a, step 'observe: hsm show': the appliance sent more than 512 KiB"
            )

        growth, seconds = peak_growth(flooded)

        assert seconds < 5
        assert shell.received - banner <= MAX_COMMAND_OUTPUT + CHUNK
        assert growth < FLAT, f"memory grew by {growth >> 20} MiB"


def test_a_session_is_bounded_in_all_even_when_each_answer_is_small(
    appliance: SimulatedAppliance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssh, "MAX_SESSION_OUTPUT", 16 * 1024)
    with LunaShell(target_of(appliance)) as shell, pytest.raises(OutputTooLarge) as caught:
        for _ in range(100):
            shell.run(build_hsm_show(), step="observe: hsm show")

    assert "step 'observe: hsm show'" in str(caught.value) and "in this session" in str(caught.value)
    assert shell.received <= 16 * 1024 + CHUNK


def test_a_flooded_download_fails_at_its_header_naming_appliance_and_step(
    appliance: SimulatedAppliance,
) -> None:
    appliance.faults.flood("scp download", file="server.pem")
    with LunaShell(target_of(appliance)) as shell:
        with pytest.raises(OutputTooLarge, match=r"^Appliance hsm-a, step 'download server.pem': scp of"):
            shell.get_file("server.pem", step="download server.pem")
        assert shell.received < 4096


def test_a_flooded_upload_fails_naming_appliance_and_step(appliance: SimulatedAppliance) -> None:
    appliance.faults.flood("scp upload")
    with LunaShell(target_of(appliance)) as shell:
        with pytest.raises(Exception, match=r"^Appliance hsm-a, step 'upload certificate': scp of"):
            shell.put_file("web.pem", b"certificate", step="upload certificate")
        assert shell.received < 8192
    assert "web.pem" not in appliance.state.files
