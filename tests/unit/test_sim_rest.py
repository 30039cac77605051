"""The simulated appliance's REST API (Luna Network HSM 7), over real HTTPS on 127.0.0.1.

Driven with raw ``http.client`` (so the simulator is tested on its own, not through the product's
client) and, where noted, with lunash over the same appliance state.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from luna_ha.sim.appliance import ShellSession
from luna_ha.sim.cli import describe
from luna_ha.sim.journal import MASK
from luna_ha.sim.rest import MAX_BODY
from luna_ha.sim.server import SimulatedAppliance
from luna_ha.sim.state import ROLE_LOGIN_ATTEMPTS, Partition

PSO = "pso-Secret-4711"
DOMAIN = "domain-Secret-0815"
CO_TEMP = "co-Temporary-1234"
CO_FINAL = "co-Final-98765"
HSMS = "/api/lunasa/hsms"

Answer = tuple[int, Any]


class Raw:
    """One HTTPS connection to an appliance's REST port, with its session cookie once opened."""

    def __init__(self, appliance: SimulatedAppliance) -> None:
        self.appliance = appliance
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.connection = http.client.HTTPSConnection(
            appliance.host, appliance.rest_port, context=context, timeout=5
        )
        self.cookie: str | None = None
        self.headers: http.client.HTTPMessage | None = None

    def call(
        self, method: str, path: str, body: object = None, *, headers: dict[str, str] | None = None
    ) -> Answer:
        sent = {"Content-Type": "application/vnd.safenetinc.lunasa+json;version=", **(headers or {})}
        if self.cookie:
            sent["Cookie"] = self.cookie
        data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
        self.connection.request(method, path, body=data, headers=sent)
        response = self.connection.getresponse()
        raw = response.read()
        self.headers = response.headers
        return response.status, json.loads(raw) if raw else None

    def login(self, username: str | None = None, password: str | None = None) -> Answer:
        user = username or self.appliance.username
        secret = password or self.appliance.password
        basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
        status, body = self.call("POST", "/auth/session", {}, headers={"Authorization": f"Basic {basic}"})
        if status == 204:
            assert self.headers is not None
            self.cookie = self.headers["Set-Cookie"].split(";")[0]
        return status, body

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def appliance() -> Iterator[SimulatedAppliance]:
    with SimulatedAppliance(hostname="luna7-a", dialect="7.2", initialized=True, key_type="ec") as started:
        yield started


@pytest.fixture
def partition(appliance: SimulatedAppliance) -> Partition:
    return appliance.state.add_uninitialized_partition("web")


@pytest.fixture
def rest(appliance: SimulatedAppliance) -> Iterator[Raw]:
    client = Raw(appliance)
    assert client.login()[0] == 204
    yield client
    client.close()


def url(appliance: SimulatedAppliance, partition: Partition | None = None, tail: str = "") -> str:
    path = f"{HSMS}/{appliance.serial}"
    if partition is not None:
        path += f"/partitions/{partition.serial}"
    return path + tail


def hsm_login(rest: Raw, password: str) -> Answer:
    return rest.call(
        "POST", url(rest.appliance, tail="/login"), {"ped": "0", "password": password, "role": "so"}
    )


def init_partition(rest: Raw, partition: Partition, label: str = "web-label") -> Answer:
    body = {"label": label, "password": PSO, "domain": DOMAIN, "defaultDomain": False, "ped": "0"}
    return rest.call("PUT", url(rest.appliance, partition), body)


def pso_login(rest: Raw, partition: Partition, password: str = PSO) -> Answer:
    return rest.call(
        "POST", url(rest.appliance, partition, "/login"), {"role": "so", "password": password, "ped": "0"}
    )


def init_co(rest: Raw, partition: Partition, password: str = CO_TEMP) -> Answer:
    body = {"password": password, "defaultChallenge": False, "ped": "0"}
    return rest.call("PUT", url(rest.appliance, partition, "/roles/co"), body)


def change_co(rest: Raw, partition: Partition, old: str, new: str) -> Answer:
    return rest.call(
        "PATCH", url(rest.appliance, partition, "/roles/co"), {"oldPassword": old, "newPassword": new}
    )


