"""The product's SSH session (``luna_ha.ssh``) against hostile or old simulated appliances."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from luna_ha.errors import ConnectFailed
from luna_ha.lunash.commands import build_hsm_show
from luna_ha.sim.server import SimulatedAppliance
from luna_ha.ssh import HostKeyPin, LunaShell, SshTarget


def target_of(appliance: SimulatedAppliance, **extra: object) -> SshTarget:
    return SshTarget(
        label="hsm-a",
        host=appliance.host,
        port=appliance.port,
        pin=HostKeyPin(key_line=appliance.host_key_line),
        username=appliance.username,
        password=appliance.password,
        connect_timeout=5.0,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def md5_only() -> Iterator[SimulatedAppliance]:
    with SimulatedAppliance(initialized=True, algorithms={"macs": ["hmac-md5"]}) as appliance:
        yield appliance


def test_an_appliance_offering_only_a_legacy_mac_is_refused_without_legacy_algorithms(
    md5_only: SimulatedAppliance,
) -> None:
    with pytest.raises(ConnectFailed, match=r"Appliance hsm-a, step 'connect': SSH handshake .* failed"):
        LunaShell(target_of(md5_only)).open()
    assert md5_only.journal.entries() == []


def test_the_same_appliance_is_reached_with_legacy_algorithms(md5_only: SimulatedAppliance) -> None:
    with LunaShell(target_of(md5_only, legacy_algorithms=True)) as shell:
        assert shell.run(build_hsm_show()).ok
