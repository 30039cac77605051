"""The simulated Luna SA appliance over real SSH (paramiko client against the paramiko server)."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import socket
import threading
import time
from collections.abc import Iterator

import paramiko
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from luna_ha.sim import cli
from luna_ha.sim.faults import FLOOD_LINE
from luna_ha.sim.server import SimulatedAppliance, running_appliances, wait_for
from luna_ha.sim.state import make_server_certificate
from tests.functional.lunash_client import HostKeyRejected, LunashClient, ReadTimeout, Shell

SUCCESS = "Command Result : 0 (Success)"
FAILURE = "Command Result : 65535 (Luna Shell execution)"
ADMIN_PW = "Admin-pw-1"
DOMAIN = "domain-1"


def connect(appliance: SimulatedAppliance, **kwargs: object) -> LunashClient:
    return LunashClient(
        appliance.host,
        appliance.port,
        appliance.username,
        password=appliance.password,
        host_key_line=appliance.host_key_line,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def zeroized() -> Iterator[SimulatedAppliance]:
    with SimulatedAppliance(hostname="hsm-a", serial="157541") as appliance:
        yield appliance


@pytest.fixture
def ready() -> Iterator[SimulatedAppliance]:
    with SimulatedAppliance(
        hostname="hsm-b", initialized=True, admin_password=ADMIN_PW, domain=DOMAIN, key_type="ec"
    ) as appliance:
        yield appliance


@pytest.fixture
def shell(ready: SimulatedAppliance) -> Iterator[Shell]:
    with connect(ready, timeout=5.0) as client:
        yield client.open_shell()


def client_cert(name: str) -> bytes:
    return make_server_certificate(name, "ec").cert_pem


# -- the manual provisioning sequence of the reference ------------------------------------------


def test_manual_provisioning_sequence_over_ssh(zeroized: SimulatedAppliance) -> None:
    with connect(zeroized) as client:
        sh = client.open_shell()
        assert sh.greeting.startswith("Luna SA 5.4.9 Command Line Shell - Copyright (c)")
        assert sh.greeting.endswith("[hsm-a] lunash:>")

        show = sh.run("hsm show")
        assert show.startswith("hsm show\r\n\r\n   Appliance Details:\r\n")
        assert "HSM Label:                          no label\r\n" in show
        assert "HSM IS ZEROIZED !!!!" in show
        assert show.endswith(f"\r\n\r\n{SUCCESS}\r\n[hsm-a] lunash:>")

        init = sh.run(f"hsm init -label hsm-a -domain {DOMAIN} -password {ADMIN_PW} -force")
        assert "'hsm init' successful." in init and SUCCESS in init
        old_pem = client.scp_get("server.pem")
        assert "'sysconf regenCert' successful." in sh.run("sysconf regenCert -force")
        new_pem = client.scp_get("server.pem")
        assert new_pem != old_pem
        assert "Success: NTLS binding" in sh.run("ntls bind eth0 -force")
        assert "'hsm login' successful." in sh.run(f"hsm login -password {ADMIN_PW}")
        assert "'partition create' successful." in sh.run(
            f"partition create -partition payments -password part-pw -domain {DOMAIN} -force"
        )
        assert " 157541001    payments " in sh.run("partition list")

        cert = client_cert("web-3f2a1c-r0")
        client.scp_put("web-3f2a1c-r0.pem", cert)
        assert "'client register' successful." in sh.run(
            "client register -client web -hostname web-3f2a1c-r0"
        )
        assert "'client assignPartition' successful." in sh.run(
            "client assignPartition -client web -partition payments"
        )
        assert "registered client 1: web\r\n" in sh.run("client list")
        show_client = sh.run("client show -client web")
        assert "ClientID:     web\r\nHostname:     web-3f2a1c-r0\r\n" in show_client
        assert 'Partitions:   "payments"\r\n' in show_client
        der = x509.load_pem_x509_certificate(cert).public_bytes(serialization.Encoding.DER)
        digest = hashlib.md5(der, usedforsecurity=False).hexdigest().upper()
        assert f"Certificate fingerprint: {':'.join(digest[i : i + 2] for i in range(0, 32, 2))}" in sh.run(
            "client fingerprint -client web"
        )

        server_cert = x509.load_pem_x509_certificate(client.scp_get("server.pem"))
        assert server_cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "hsm-a"
        assert server_cert.public_bytes(serialization.Encoding.PEM) == new_pem

        assert "'client revokePartition' successful." in sh.run(
            "client revokePartition -client web -partition payments"
        )
        assert "'client delete' successful." in sh.run("client delete -client web -force")
        assert "'partition delete' successful." in sh.run("partition delete -partition payments -force")
        assert "There are no partitions." in sh.run("partition list")

    state = zeroized.state
    assert (state.label, state.ntls_bound, state.partitions, state.clients) == ("hsm-a", True, {}, {})
    journal = zeroized.journal.entries()
    assert all(ADMIN_PW not in e.line and DOMAIN not in e.line and "part-pw" not in e.line for e in journal)
    assert [e.command for e in journal if e.mutating] == [
        "hsm init",
        "sysconf regenCert",
        "ntls bind",
        "partition create",
        "scp upload",
        "client register",
        "client assignPartition",
        "client revokePartition",
        "client delete",
        "partition delete",
    ]


def test_read_only_commands_leave_no_mutating_journal_entry(ready: SimulatedAppliance, shell: Shell) -> None:
    mark = ready.journal.mark()
    for line in (
        "hsm show",
        "partition list",
        "client list",
        "hsm login -password " + ADMIN_PW,
        "hsm logout",
    ):
        assert SUCCESS in shell.run(line)
    entries = ready.journal.since(mark)
    assert len(entries) == 5 and not [e for e in entries if e.mutating]
    assert [e.auth for e in entries] == [False, False, False, True, True]


# -- prompts over the wire ----------------------------------------------------------------------


def test_missing_password_is_asked_twice_and_echoed_as_stars(zeroized: SimulatedAppliance) -> None:
    with connect(zeroized) as client:
        sh = client.open_shell()
        assert sh.send("hsm init -label a -force").endswith(
            "Please enter a password for the HSM Administrator:\r\n> "
        )
        assert sh.send("secret-1").startswith("********\r\nPlease re-enter password to confirm:\r\n> ")
        sh.send("secret-1")
        sh.send("dom-1")
        out = sh.send("dom-1")
        assert out.startswith("*****\r\n'hsm init' successful.")
    assert zeroized.state.admin_password == "secret-1"
    assert all("secret-1" not in e.line and "dom-1" not in e.line for e in zeroized.journal.entries())


def test_proceed_prompt_and_quit_over_the_wire(shell: Shell, ready: SimulatedAppliance) -> None:
    before = ready.state.files["server.pem"]
    question = shell.send("sysconf regenCert")
    assert (
        "If you are sure that you wish to proceed, then type 'proceed', otherwise type 'quit'\r\n> "
        in question
    )
    assert shell.send("quit").startswith(f"quit\r\nCommand aborted.\r\n\r\n{FAILURE}")
    assert shell.run("quit") == "quit\r\n[hsm-b] lunash:>", "quit at a normal prompt is a no-op"
    assert ready.state.files["server.pem"] == before


def test_three_bad_logins_zeroize_with_a_last_attempt_caution(
    ready: SimulatedAppliance, shell: Shell
) -> None:
    shell.run(f"hsm login -password {ADMIN_PW}")
    shell.run(f"partition create -partition p1 -password x -domain {DOMAIN} -force")
    for attempt in ("bad-1", "bad-2"):
        assert "(A00000 : LUNA_RET_UM_PIN_INCORRECT)" in shell.run(f"hsm login -password {attempt}")
    assert "HSM Admin login attempts left:      1 before HSM zeroization!" in shell.run("hsm show")
    caution = shell.send("hsm login -password bad-3")
    assert "This is your LAST available HSM Admin login attempt" in caution
    out = shell.send("proceed")
    assert (
        "Error:  'hsm login' failed. (30000F : LUNA_RET_SO_LOGIN_FAILURE_THRESHOLD)" in out and FAILURE in out
    )
    show = shell.run("hsm show")
    assert "HSM Label:                          no label" in show
    assert "HSM IS ZEROIZED !!!!" in show and "There are no partitions." in show
    assert ready.state.zeroized


def test_login_state_belongs_to_one_shell(ready: SimulatedAppliance) -> None:
    with connect(ready) as client:
        first = client.open_shell()
        second = client.open_shell()
        assert "'hsm login' successful." in first.run(f"hsm login -password {ADMIN_PW}")
        assert "HSM Admin login status:             Logged In" in first.run("hsm show")
        assert "HSM Admin login status:             Not Logged In" in second.run("hsm show")
        assert "HSM Admin is not logged in" in second.run(
            "partition create -partition p -password x -domain d -f"
        )
    with connect(ready) as again:
        assert "Not Logged In" in again.open_shell().run("hsm show")


def test_errors_print_error_lines_and_shell_failure(shell: Shell) -> None:
    assert shell.run("client show -client ghost").endswith(
        "Error:  'client show' failed. (C000040A : RC_OBJECT_NOT_IN_LIST)\r\n"
        f"Error:  Specified client does not exist.\r\n\r\n{FAILURE}\r\n[hsm-b] lunash:>"
    )
    assert "Error:  Invalid command: bogus" in shell.run("bogus")


def test_exit_closes_the_shell(shell: Shell) -> None:
    shell.channel.sendall(b"exit\r")
    with pytest.raises(EOFError):
        shell.read_until(re.compile("never"), timeout=2)


def test_shell_without_pty_does_not_echo(ready: SimulatedAppliance) -> None:
    with connect(ready) as client:
        sh = client.open_shell(pty=False)
        assert sh.run("client list") == f"\r\nNo clients are registered.\r\n\r\n{SUCCESS}\r\n[hsm-b] lunash:>"


# -- exec, scp, auth, host keys --------------------------------------------------------------------


def test_exec_of_a_lunash_command_is_refused_with_status_1(ready: SimulatedAppliance) -> None:
    with connect(ready) as client:
        status, stdout, stderr = client.exec(f"hsm login -password {ADMIN_PW}")
    assert (status, stdout) == (1, b"")
    assert b"not supported" in stderr
    assert ready.journal.entries()[-1].line == "hsm login -password ********"


def test_scp_download_of_a_missing_file_fails(ready: SimulatedAppliance) -> None:
    with connect(ready) as client, pytest.raises(OSError, match="No such file"):
        client.scp_get("nope.pem")


def test_scp_upload_refuses_paths_and_server_pem(ready: SimulatedAppliance) -> None:
    with connect(ready) as client:
        with pytest.raises(OSError, match="Permission denied"):
            client.scp_put("../evil.pem", b"x")
        with pytest.raises(OSError, match="Permission denied"):
            client.scp_put("server.pem", b"x")
    assert set(ready.state.files) == {"server.pem"}
    assert [(e.command, e.mutating, e.result) for e in ready.journal.entries()] == [
        ("scp upload", True, 1)
    ] * 2


def test_scp_upload_into_the_home_directory_uses_the_sent_name(ready: SimulatedAppliance) -> None:
    with connect(ready) as client:
        channel = client.transport.open_session()
        channel.exec_command("scp -t .")
        assert channel.recv(1) == b"\0"
        channel.sendall(b"C0644 3 app.pem\n")
        assert channel.recv(1) == b"\0"
        channel.sendall(b"abc\0")
        assert channel.recv(1) == b"\0"
        channel.shutdown_write()
        assert channel.recv_exit_status() == 0
    assert ready.state.files["app.pem"] == b"abc"


def test_sftp_is_not_offered(ready: SimulatedAppliance) -> None:
    with connect(ready) as client, pytest.raises(paramiko.SSHException):
        paramiko.SFTPClient.from_transport(client.transport)


def test_wrong_password_is_rejected(ready: SimulatedAppliance) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        LunashClient(ready.host, ready.port, "manager", password="wrong", host_key_line=ready.host_key_line)


def test_public_key_authentication_with_the_authorized_key() -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))
    line = f"{key.get_name()} {key.get_base64()} operator@example"
    with SimulatedAppliance(authorized_key=line, key_type="ec") as appliance:
        client = LunashClient(
            appliance.host, appliance.port, "manager", pkey=key, host_key_line=appliance.host_key_line
        )
        with client:
            assert SUCCESS in client.open_shell().run("hsm show")


def test_host_key_fingerprint_matches_the_key_line(ready: SimulatedAppliance) -> None:
    blob = base64.b64decode(ready.host_key_line.split()[1])
    expected = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert ready.host_key_line.startswith("ssh-ed25519 AAAA")
    assert ready.host_key_fingerprint == f"SHA256:{expected}"


def test_rsa_host_key_is_offered_on_request() -> None:
    with SimulatedAppliance(rsa_host_key=True, key_type="ec") as appliance:
        rsa_line = appliance.host_key_lines[1]
        assert rsa_line.startswith("ssh-rsa ")
        sock = socket.create_connection((appliance.host, appliance.port))
        transport = paramiko.Transport(sock, disabled_algorithms={"keys": ["ssh-ed25519"]})
        try:
            transport.start_client(timeout=5)
            key = transport.get_remote_server_key()
            assert f"{key.get_name()} {key.get_base64()}" == rsa_line
        finally:
            transport.close()


# -- faults -------------------------------------------------------------------------------------


def test_refused_connections_fail_before_ssh(ready: SimulatedAppliance) -> None:
    ready.faults.refuse()
    with pytest.raises((paramiko.SSHException, OSError, EOFError)):
        connect(ready, timeout=3.0)
    assert (ready.refused, ready.connections) == (1, 0)
    ready.faults.refuse(False)
    with connect(ready) as client:
        assert SUCCESS in client.open_shell().run("hsm show")
    assert ready.connections == 1


def test_wrong_host_key_is_presented_on_request(ready: SimulatedAppliance) -> None:
    ready.faults.wrong_host_key()
    with pytest.raises(HostKeyRejected):
        connect(ready)
    ready.faults.clear()
    connect(ready).close()


def test_drop_at_the_nth_command_closes_the_connection_before_it_runs(
    ready: SimulatedAppliance, shell: Shell
) -> None:
    ready.faults.drop(nth=2)
    shell.run(f"hsm login -password {ADMIN_PW}")
    with pytest.raises(EOFError):
        shell.send(f"partition create -partition p -password x -domain {DOMAIN} -force")
    assert not ready.state.partitions
    last = ready.journal.commands()[-1]
    assert (last.command, last.result, last.mutating) == ("partition create", None, True)


def test_drop_after_execute_changes_state_but_sends_nothing(ready: SimulatedAppliance, shell: Shell) -> None:
    ready.faults.drop(command="partition create", after_execute=True)
    shell.run(f"hsm login -password {ADMIN_PW}")
    with pytest.raises(EOFError):
        shell.send(f"partition create -partition p -password x -domain {DOMAIN} -force")
    assert "p" in ready.state.partitions
    with connect(ready) as client:
        assert "There are no partitions" not in client.open_shell().run("partition list")


def test_failing_command_prints_error_and_does_not_run(ready: SimulatedAppliance, shell: Shell) -> None:
    ready.faults.fail("client list", "Unable to communicate with HSM.")
    out = shell.run("client list")
    assert (
        out
        == f"client list\r\n\r\nError:  Unable to communicate with HSM.\r\n\r\n{FAILURE}\r\n[hsm-b] lunash:>"
    )
    assert ready.journal.commands()[-1].result == 65535
    ready.faults.clear()
    assert SUCCESS in shell.run("client list")


def test_hanging_command_sends_nothing_until_released(ready: SimulatedAppliance, shell: Shell) -> None:
    hang = ready.faults.hang("hsm show")
    shell.channel.sendall(b"hsm show\r")
    assert hang.wait_started(5)
    with pytest.raises(ReadTimeout):
        shell.read_until(re.compile("lunash:>"), timeout=0.3)
    hang.release()
    assert SUCCESS in shell.read_until(re.compile(r"lunash:>$"))


def test_stop_unblocks_a_hanging_command() -> None:
    appliance = SimulatedAppliance(key_type="ec").start()
    hang = appliance.faults.hang("hsm show")
    client = connect(appliance)
    sh = client.open_shell()
    sh.channel.sendall(b"hsm show\r")
    assert hang.wait_started(5)
    started = time.monotonic()
    appliance.stop()
    with pytest.raises((EOFError, OSError)):
        sh.read_until(re.compile("never"), timeout=5)
    assert time.monotonic() - started < 3
    client.close()


def test_client_closing_abandons_a_hanging_command(ready: SimulatedAppliance) -> None:
    hang = ready.faults.hang("client list")
    client = connect(ready)
    sh = client.open_shell()
    sh.channel.sendall(b"client list\r")
    assert hang.wait_started(5)
    client.close()
    assert wait_for(
        lambda: ready.journal.commands() and ready.journal.commands()[-1].command == "client list"
    )
    assert ready.journal.commands()[-1].result is None
    assert not hang.released


def test_fail_at_an_occurrence_answers_that_use_of_the_command_only(
    ready: SimulatedAppliance, shell: Shell
) -> None:
    ready.faults.fail("partition list", "Unable to communicate with HSM.", occurrence=2, times=1)
    assert SUCCESS in shell.run("partition list")
    out = shell.run("partition list")
    assert "Error:  Unable to communicate with HSM." in out and FAILURE in out
    assert SUCCESS in shell.run("partition list")
    assert [e.result for e in ready.journal.commands()] == [0, 65535, 0]


def test_hang_at_the_nth_command_line(ready: SimulatedAppliance, shell: Shell) -> None:
    hang = ready.faults.hang("hsm show", nth=2)
    assert SUCCESS in shell.run("hsm show", timeout=2)
    shell.channel.sendall(b"hsm show\r")
    assert hang.wait_started(5)
    with pytest.raises(ReadTimeout):
        shell.read_until(re.compile("lunash:>"), timeout=0.3)
    hang.release()
    assert SUCCESS in shell.read_until(re.compile(r"lunash:>$"))


def test_scp_upload_dropped_before_the_file_moves_stores_nothing(ready: SimulatedAppliance) -> None:
    ready.faults.drop(command="scp upload", file="web.pem")
    with connect(ready, timeout=5.0) as client, pytest.raises((EOFError, OSError)):
        client.scp_put("web.pem", b"abc")
    assert "web.pem" not in ready.state.files
    entry = ready.journal.entries()[-1]
    assert (entry.command, entry.mutating, entry.result) == ("scp upload", True, None)
    with connect(ready) as client:
        client.scp_put("web.pem", b"abc")  # a drop fires once
    assert ready.state.files["web.pem"] == b"abc"


def test_scp_upload_dropped_midway_is_stored_but_never_acknowledged(ready: SimulatedAppliance) -> None:
    cert = client_cert("web")
    ready.faults.drop(command="scp upload", after_execute=True)
    with connect(ready, timeout=5.0) as client, pytest.raises((EOFError, OSError)):
        client.scp_put("web.pem", cert)
    assert ready.state.files["web.pem"] == cert
    assert ready.journal.entries()[-1].result is None, "no exit status was sent"


def test_scp_download_dropped_midway_sends_the_header_but_not_the_file(ready: SimulatedAppliance) -> None:
    ready.faults.drop(command="scp download", file="server.pem", after_execute=True)
    with connect(ready, timeout=5.0) as client:
        channel = client.transport.open_session()
        channel.settimeout(5.0)
        channel.exec_command("scp -f server.pem")
        channel.sendall(b"\0")
        header = b""
        while not header.endswith(b"\n"):
            header += channel.recv(1)
        assert re.fullmatch(rb"C0644 \d+ server\.pem\n", header)
        channel.sendall(b"\0")
        assert channel.recv(65536) == b"", "the connection closed before the file's content"


def test_failed_scp_transfers_get_the_error_an_scp_client_prints(ready: SimulatedAppliance) -> None:
    ready.faults.fail("scp download", "Permission denied", file="server.pem")
    ready.faults.fail("scp upload", file="web.pem")
    with connect(ready) as client:
        with pytest.raises(OSError, match=r"^scp: server\.pem: Permission denied$"):
            client.scp_get("server.pem")
        with pytest.raises(OSError, match=r"^scp: web\.pem: Input/output error \(simulated fault\)$"):
            client.scp_put("web.pem", b"abc")
        client.scp_put("app.pem", b"abc")
        assert client.scp_get("app.pem") == b"abc"
    assert "web.pem" not in ready.state.files
    assert [(e.command, e.result) for e in ready.journal.entries()] == [
        ("scp download", 1),
        ("scp upload", 1),
        ("scp upload", 0),
        ("scp download", 0),
    ]


def test_hanging_scp_transfer_moves_once_released(ready: SimulatedAppliance) -> None:
    hang = ready.faults.hang("scp upload", file="web.pem")
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            client.scp_put("web.pem", b"abc")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    with connect(ready) as client:
        uploading = threading.Thread(target=upload, daemon=True)
        uploading.start()
        assert hang.wait_started(5)
        uploading.join(0.3)
        assert uploading.is_alive() and "web.pem" not in ready.state.files
        hang.release()
        uploading.join(5)
    assert not uploading.is_alive() and errors == []
    assert ready.state.files["web.pem"] == b"abc"


def test_latency_delays_the_named_command_only(ready: SimulatedAppliance, shell: Shell) -> None:
    ready.faults.set_latency(0.3, "client list")
    started = time.monotonic()
    shell.run("hsm show")
    fast = time.monotonic() - started
    started = time.monotonic()
    shell.run("client list")
    slow = time.monotonic() - started
    assert fast < 0.3 <= slow < 2


def test_connections_are_counted(ready: SimulatedAppliance) -> None:
    for _ in range(3):
        connect(ready).close()
    assert ready.connections == 3


# -- scale and the CLI ----------------------------------------------------------------------------


def test_sixteen_appliances_serve_sixteen_concurrent_sessions() -> None:
    with running_appliances(
        16, initialized=True, admin_password=ADMIN_PW, domain=DOMAIN, key_type="ec"
    ) as hsms:
        assert len({a.port for a in hsms}) == 16 and len({a.serial for a in hsms}) == 16
        errors: list[BaseException] = []
        barrier = threading.Barrier(16)

        def session(appliance: SimulatedAppliance) -> None:
            try:
                with connect(appliance, timeout=20.0) as client:
                    sh = client.open_shell()
                    barrier.wait(timeout=20)
                    sh.run(f"hsm login -password {ADMIN_PW}")
                    sh.run(f"partition create -partition payments -password x -domain {DOMAIN} -force")
                    assert f" {appliance.serial}001    payments " in sh.run("partition list")
                    assert f"[{appliance.hostname}] lunash:>" in sh.run("hsm show")
            except BaseException as problem:  # reported below
                errors.append(problem)

        threads = [threading.Thread(target=session, args=(a,)) for a in hsms]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert all(a.connections == 1 and "payments" in a.state.partitions for a in hsms)


def test_simulate_cli_lists_appliances_and_stops_on_ctrl_c(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def interrupt() -> None:
        text = out.getvalue()
        seen.extend(int(line.split()[-1]) for line in text.splitlines() if line.strip().startswith("port:"))
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "wait_for_interrupt", interrupt)
    out = io.StringIO()
    assert cli.simulate_main(["-n", "2", "--latency", "0.01"], out=out) == 0
    text = out.getvalue()
    assert text.count("host key:     ssh-ed25519 AAAA") == 2
    assert text.count("fingerprint:  SHA256:") == 2
    assert text.count("username:     manager") == 2
    assert "HSM Admin password:" in text and "Stopping." in text
    assert len(seen) == 2
    for port in seen:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_simulate_cli_zeroized_omits_admin_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "wait_for_interrupt", lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    out = io.StringIO()
    assert cli.simulate_main(["--zeroized"], out=out) == 0
    assert "zeroized" in out.getvalue() and "HSM Admin password" not in out.getvalue()


def test_simulate_cli_rejects_bad_arguments_with_status_2() -> None:
    assert cli.simulate_main(["-n", "0"]) == 2
    assert cli.simulate_main(["--latency", "-1"]) == 2


def test_distinct_loopback_hosts_on_request() -> None:
    with running_appliances(2, distinct_hosts=True, key_type="ec") as hsms:
        assert [a.host for a in hsms] == ["127.0.0.1", "127.0.0.2"]
        with connect(hsms[1]) as client:
            assert "[luna-sim-02] lunash:>" in client.open_shell().run("hsm show")
    with pytest.raises(ValueError, match="loopback"):
        SimulatedAppliance(host="0.0.0.0")


def test_flooding_command_streams_without_a_prompt_and_does_not_run(ready: SimulatedAppliance) -> None:
    ready.faults.flood("client list")
    with connect(ready, timeout=5.0) as client:
        shell = client.open_shell()
        shell.channel.sendall(b"client list\r")
        received = b""
        while len(received) < 1 << 20:
            received += shell.channel.recv(65536)

    text = received.decode()
    assert text.count(FLOOD_LINE) > 10_000 and "lunash:>" not in text and "Command Result" not in text
    (entry,) = ready.journal.commands()
    assert (entry.command, entry.result) == ("client list", None)


def test_first_login_asks_for_a_new_password_then_opens_lunash() -> None:
    with SimulatedAppliance(initialized=True, password_change_required=True) as first:
        old = first.password
        with connect(first, timeout=5.0) as client:
            channel = client.transport.open_session()
            channel.get_pty(term="vt100", width=200)
            channel.invoke_shell()
            greeting = read_until(channel, b"New password: ")
            assert "you must change your password" in greeting
            assert f"Changing password for user {first.username}." in greeting
            channel.sendall(b"Fresh-pw-1\r")
            read_until(channel, b"Retype new password: ")
            channel.sendall(b"Fresh-pw-1\r")
            opened = read_until(channel, b"lunash:>")
            assert "Fresh-pw-1" not in opened and "Password change successful." in opened

        assert (first.password, first.password_change_required) == ("Fresh-pw-1", False)
        assert "Fresh-pw-1" not in "".join(e.line for e in first.journal.entries())
        with pytest.raises(paramiko.AuthenticationException):
            LunashClient(
                first.host, first.port, first.username, password=old, host_key_line=first.host_key_line
            )
        with connect(first, timeout=5.0) as client:
            assert SUCCESS in client.open_shell().run("hsm show")


def read_until(channel: paramiko.Channel, marker: bytes, timeout: float = 5.0) -> str:
    channel.settimeout(timeout)
    received = b""
    while not received.endswith(marker):
        data = channel.recv(4096)
        if not data:
            raise EOFError(received.decode(errors="replace"))
        received += data
    return received.decode()
