"""``luna-ha demo --dialect 7.x`` (``make demo DIALECT=7.x``): the whole lifecycle on simulated Luna
Network HSM 7 appliances, moto and the local CloudFormation, as a user sees it."""

from __future__ import annotations

import io
import re

import pytest

from luna_ha.demo import demo_main


def run_demo(monkeypatch: pytest.MonkeyPatch, *argv: str) -> str:
    """The demo in this process, so that the secret scan reads its output and knows its secrets; what
    it sets in the environment (the function's quiet settings, the simulated client's) is undone."""
    for name in ("LOG_LEVEL", "POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_TRACE_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name in ("LUNA_HA_SIM_PARTITIONS", "LUNA_HA_SIM_PASSWORD", "LUNA_HA_SIM_FAULTS"):
        monkeypatch.setenv(name, "")  # restored (removed) afterwards, whatever the demo set
        monkeypatch.delenv(name)
    out = io.StringIO()
    assert demo_main(list(argv), out=out) == 0
    print(out.getvalue())  # captured: the secret scan reads it
    return out.getvalue()


def section(out: str, number: int) -> str:
    """The output of step ``number`` (``== N. ...`` up to the next step)."""
    found = re.search(rf"^== {number}\. .*?(?=^== |\Z)", out, re.MULTILINE | re.DOTALL)
    assert found is not None, f"no step {number} in:\n{out}"
    return found.group(0)


@pytest.mark.parametrize(
    ("dialect", "software", "initialization"),
    [
        ("7.x", "7.8.5-20", "partition init (lunash), Crypto Officer init (lunash)"),
        ("7.2", "7.2.0-220", "partition init (REST), Crypto Officer init (REST)"),
    ],
)
def test_the_demo_runs_the_whole_lifecycle_on_luna_7(
    monkeypatch: pytest.MonkeyPatch, dialect: str, software: str, initialization: str
) -> None:
    out = run_demo(monkeypatch, "--dialect", dialect)

    appliances = re.findall(r"^appliance luna-sim-0\d at .*$", out, re.MULTILINE)
    assert len(appliances) == 3
    assert all(f"software {software}, REST on port " in line for line in appliances)
    luna7 = f"    Luna 7: {initialization}, Crypto Officer's first password change (REST)"

    create = section(out, 1)
    assert create.count(luna7) == 2, create
    assert "stack: CREATE_COMPLETE" in create
    serials = re.search(r"PartitionSerials: (\d{13}),(\d{13})\n", create)
    assert serials is not None, create

    # the member logs in to each 13-digit partition as its Crypto Officer, with the 10.x client,
    # once the appliances show it labelled, its Crypto Officer past the first password change
    boot = section(out, 2)
    for host, serial in (("127.0.0.1", serials.group(1)), ("127.0.0.2", serials.group(2))):
        shown = f"  {host} shows the member partition {serial} 'payments', Crypto Officer login: ready\n"
        assert shown in boot, boot
    assert "Luna client 7" in boot
    assert f"changed: created HA group payments-ha with {serials.group(1)}" in boot
    assert f"changed: added {serials.group(2)} to HA group payments-ha" in boot

    assert " mutating\n" in section(out, 3) and ", 0 mutating;" in section(out, 3)
    assert "Luna 7:" not in section(out, 3), "nothing initialized twice"
    assert "web=web-" in section(out, 4) and "-r1" in section(out, 4)
    assert "changed: wrote client certificate" in section(out, 5)

    added = section(out, 6)
    assert f"    Luna 7: NTLS restart, {initialization}" in added, added
    assert "stack: UPDATE_COMPLETE" in added
    third = re.search(r"PartitionSerials: \d{13},\d{13},(\d{13})\n", added)
    assert third is not None, added
    assert (
        f"127.0.0.3 shows the member partition {third.group(1)} 'payments', Crypto Officer login: ready"
        in (section(out, 7))
    )
    assert f"changed: added {third.group(1)} to HA group payments-ha" in section(out, 7)

    assert "stack: DELETE_COMPLETE" in section(out, 8)
    assert "partition 'payments' kept (PartitionDeletionPolicy: Retain) on: luna-sim-01, luna-sim-02, " in out