def co_role(rest: Raw, partition: Partition) -> dict[str, Any]:
    status, body = rest.call("GET", url(rest.appliance, partition, "/roles/co"))
    assert status == 200
    assert isinstance(body, dict)
    return body


def admin_password(appliance: SimulatedAppliance) -> str:
    assert appliance.state.admin_password is not None
    return appliance.state.admin_password


def ready_partition(rest: Raw, partition: Partition) -> None:
    """HSM SO login, partition init and Partition SO login, all in ``rest``'s session."""
    assert hsm_login(rest, admin_password(rest.appliance))[0] == 204
    assert init_partition(rest, partition)[0] == 204
    assert pso_login(rest, partition)[0] == 204


# -- the service: port, certificate, which appliances ------------------------------------------------


def test_a_7x_appliance_serves_rest_on_its_own_port_with_its_own_pinned_certificate(
    appliance: SimulatedAppliance,
) -> None:
    assert appliance.rest_port not in (0, appliance.port)
    pem = ssl.get_server_certificate((appliance.host, appliance.rest_port))
    der = ssl.PEM_cert_to_DER_cert(pem)
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    assert appliance.rest_certificate_fingerprint == expected
    certificate = x509.load_der_x509_certificate(der)
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "luna7-a"
    ntls = appliance.state.server_cert.certificate.public_bytes(serialization.Encoding.DER)
    assert der != ntls, "the web server's certificate is not the NTLS certificate"


def test_5x_appliances_serve_no_rest_unless_asked() -> None:
    with SimulatedAppliance(dialect="5.4") as old:
        assert old.rest_service is None
        with pytest.raises(RuntimeError, match="serves no REST API"):
            _ = old.rest_port
        assert "REST" not in describe(old, 1)
    with SimulatedAppliance(dialect="6.2", rest=True, key_type="ec") as asked:
        assert asked.rest_port > 0
    with SimulatedAppliance(dialect="7.8", rest=False) as without:
        assert without.rest_service is None


def test_describe_prints_the_rest_port_and_pin_of_a_7x_appliance(appliance: SimulatedAppliance) -> None:
    text = describe(appliance, 1)
    assert f"REST port:    {appliance.rest_port}" in text
    assert f"REST pin:     {appliance.rest_certificate_fingerprint}" in text


def test_stopping_the_appliance_stops_rest() -> None:
    appliance = SimulatedAppliance(dialect="7.2", key_type="ec").start()
    port = appliance.rest_port
    appliance.stop()
    with pytest.raises(OSError), socket.create_connection((appliance.host, port), timeout=2):
        pass


# -- sessions ------------------------------------------------------------------------------------------


def test_a_session_opens_with_the_appliance_users_basic_credentials(appliance: SimulatedAppliance) -> None:
    client = Raw(appliance)
    assert client.login(password="not-the-password")[0] == 401
    assert client.call("GET", HSMS)[0] == 401, "no session, no answer"
    status, _ = client.login()
    assert status == 204
    assert client.headers is not None
    assert (
        "Secure" in client.headers["Set-Cookie"] and client.cookie and client.cookie.startswith("SESSIONID=")
    )
    assert client.call("GET", HSMS) == (200, {"hsms": [{"id": appliance.serial, "url": url(appliance)}]})
    assert client.call("DELETE", "/auth/session")[0] == 204
    assert client.call("GET", HSMS)[0] == 401, "a closed session is gone"


def test_a_password_changed_over_ssh_is_the_one_rest_accepts(appliance: SimulatedAppliance) -> None:
    old = appliance.password
    appliance.password = "a-new-manager-password"
    assert Raw(appliance).login(password=old)[0] == 401
    assert Raw(appliance).login()[0] == 204


def test_a_session_dies_after_its_idle_time(appliance: SimulatedAppliance) -> None:
    now = [1000.0]
    appliance.rest.api.clock = lambda: now[0]
    client = Raw(appliance)
    client.login()
    now[0] += 599
    assert client.call("GET", HSMS)[0] == 200, "used within 10 minutes: alive, and the idle time restarts"
    now[0] += 599
    assert client.call("GET", HSMS)[0] == 200
    now[0] += 601
    status, body = client.call("GET", HSMS)
    assert status == 401
    assert "expired" in body["error"]


