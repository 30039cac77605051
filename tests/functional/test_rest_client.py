"""The product's REST client (``luna_ha.rest``) against simulated Luna 7 appliances.

What it must guarantee: nothing is sent to an appliance whose certificate is not the pinned one;
no request outlives its time (the run's deadline included); no answer is read past its bound;
every failure is an ``ApplianceError`` naming the appliance and the step, and no password it
handled reaches an exception or a log (the secret scan checks every test here as well).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from luna_ha.clock import Deadline
from luna_ha.errors import (
    ApplianceError,
    AuthenticationFailed,
    CommandTimeout,
    ConnectFailed,
    ConnectionLost,
    HostKeyMismatch,
    OutputTooLarge,
    RestRequestFailed,
)
from luna_ha.rest import MAX_RESPONSE, LunaRest, RestHsm, RestPartition, RestRole
from luna_ha.sim.server import SimulatedAppliance, running_appliances
from luna_ha.sim.state import ROLE_LOGIN_ATTEMPTS, Partition
from tests.secret_scan import PLUGIN_NAME

PSO = "pso-Secret-4711"
DOMAIN = "domain-Secret-0815"
CO_TEMP = "co-Temporary-1234"
CO_FINAL = "co-Final-98765"
WRONG = "wrong-Password-555"


@pytest.fixture(autouse=True)
def learn_secrets(request: pytest.FixtureRequest) -> None:
    """Tell the secret scan about the passwords these tests hand the client."""
    plugin = request.config.pluginmanager.get_plugin(PLUGIN_NAME)
    for value, what in (
        (PSO, "Partition SO"),
        (DOMAIN, "domain"),
        (CO_TEMP, "CO temporary"),
        (CO_FINAL, "CO"),
    ):
        plugin.scan.learn(value, f"the test's {what} password")
    plugin.scan.learn(WRONG, "a wrong password")


@pytest.fixture
def pair() -> Iterator[list[SimulatedAppliance]]:
    with running_appliances(2, dialect="7.2", initialized=True, key_type="ec") as appliances:
        yield appliances


@pytest.fixture
def appliance(pair: list[SimulatedAppliance]) -> SimulatedAppliance:
    return pair[0]


@pytest.fixture
def partition(appliance: SimulatedAppliance) -> Partition:
    return appliance.state.add_uninitialized_partition("web")


def client(appliance: SimulatedAppliance, **options: object) -> LunaRest:
    return LunaRest(
        "hsm-a",
        appliance.host,
        appliance.rest_port,
        fingerprint=str(options.pop("fingerprint", appliance.rest_certificate_fingerprint)),
        **options,  # type: ignore[arg-type]
    )


def opened(appliance: SimulatedAppliance, **options: object) -> LunaRest:
    rest = client(appliance, **options)
    rest.open_session(appliance.username, appliance.password)
    return rest


def admin_password(appliance: SimulatedAppliance) -> str:
    assert appliance.state.admin_password is not None
    return appliance.state.admin_password


# -- the whole 7.x partition path ----------------------------------------------------------------------


def test_the_client_takes_a_partition_from_created_to_a_changed_co_password(
    appliance: SimulatedAppliance, partition: Partition
) -> None:
    hsm, pid = appliance.serial, partition.serial
    with opened(appliance, deadline=Deadline.after(60)) as rest:
        assert rest.hsms() == [hsm]
        assert rest.hsm(hsm) == RestHsm(hsm, appliance.state.label, hsm, 3, False)
        assert rest.partitions(hsm) == [pid]
        assert rest.partition(hsm, pid) == RestPartition(pid, "web", "", pid, "zeroized", 0)
        assert not rest.partition(hsm, pid).initialized
        rest.hsm_login(hsm, admin_password(appliance))
        rest.init_partition(hsm, pid, "web-label", PSO, DOMAIN)
        assert rest.partition(hsm, pid).initialized
        rest.partition_so_login(hsm, pid, PSO)
        assert rest.co_role(hsm, pid) == RestRole(False, False, False, ROLE_LOGIN_ATTEMPTS)
        rest.init_co(hsm, pid, CO_TEMP)
        assert rest.co_role(hsm, pid).pin_to_be_changed
        rest.change_co_password(hsm, pid, CO_TEMP, CO_FINAL)
        assert rest.co_role(hsm, pid) == RestRole(True, False, False, ROLE_LOGIN_ATTEMPTS)
    assert partition.client_password == CO_FINAL
    assert not rest.has_session
    assert appliance.journal.entries()[-1].command == "rest session close"
    assert not appliance.rest.api.sessions, "the session was closed on the appliance"


def test_a_connection_the_appliance_closed_is_replaced_and_pinned_again(
    appliance: SimulatedAppliance,
) -> None:
    with opened(appliance) as rest:
        before = appliance.rest.connections
        appliance.rest.drop_connections()
        time.sleep(0.05)
        assert rest.hsms() == [appliance.serial]
        assert appliance.rest.connections == before + 1


# -- the pin -------------------------------------------------------------------------------------------


def test_a_certificate_other_than_the_pinned_one_gets_nothing_sent(pair: list[SimulatedAppliance]) -> None:
    appliance, other = pair
    rest = client(appliance, fingerprint=other.rest_certificate_fingerprint)
    with pytest.raises(HostKeyMismatch) as refused:
        rest.open_session(appliance.username, appliance.password)
    message = str(refused.value)
    assert "Appliance hsm-a, step 'REST login'" in message
    assert "does not match the pinned RestCertificateFingerprint" in message
    assert appliance.rest_certificate_fingerprint in message, "it says what the appliance presented"
    assert appliance.rest.connections == 1, "the appliance saw the connection..."
    assert appliance.journal.entries() == [], "...and not one request: no credentials were sent"
    assert not appliance.rest.api.sessions


def test_a_malformed_pin_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="43 base64 characters"):
        LunaRest("hsm-a", "127.0.0.1", 1, fingerprint="SHA256:abc")


# -- time ----------------------------------------------------------------------------------------------


def test_a_hanging_request_ends_at_the_runs_deadline(
    appliance: SimulatedAppliance, partition: Partition
) -> None:
    rest = opened(appliance, deadline=Deadline.after(1.0), timeout=30.0)
    hang = appliance.faults.hang("rest partition login")
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="step 'REST partition SO login': no complete answer"):
        rest.partition_so_login(appliance.serial, partition.serial, PSO)
    assert time.monotonic() - started < 2.0
    assert hang.wait_started()
    hang.release()


def test_a_hanging_request_ends_after_its_own_timeout(appliance: SimulatedAppliance) -> None:
    rest = opened(appliance, timeout=0.5)
    appliance.faults.hang("rest hsm show")
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        rest.hsm(appliance.serial)
    assert time.monotonic() - started < 1.5


def test_nothing_is_sent_once_the_deadline_has_passed(appliance: SimulatedAppliance) -> None:
    now = [0.0]
    deadline = Deadline.after(5.0, clock=lambda: now[0])
    rest = opened(appliance, deadline=deadline)
    mark = appliance.journal.mark()
    now[0] = 5.0
    with pytest.raises(CommandTimeout, match="deadline has passed"):
        rest.hsm_login(appliance.serial, admin_password(appliance))
    rest.close()
    assert appliance.journal.since(mark) == [], "not even the session close"


# -- size ----------------------------------------------------------------------------------------------


def test_an_answer_that_never_ends_is_cut_at_the_bound(appliance: SimulatedAppliance) -> None:
    rest = opened(appliance, timeout=30.0)
    appliance.faults.flood("rest hsm login")
    started = time.monotonic()
    with pytest.raises(OutputTooLarge, match=f"larger than {MAX_RESPONSE} bytes"):
        rest.hsm_login(appliance.serial, admin_password(appliance))
    assert time.monotonic() - started < 5.0
    appliance.faults.clear()
    assert rest.hsms() == [appliance.serial], "the session goes on over a new connection"


# -- errors --------------------------------------------------------------------------------------------


def test_rejected_credentials(appliance: SimulatedAppliance) -> None:
    rest = client(appliance)
    with pytest.raises(AuthenticationFailed) as rejected:
        rest.open_session(appliance.username, WRONG)
    assert "rejected the credentials of user 'manager'" in str(rejected.value)
    assert not rest.has_session
    with pytest.raises(ApplianceError, match="no REST session is open"):
        rest.hsms()


def test_an_error_status_carries_the_status_and_the_appliances_text(
    appliance: SimulatedAppliance, partition: Partition
) -> None:
    rest = opened(appliance)
    with pytest.raises(RestRequestFailed) as refused:
        rest.init_partition(appliance.serial, partition.serial, "web-label", PSO, DOMAIN)
    failure = refused.value
    assert failure.status == 403 and failure.host == "hsm-a" and failure.step == "REST partition init"
    assert "HSM SO is not logged in" in failure.error
    assert f"PUT /api/lunasa/hsms/{appliance.serial}/partitions/{partition.serial} answered HTTP 403" in str(
        failure
    )
    with pytest.raises(RestRequestFailed) as missing:
        rest.partition(appliance.serial, "1234567890123")
    assert missing.value.status == 404


def test_wrong_passwords_cost_attempts_and_never_show(
    appliance: SimulatedAppliance, partition: Partition
) -> None:
    rest = opened(appliance)
    rest.hsm_login(appliance.serial, admin_password(appliance))
    rest.init_partition(appliance.serial, partition.serial, "web-label", PSO, DOMAIN)
    with pytest.raises(RestRequestFailed) as wrong_pso:
        rest.partition_so_login(appliance.serial, partition.serial, WRONG)
    assert wrong_pso.value.status == 401 and partition.so_attempts_left == ROLE_LOGIN_ATTEMPTS - 1
    with pytest.raises(RestRequestFailed) as wrong_hsm:
        rest.hsm_login(appliance.serial, WRONG)
    assert wrong_hsm.value.status == 401
    assert rest.hsm(appliance.serial).so_logins_left == 2
    for failure in (wrong_pso.value, wrong_hsm.value):
        assert WRONG not in str(failure) and PSO not in str(failure)


def test_an_appliance_that_echoes_a_password_does_not_get_it_into_the_message(
    appliance: SimulatedAppliance, partition: Partition
) -> None:
    rest = opened(appliance)
    appliance.faults.fail("rest co password", f"old password {CO_TEMP} or new {CO_FINAL} refused")
    with pytest.raises(RestRequestFailed) as refused:
        rest.change_co_password(appliance.serial, partition.serial, CO_TEMP, CO_FINAL)
    assert refused.value.status == 500
    assert refused.value.error == "old password ******** or new ******** refused"
    assert CO_TEMP not in str(refused.value) and CO_FINAL not in str(refused.value)


@pytest.mark.parametrize("after_execute", [False, True])
def test_a_connection_lost_before_the_answer_says_the_outcome_is_unknown(
    appliance: SimulatedAppliance, partition: Partition, after_execute: bool
) -> None:
    rest = opened(appliance)
    rest.hsm_login(appliance.serial, admin_password(appliance))
    appliance.faults.drop(command="rest partition init", after_execute=after_execute)
    with pytest.raises(ConnectionLost, match="whether the request took effect is unknown"):
        rest.init_partition(appliance.serial, partition.serial, "web-label", PSO, DOMAIN)
    assert partition.initialized is after_execute
    assert rest.partition(appliance.serial, partition.serial).initialized is after_execute


def test_an_appliance_that_does_not_listen(appliance: SimulatedAppliance) -> None:
    rest = client(appliance)
    appliance.stop()
    with pytest.raises(ConnectFailed, match=f"cannot reach the REST API at 127.0.0.1:{appliance.rest_port}"):
        rest.open_session(appliance.username, appliance.password)


def test_an_expired_session_is_an_error_naming_the_step(appliance: SimulatedAppliance) -> None:
    rest = opened(appliance)
    appliance.rest.api.sessions.clear()
    with pytest.raises(RestRequestFailed, match="step 'REST HSMs'.*HTTP 401.*expired") as expired:
        rest.hsms()
    assert expired.value.status == 401


# -- secrets -------------------------------------------------------------------------------------------


def test_no_secret_in_the_clients_logs_repr_or_errors(
    appliance: SimulatedAppliance, partition: Partition, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="luna_ha")
    errors: list[str] = []
    with opened(appliance) as rest:
        rest.hsm_login(appliance.serial, admin_password(appliance))
        rest.init_partition(appliance.serial, partition.serial, "web-label", PSO, DOMAIN)
        rest.partition_so_login(appliance.serial, partition.serial, PSO)
        rest.init_co(appliance.serial, partition.serial, CO_TEMP)
        try:
            rest.change_co_password(appliance.serial, partition.serial, WRONG, CO_FINAL)
        except RestRequestFailed as failure:
            errors.append(str(failure))
        rest.change_co_password(appliance.serial, partition.serial, CO_TEMP, CO_FINAL)
        shown = repr(rest)
    assert errors and "REST CO password" in errors[0]
    assert any("REST PATCH" in record.getMessage() for record in caplog.records)
    everything = "\n".join([shown, *errors, *(record.getMessage() for record in caplog.records)])
    for secret in (PSO, DOMAIN, CO_TEMP, CO_FINAL, WRONG, admin_password(appliance), appliance.password):
        assert secret not in everything
    assert "SESSIONID" not in shown
