"""Faults during a run: the engine always answers, names the appliance and step, and a re-run converges."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from moto import mock_aws

from luna_ha.clock import Deadline
from luna_ha.engine import GroupRunError
from luna_ha.spec import parse_properties
from tests.functional.lab import Lab, running_lab

ID = "faults|Group|payments"


@pytest.fixture
def lab(aws_env: None) -> Iterator[Lab]:
    with mock_aws(), running_lab(2) as started:
        yield started


def test_a_hanging_command_ends_at_the_deadline_naming_appliance_and_step(lab: Lab) -> None:
    hang = lab.appliances[1].faults.hang("client list")
    started = time.monotonic()
    with pytest.raises(GroupRunError) as caught:
        lab.engine().apply(lab.spec(), ID, deadline=Deadline.after(3))
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "127.0.0.2" in message and "client list" in message and "no lunash prompt" in message
    hang.release()
    lab.appliances[1].faults.clear()
    assert lab.engine().apply(lab.spec(), ID).ok


def test_no_step_starts_that_the_deadline_cannot_fit(lab: Lab) -> None:
    with pytest.raises(GroupRunError, match=r"not enough time left to start 'hsm login'.*re-run"):
        lab.engine().apply(lab.spec(), ID, deadline=Deadline.after(15))
    assert all(a.journal.mutating() == [] for a in lab.appliances)


def test_connection_dropped_mid_command_then_rerun_converges(lab: Lab) -> None:
    lab.appliances[0].faults.drop(command="partition create", after_execute=True)
    with pytest.raises(GroupRunError, match=r"127\.0\.0\.1.*partition create"):
        lab.engine().apply(lab.spec(), ID)
    lab.appliances[0].faults.clear()

    report = lab.engine().apply(lab.spec(), ID)

    assert report.ok
    # the partition was created before the drop: the re-run does not create it again
    assert "partition create payments" not in [str(s) for s in report.appliances[0].done]


def test_authentication_failure_names_the_appliance(lab: Lab) -> None:
    lab.appliances[0].password = "not-the-password"
    with pytest.raises(GroupRunError, match=r"127\.0\.0\.1.*rejected the credentials"):
        lab.engine().apply(lab.spec(), ID)


def test_rsa_pinned_appliance_with_several_host_keys_presents_the_pinned_one(aws_env: None) -> None:
    with mock_aws(), running_lab(2, rsa_host_key=True) as lab:
        props = lab.props()
        props["Appliances"][0]["HostKey"] = lab.appliances[0].host_key_lines[1]  # the RSA one
        spec = parse_properties(props)
        assert spec.appliances[0].host_key is not None and spec.appliances[0].host_key.startswith("ssh-rsa ")
        assert lab.engine().apply(spec, ID).ok