# -- reading -------------------------------------------------------------------------------------------


def test_hsm_and_partitions_read_as_the_contract_says(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    assert rest.call("GET", url(appliance)) == (
        200,
        {
            "id": appliance.serial,
            "label": "luna7-a",
            "serialNumber": appliance.serial,
            "soLoginsLeft": 3,
            "zeroized": False,
        },
    )
    assert rest.call("GET", url(appliance, tail="/partitions")) == (
        200,
        {"partitions": [{"id": partition.serial, "url": url(appliance, partition)}]},
    )
    assert rest.call("GET", url(appliance, partition)) == (
        200,
        {
            "id": partition.serial,
            "name": "web",
            "label": "",
            "serialNumber": partition.serial,
            "state": "zeroized",
            "version": 0,
        },
    )
    role = co_role(rest, partition)
    assert role == {
        "id": "co",
        "name": "Crypto Officer",
        "initialized": False,
        "pinToBeChanged": False,
        "lockedOut": False,
        "loginAttemptsLeft": ROLE_LOGIN_ATTEMPTS,
        "activated": False,
        "primaryAuthentication": "Password",
        "secondaryAuthentication": "None",
        "challengeToBeChanged": False,
    }


def test_unknown_hsm_partition_role_endpoint_and_method(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    assert rest.call("GET", f"{HSMS}/999999")[0] == 404
    assert rest.call("GET", f"{HSMS}/{appliance.serial}/partitions/1234567890123")[0] == 404
    assert rest.call("GET", url(appliance, partition, "/roles/po"))[0] == 404
    assert rest.call("GET", "/api/lunasa/ntls/clients")[0] == 404
    assert rest.call("DELETE", url(appliance, partition))[0] == 405


def test_a_zeroized_hsm_reports_no_label_and_refuses_so_login() -> None:
    with SimulatedAppliance(dialect="7.2", key_type="ec") as fresh:
        client = Raw(fresh)
        client.login()
        status, body = client.call("GET", url(fresh))
        assert status == 200 and body["zeroized"] is True and body["label"] == ""
        assert hsm_login(client, "anything-at-all")[0] == 409
        assert fresh.state.attempts_left == 3, "a refused login on a zeroized HSM costs nothing"


# -- HSM SO login and zeroization ----------------------------------------------------------------------


def test_hsm_so_login_belongs_to_the_rest_session(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    other = Raw(appliance)
    other.login()
    assert init_partition(rest, partition)[0] == 403
    assert hsm_login(rest, admin_password(appliance))[0] == 204
    assert init_partition(other, partition)[0] == 403, "another session is not logged in"
    assert not partition.initialized
    assert init_partition(rest, partition)[0] == 204
    assert partition.initialized and partition.label == "web-label" and partition.domain == DOMAIN


def test_three_wrong_so_logins_zeroize_the_hsm_sharing_the_lunash_counter(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    shell = ShellSession(appliance.state, appliance.journal, "ssh")
    assert "LUNA_RET_UM_PIN_INCORRECT" in shell.feed("hsm login -password wrong-over-ssh")
    assert rest.call("GET", url(appliance))[1]["soLoginsLeft"] == 2
    status, body = hsm_login(rest, "wrong-over-rest")
    assert status == 401 and "1 attempt left" in body["error"]
    status, body = hsm_login(rest, "wrong-again")
    assert status == 401 and "zeroized" in body["error"]
    hsm = rest.call("GET", url(appliance))[1]
    assert hsm["zeroized"] is True and hsm["soLoginsLeft"] == 3
    assert rest.call("GET", url(appliance, tail="/partitions"))[1] == {"partitions": []}
    assert appliance.state.zeroized and not appliance.state.partitions


def test_a_good_login_restores_the_attempts(appliance: SimulatedAppliance, rest: Raw) -> None:
    hsm_login(rest, "wrong-once")
    assert appliance.state.attempts_left == 2
    assert hsm_login(rest, admin_password(appliance))[0] == 204
    assert appliance.state.attempts_left == 3


# -- partition init ------------------------------------------------------------------------------------


def test_init_validates_its_body(appliance: SimulatedAppliance, partition: Partition, rest: Raw) -> None:
    hsm_login(rest, admin_password(appliance))
    target = url(appliance, partition)
    base = {"label": "web", "password": PSO, "domain": DOMAIN, "defaultDomain": False, "ped": "0"}
    for broken in (
        {**base, "password": ""},
        {k: v for k, v in base.items() if k != "domain"},
        {**base, "label": "x" * 33},
        {**base, "defaultDomain": True},
        {**base, "ped": "1"},
    ):
        status, body = rest.call("PUT", target, broken)
        assert status == 400, broken
        assert PSO not in body["error"] and DOMAIN not in body["error"]
    assert rest.call("PUT", target, b"not json")[0] == 400
    assert rest.call("PUT", target, [1, 2])[0] == 400
    assert not partition.initialized


def test_init_of_an_initialized_partition_erases_it(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    ready_partition(rest, partition)
    assert init_co(rest, partition)[0] == 204
    partition.objects = 3
    assert init_partition(rest, partition, label="again")[0] == 204
    assert partition.label == "again" and partition.objects == 0
    assert co_role(rest, partition)["initialized"] is False
    assert init_co(rest, partition)[0] == 403, "the re-initialization ended the Partition SO login"
    assert pso_login(rest, partition)[0] == 204
    assert init_co(rest, partition)[0] == 204


def test_a_5x_partition_cannot_be_initialized_over_rest() -> None:
    with SimulatedAppliance(dialect="6.2", rest=True, initialized=True, key_type="ec") as old:
        legacy = old.state.add_partition("legacy", "partition-Password-1", "legacy-Domain-1")
        client = Raw(old)
        client.login()
        hsm_login(client, admin_password(old))
        assert init_partition(client, legacy)[0] == 409
        assert client.call("GET", url(old, legacy, "/roles/co"))[0] == 404


# -- Partition SO --------------------------------------------------------------------------------------


def test_partition_so_login_needs_an_initialized_partition_and_costs_attempts(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    assert pso_login(rest, partition)[0] == 409
    hsm_login(rest, admin_password(appliance))
    init_partition(rest, partition)
    for left in range(ROLE_LOGIN_ATTEMPTS - 1, 0, -1):
        status, body = pso_login(rest, partition, "wrong-pso")
        assert status == 401 and f"{left} attempt" in body["error"]
    status, body = pso_login(rest, partition, "wrong-pso")
    assert status == 401 and "locked out" in body["error"]
    assert pso_login(rest, partition)[0] == 403, "locked out: not even the right password"


def test_a_good_pso_login_restores_its_attempts(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    hsm_login(rest, admin_password(appliance))
    init_partition(rest, partition)
    pso_login(rest, partition, "wrong-pso")
    assert partition.so_attempts_left == ROLE_LOGIN_ATTEMPTS - 1
    assert pso_login(rest, partition)[0] == 204
    assert partition.so_attempts_left == ROLE_LOGIN_ATTEMPTS


# -- Crypto Officer ------------------------------------------------------------------------------------


def test_co_init_needs_the_partition_so_of_that_partition_in_that_session(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    other_partition = appliance.state.add_uninitialized_partition("other")
    hsm_login(rest, admin_password(appliance))
    init_partition(rest, partition)
    init_partition(rest, other_partition)
    assert init_co(rest, partition)[0] == 403
    assert pso_login(rest, other_partition)[0] == 204
    assert init_co(rest, partition)[0] == 403, "the Partition SO of another partition"
    other = Raw(appliance)
    other.login()
    pso_login(other, partition)
    assert init_co(rest, partition)[0] == 403, "logged in in another session"
    assert init_co(other, partition)[0] == 204
    assert init_co(other, partition)[0] == 409, "an initialized Crypto Officer is not reset"
    assert partition.co.password == CO_TEMP


@pytest.mark.parametrize("policy21", [True, False])
def test_co_init_sets_pin_to_be_changed_by_policy_21(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw, policy21: bool
) -> None:
    appliance.state.policy21 = policy21
    ready_partition(rest, partition)
    init_co(rest, partition)
    role = co_role(rest, partition)
    assert role["initialized"] is True and role["pinToBeChanged"] is policy21


def test_patch_changes_the_co_password_and_clears_pin_to_be_changed_with_only_a_session(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    ready_partition(rest, partition)
    init_co(rest, partition)
    fresh = Raw(appliance)
    fresh.login()
    assert change_co(fresh, partition, CO_TEMP, CO_FINAL)[0] == 204
    role = co_role(fresh, partition)
    assert role["pinToBeChanged"] is False and role["loginAttemptsLeft"] == ROLE_LOGIN_ATTEMPTS
    assert partition.client_password == CO_FINAL


def test_patch_refusals(appliance: SimulatedAppliance, partition: Partition, rest: Raw) -> None:
    assert change_co(rest, partition, CO_TEMP, CO_FINAL)[0] == 409, "no Crypto Officer yet"
    ready_partition(rest, partition)
    init_co(rest, partition)
    assert change_co(rest, partition, CO_TEMP, CO_TEMP)[0] == 400
    assert rest.call("PATCH", url(appliance, partition, "/roles/co"), {"oldPassword": CO_TEMP})[0] == 400
    for left in range(ROLE_LOGIN_ATTEMPTS - 1, -1, -1):
        status, body = change_co(rest, partition, "wrong-old", CO_FINAL)
        assert status == 401
        assert co_role(rest, partition)["loginAttemptsLeft"] == left
        assert CO_FINAL not in body["error"] and "wrong-old" not in body["error"]
    role = co_role(rest, partition)
    assert role["lockedOut"] is True
    assert change_co(rest, partition, CO_TEMP, CO_FINAL)[0] == 403
    assert partition.co.password == CO_TEMP and partition.co.pin_to_be_changed


# -- journal -------------------------------------------------------------------------------------------


def test_every_request_is_journaled_by_canonical_name_with_secrets_masked(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    ready_partition(rest, partition)
    init_co(rest, partition)
    change_co(rest, partition, CO_TEMP, CO_FINAL)
    rest.call("GET", url(appliance, partition))
    entries = [e for e in appliance.journal.entries() if e.kind == "rest"]
    assert [(e.command, e.result) for e in entries] == [
        ("rest session open", 204),
        ("rest hsm login", 204),
        ("rest partition init", 204),
        ("rest partition login", 204),
        ("rest co init", 204),
        ("rest co password", 204),
        ("rest partition show", 200),
    ]
    assert [e.command for e in appliance.journal.mutating()] == [
        "rest partition init",
        "rest co init",
        "rest co password",
    ]
    assert [e.command for e in entries if e.auth] == [
        "rest session open",
        "rest hsm login",
        "rest partition login",
    ]
    text = "\n".join(e.line for e in appliance.journal.entries())
    for secret in (PSO, DOMAIN, CO_TEMP, CO_FINAL, admin_password(appliance), appliance.password):
        assert secret not in text
    basic = base64.b64encode(f"{appliance.username}:{appliance.password}".encode()).decode()
    assert basic not in text
    assert entries[2].line == (
        f"PUT {url(appliance, partition)} "
        f'{{"label": "web-label", "password": "{MASK}", "domain": "{MASK}", '
        '"defaultDomain": false, "ped": "0"}'
    )


def test_a_body_that_is_not_json_is_journaled_by_size_only(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    rest.call("PUT", url(appliance, partition), f"password={PSO}".encode())
    last = appliance.journal.entries()[-1]
    assert last.line == f"PUT {url(appliance, partition)} <{len('password=') + len(PSO)} bytes, not JSON>"
    assert last.result == 400


def test_an_oversized_body_is_refused_without_being_read(appliance: SimulatedAppliance, rest: Raw) -> None:
    rest.connection.putrequest("PUT", url(appliance, tail="/partitions/1"))
    rest.connection.putheader("Content-Length", str(MAX_BODY + 1))
    assert rest.cookie is not None
    rest.connection.putheader("Cookie", rest.cookie)
    rest.connection.endheaders()
    response = rest.connection.getresponse()
    assert response.status == 413
    assert response.getheader("Connection") == "close"
    assert appliance.journal.entries()[-1].result == 413


# -- faults --------------------------------------------------------------------------------------------


def test_fail_answers_500_with_the_message_and_does_not_run(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    hsm_login(rest, admin_password(appliance))
    appliance.faults.fail("rest partition init", "the HSM is busy", times=1)
    assert init_partition(rest, partition) == (500, {"error": "the HSM is busy"})
    assert not partition.initialized
    assert appliance.journal.entries()[-1].result == 500
    assert init_partition(rest, partition)[0] == 204, "times=1: the next one runs"


@pytest.mark.parametrize("after_execute", [False, True])
def test_drop_closes_the_connection_before_or_after_the_request_ran(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw, after_execute: bool
) -> None:
    hsm_login(rest, admin_password(appliance))
    appliance.faults.drop(command="rest partition init", after_execute=after_execute)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
        init_partition(rest, partition)
    assert partition.initialized is after_execute
    entry = appliance.journal.entries()[-1]
    assert entry.command == "rest partition init"
    assert entry.result == (204 if after_execute else None)


def test_hang_holds_a_request_until_released(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    ready_partition(rest, partition)
    hang = appliance.faults.hang("rest co init")
    answers: list[Answer] = []
    worker = threading.Thread(target=lambda: answers.append(init_co(rest, partition)))
    worker.start()
    assert hang.wait_started()
    assert not partition.co.initialized
    hang.release()
    worker.join(5)
    assert answers == [(204, None)]
    assert partition.co.initialized


def test_a_hang_the_client_walks_away_from_never_runs(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    ready_partition(rest, partition)
    hang = appliance.faults.hang("rest co init")
    rest.connection.timeout = 0.3
    rest.connection.sock.settimeout(0.3)  # type: ignore[union-attr]
    with pytest.raises(TimeoutError):
        init_co(rest, partition)
    assert hang.wait_started()
    rest.close()
    time.sleep(0.5)  # the appliance looks at the connection every 0.05 s while it hangs
    hang.release()
    time.sleep(0.2)
    entry = appliance.journal.entries()[-1]
    assert entry.command == "rest co init" and entry.result is None
    assert not partition.co.initialized


def test_flood_answers_with_a_body_that_never_ends(appliance: SimulatedAppliance, rest: Raw) -> None:
    appliance.faults.flood("rest hsm login")
    rest.connection.request(
        "POST", url(appliance, tail="/login"), body=b"{}", headers={"Cookie": rest.cookie or ""}
    )
    response = rest.connection.getresponse()
    assert response.status == 200
    received = io.BytesIO()
    while received.tell() < 4 * MAX_BODY:
        received.write(response.read1(65536))
    rest.close()
    assert appliance.journal.entries()[-1].result is None


def test_rest_fault_selectors(appliance: SimulatedAppliance) -> None:
    with pytest.raises(ValueError, match="nth counts shell command lines"):
        appliance.faults.fail("rest co init", nth=1)
    with pytest.raises(ValueError, match="file selects SCP transfers"):
        appliance.faults.drop(command="rest co init", file="x")
    appliance.faults.fail("rest co init", occurrence=2, times=1)
    assert appliance.faults.on_rest("rest co init") is None
    assert appliance.faults.on_command("partition init", 1) is None, "a REST fault is not a lunash one"
    action = appliance.faults.on_rest("rest co init")
    assert action is not None and action.kind == "fail"
    assert appliance.faults.on_rest("rest co init") is None


def test_latency_delays_the_named_request_after_it_ran_and_the_default_every_other(
    appliance: SimulatedAppliance, partition: Partition, rest: Raw
) -> None:
    hsm_login(rest, admin_password(appliance))
    appliance.faults.set_latency(0.3, "rest partition init")

    started = time.monotonic()
    assert init_partition(rest, partition)[0] == 204
    assert time.monotonic() - started >= 0.3
    assert partition.initialized
    started = time.monotonic()
    assert rest.call("GET", url(appliance, partition))[0] == 200
    assert time.monotonic() - started < 0.3, "no default latency: reads answer at once"

    appliance.faults.set_latency(0.2)
    started = time.monotonic()
    assert rest.call("GET", url(appliance, partition))[0] == 200
    assert time.monotonic() - started >= 0.2
    with pytest.raises(ValueError, match="unknown lunash command"):
        appliance.faults.set_latency(0.1, "scp upload")
