"""The REST API of a simulated Luna Network HSM 7: HTTPS on loopback, its own port and certificate.

It serves the same ``ApplianceModel`` as the appliance's SSH side (``server.py`` starts one per 7.x
appliance), so what lunash did is what REST sees and the other way round. Endpoints (JSON bodies):

    POST   /auth/session                     Basic auth, body {}  -> 204 + SESSIONID cookie
    DELETE /auth/session                                          -> 204
    GET    /api/lunasa/hsms                                       -> {"hsms": [{"id", "url"}]}
    GET    /api/lunasa/hsms/{hsm}                                 -> {"id", "label", "serialNumber",
                                                                      "soLoginsLeft", "zeroized"}
    POST   /api/lunasa/hsms/{hsm}/login                           {"ped", "password", "role": "so"} -> 204
    GET    /api/lunasa/hsms/{hsm}/partitions                      -> {"partitions": [{"id", "url"}]}
    GET    …/partitions/{pid}                                     -> {"id", "name", "label",
                                                                      "serialNumber", "state", "version"}
    PUT    …/partitions/{pid}            {"label", "password", "domain", "defaultDomain", "ped"} -> 204
    POST   …/partitions/{pid}/login      {"role": "so", "password", "ped"} -> 204
    GET    …/partitions/{pid}/roles/co                            -> the Crypto Officer's state
    PUT    …/partitions/{pid}/roles/co   {"password", "defaultChallenge", "ped"} -> 204
    PATCH  …/partitions/{pid}/roles/co   {"oldPassword", "newPassword"} -> 204

``{hsm}`` is the HSM serial, ``{pid}`` a partition's serial. Every request but ``POST /auth/session``
needs a live session (its cookie); a session dies after ``SESSION_IDLE_SECONDS`` without a request.
The HSM SO login and the Partition SO logins belong to the REST session (not to an SSH shell):
the HSM SO login lasts while the HSM is not re-initialized or zeroized, a Partition SO login while
its partition is not re-initialized. Wrong passwords cost attempts exactly where lunash takes them:
the HSM SO's ``attempts_left`` (the third wrong one zeroizes the HSM, as ``hsm login`` does), the
Partition SO's ``so_attempts_left`` and the Crypto Officer's ``attempts_left`` (at 0 the role is
locked out). ``PUT …/partitions/{pid}`` on an initialized partition re-initializes it: it ERASES
its objects and Crypto Officer, as the real appliance does.

Errors are JSON ``{"error": text}`` with 400 (malformed request), 401 (no session, wrong
credentials or password), 403 (a login this session lacks, a locked-out role), 404 (no such HSM,
partition, role or endpoint), 409 (the state forbids it), 411/413 (no length, body over
``MAX_BODY`` bytes); no text ever holds a password or domain.

Every request goes to the appliance's journal (kind ``rest``) under a canonical name (``REST_REQUESTS``
in ``faults.py``: ``rest hsm login``, ``rest partition init``, ``rest partition login``, ``rest co
init``, ``rest co password``, ...), as ``METHOD path`` plus its JSON body with every password and
domain value masked, and its HTTP status as the result. Faults act on requests by those names.

Choices where the vendor documentation is silent: a zeroized HSM reports an empty label; ``PUT
…/roles/co`` on an initialized Crypto Officer is refused (409) rather than resetting it; a new
Crypto Officer password equal to the old one is refused (400); ``ped`` may be ``"0"`` or ``""``
(no PED); HTTP 500 is used only by the ``fail`` fault.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import select
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from luna_ha.sim.dialogue import LoginState
from luna_ha.sim.faults import (
    REST_CO_INIT,
    REST_CO_PASSWORD,
    REST_HSM_LOGIN,
    REST_PARTITION_INIT,
    REST_PARTITION_LOGIN,
    Faults,
)
from luna_ha.sim.journal import MASK, Journal
from luna_ha.sim.state import (
    ATTEMPTS_BEFORE_ZEROIZATION,
    ROLE_LOGIN_ATTEMPTS,
    ApplianceModel,
    Partition,
    ServerCertificate,
    make_server_certificate,
)

COOKIE = "SESSIONID"
CONTENT_TYPE = "application/vnd.safenetinc.lunasa+json;version="
#: A session dies after this many seconds without a request (the appliance's 10 minutes).
SESSION_IDLE_SECONDS = 600.0
#: The largest request body accepted (the API's bodies are well under 1 KiB).
MAX_BODY = 64 * 1024
#: The most values a password, domain or label may have, in characters.
MAX_VALUE = 255
MAX_LABEL = 32
_HANDSHAKE_TIMEOUT = 10.0
_IDLE_CONNECTION_TIMEOUT = 60.0
#: JSON keys whose values never reach the journal (compared case-insensitively).
_SECRET_KEYS = frozenset({"password", "oldpassword", "newpassword", "domain", "sopassword"})
_FLOOD_CHUNK = b'{"partitions": [' + b'{"id": "1234567890123", "url": "/flood"}, ' * 512
_NO_PED = ("0", "")

HSMS = "/api/lunasa/hsms"
_HSM = HSMS + r"/(?P<hsm>[^/]+)"
_PARTITION = _HSM + r"/partitions/(?P<pid>[^/]+)"
_ROLE = _PARTITION + r"/roles/(?P<role>[^/]+)"
#: (method, path pattern, canonical name) of every endpoint.
_ROUTES = (
    ("POST", r"/auth/session", "rest session open"),
    ("DELETE", r"/auth/session", "rest session close"),
    ("GET", HSMS, "rest hsm list"),
    ("GET", _HSM, "rest hsm show"),
    ("POST", _HSM + "/login", REST_HSM_LOGIN),
    ("GET", _HSM + "/partitions", "rest partition list"),
    ("GET", _PARTITION, "rest partition show"),
    ("PUT", _PARTITION, REST_PARTITION_INIT),
    ("POST", _PARTITION + "/login", REST_PARTITION_LOGIN),
    ("GET", _ROLE, "rest co show"),
    ("PUT", _ROLE, REST_CO_INIT),
    ("PATCH", _ROLE, REST_CO_PASSWORD),
)


def certificate_fingerprint(der: bytes) -> str:
    """``SHA256:`` + unpadded base64 of the SHA-256 of a certificate's DER (the SSH host key form).

    Written here again on purpose, as ``sim.keys`` does for host keys: the simulator's pin is what
    the product's own computation is tested against."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")


def mask_body(body: bytes) -> str:
    """A request body as the journal shows it: JSON with password and domain values masked."""
    if not body:
        return ""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return f"<{len(body)} bytes, not JSON>"
    return json.dumps(_masked(document))


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: MASK if str(k).lower() in _SECRET_KEYS else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


# -- the socket-free API ----------------------------------------------------------------------------


class RestProblem(Exception):
    """Ends a request with an error status and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(status, message)


@dataclass(frozen=True)
class RestReply:
    status: int
    body: dict[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class RestSession:
    """One REST session: its cookie value, when it was last used, and its logins."""

    token: str = field(repr=False)
    last_used: float
    hsm_login: LoginState = field(default_factory=LoginState)
    #: Partition serial -> (HSM generation, partition epoch) of the Partition SO login.
    partition_so: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class RestRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-case
    body: bytes = field(repr=False)


@dataclass(frozen=True)
class Routed:
    name: str
    params: dict[str, str]


def route(method: str, path: str) -> Routed | None:
    """The canonical request name and path parameters, or None (no such endpoint)."""
    path = path.split("?", 1)[0].rstrip("/") or "/"
    for verb, pattern, name in _ROUTES:
        match = re.fullmatch(pattern, path)
        if match and verb == method:
            return Routed(name, match.groupdict())
    return None


def path_known(path: str) -> bool:
    path = path.split("?", 1)[0].rstrip("/") or "/"
    return any(re.fullmatch(pattern, path) for _, pattern, _ in _ROUTES)


class RestApi:
    """The appliance's REST endpoints over one ``ApplianceModel``; call ``handle`` per request."""

    def __init__(
        self,
        state: ApplianceModel,
        credentials: Callable[[str, str], bool],
        *,
        clock: Callable[[], float] = time.monotonic,
        session_idle: float = SESSION_IDLE_SECONDS,
    ) -> None:
        self.state = state
        self.credentials = credentials
        self.clock = clock
        self.session_idle = session_idle
        self.sessions: dict[str, RestSession] = {}
        #: Partition serial -> how often REST re-initialized it (ends its Partition SO logins).
        self._epochs: dict[str, int] = {}

    def handle(self, routed: Routed, request: RestRequest) -> RestReply:
        try:
            with self.state.lock:
                if routed.name == "rest session open":
                    return self._open_session(request)
                session = self._session(request)
                return self._dispatch(routed, request, session)
        except RestProblem as problem:
            return RestReply(problem.status, {"error": problem.message})

    # -- sessions ------------------------------------------------------------------------------

    def _open_session(self, request: RestRequest) -> RestReply:
        self._expire()
        _json_object(request.body, allow_empty=True)
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if scheme.lower() != "basic" or not sep:
            raise RestProblem(401, "Authentication required: send Authorization: Basic <user:password>.")
        if not self.credentials(user, password):
            raise RestProblem(401, "Invalid user name or password.")
        token = secrets.token_urlsafe(32)
        self.sessions[token] = RestSession(token, self.clock())
        cookie = f"{COOKIE}={token}; Path=/; Secure; HttpOnly"
        return RestReply(204, headers=(("Set-Cookie", cookie),))

    def _expire(self) -> None:
        now = self.clock()
        for token, session in list(self.sessions.items()):
            if now - session.last_used > self.session_idle:
                del self.sessions[token]

    def _session(self, request: RestRequest) -> RestSession:
        self._expire()
        token = _cookie(request.headers.get("cookie", ""), COOKIE)
        session = self.sessions.get(token) if token else None
        if session is None:
            raise RestProblem(401, "No session, or the session expired. Open one with POST /auth/session.")
        session.last_used = self.clock()
        return session

    # -- endpoints -------------------------------------------------------------------------------

    def _dispatch(self, routed: Routed, request: RestRequest, session: RestSession) -> RestReply:
        p, name = routed.params, routed.name
        if name == "rest session close":
            del self.sessions[session.token]
            return RestReply(204, headers=(("Set-Cookie", f"{COOKIE}=; Path=/; Max-Age=0"),))
        if name == "rest hsm list":
            s = self.state.serial
            return RestReply(200, {"hsms": [{"id": s, "url": f"{HSMS}/{s}"}]})
        self._hsm(p["hsm"])
        if name == "rest hsm show":
            return RestReply(200, self._hsm_view())
        if name == REST_HSM_LOGIN:
            return self._hsm_login(session, _json_object(request.body))
        if name == "rest partition list":
            items = [
                {"id": x.serial, "url": _partition_url(self.state, x)} for x in self.state.partitions.values()
            ]
            return RestReply(200, {"partitions": items})
        partition = self._partition(p["pid"])
        if name == "rest partition show":
            return RestReply(200, _partition_view(partition))
        if name == REST_PARTITION_INIT:
            return self._init_partition(session, partition, _json_object(request.body))
        if name == REST_PARTITION_LOGIN:
            return self._partition_login(session, partition, _json_object(request.body))
        if p.get("role") != "co" or not partition.has_so:
            raise RestProblem(404, f"Partition {partition.serial} has no role '{p.get('role')}'.")
        if name == "rest co show":
            return RestReply(200, _co_view(partition))
        if name == REST_CO_INIT:
            return self._init_co(session, partition, _json_object(request.body))
        return self._change_co_password(partition, _json_object(request.body))

    def _hsm(self, hsm_id: str) -> None:
        if hsm_id != self.state.serial:
            raise RestProblem(404, f"No HSM with id {_shown(hsm_id)} on this appliance.")

    def _partition(self, pid: str) -> Partition:
        for partition in self.state.partitions.values():
            if partition.serial == pid:
                return partition
        raise RestProblem(404, f"No partition with id {_shown(pid)} on HSM {self.state.serial}.")

    def _hsm_view(self) -> dict[str, Any]:
        s = self.state
        return {
            "id": s.serial,
            "label": "" if s.zeroized else s.label,
            "serialNumber": s.serial,
            "soLoginsLeft": s.attempts_left,
            "zeroized": s.zeroized,
        }

    def _hsm_login(self, session: RestSession, body: dict[str, Any]) -> RestReply:
        s = self.state
        _require_role(body, "so")
        _require_no_ped(body)
        password = _text(body, "password")
        if s.zeroized:
            raise RestProblem(409, "The HSM is zeroized; initialize it first.")
        if hmac.compare_digest(password.encode(), (s.admin_password or "").encode()):
            s.attempts_left = ATTEMPTS_BEFORE_ZEROIZATION
            session.hsm_login.generation = s.generation
            return RestReply(204)
        s.attempts_left -= 1
        if s.attempts_left <= 0:
            s.zeroize()
            raise RestProblem(401, "HSM SO login failed: that was the last attempt, the HSM is zeroized.")
        raise RestProblem(
            401, f"HSM SO login failed: wrong password ({_attempts(s.attempts_left)} before zeroization)."
        )

    def _init_partition(self, session: RestSession, partition: Partition, body: dict[str, Any]) -> RestReply:
        if not session.hsm_login.logged_in(self.state):
            raise RestProblem(
                403, f"The HSM SO is not logged in in this session; POST {HSMS}/<id>/login first."
            )
        if not partition.has_so:
            raise RestProblem(
                409, f"Partition {partition.serial} has no Partition SO; it cannot be initialized."
            )
        label = _text(body, "label", limit=MAX_LABEL)
        password, domain = _text(body, "password"), _text(body, "domain")
        if body.get("defaultDomain", False) is not False:
            raise RestProblem(400, "defaultDomain must be false: give the cloning domain.")
        _require_no_ped(body)
        self.state.init_partition(partition.name, label, password, domain)
        self._epochs[partition.serial] = self._epochs.get(partition.serial, 0) + 1
        return RestReply(204)

    def _partition_login(self, session: RestSession, partition: Partition, body: dict[str, Any]) -> RestReply:
        _require_role(body, "so")
        _require_no_ped(body)
        password = _text(body, "password")
        if not (partition.has_so and partition.initialized and partition.so_password is not None):
            raise RestProblem(409, f"Partition {partition.serial} is not initialized.")
        if partition.so_attempts_left <= 0:
            raise RestProblem(403, f"The Partition SO of partition {partition.serial} is locked out.")
        if not hmac.compare_digest(password.encode(), partition.so_password.encode()):
            partition.so_attempts_left -= 1
            left = partition.so_attempts_left
            outcome = "the Partition SO is now locked out" if left <= 0 else _attempts(left)
            raise RestProblem(401, f"Partition SO login failed: wrong password ({outcome}).")
        partition.so_attempts_left = ROLE_LOGIN_ATTEMPTS
        session.partition_so[partition.serial] = (
            self.state.generation,
            self._epochs.get(partition.serial, 0),
        )
        return RestReply(204)

    def _init_co(self, session: RestSession, partition: Partition, body: dict[str, Any]) -> RestReply:
        login = session.partition_so.get(partition.serial)
        if (
            login != (self.state.generation, self._epochs.get(partition.serial, 0))
            or not partition.initialized
        ):
            raise RestProblem(
                403, f"The Partition SO of partition {partition.serial} is not logged in in this session."
            )
        if partition.co.initialized:
            raise RestProblem(
                409, f"The Crypto Officer of partition {partition.serial} is already initialized."
            )
        password = _text(body, "password")
        if body.get("defaultChallenge", False) is not False:
            raise RestProblem(400, "defaultChallenge must be false.")
        _require_no_ped(body)
        self.state.init_co(partition.name, password)
        return RestReply(204)

    def _change_co_password(self, partition: Partition, body: dict[str, Any]) -> RestReply:
        old, new = _text(body, "oldPassword"), _text(body, "newPassword")
        co = partition.co
        if not co.initialized:
            raise RestProblem(409, f"The Crypto Officer of partition {partition.serial} is not initialized.")
        if co.locked_out:
            raise RestProblem(403, f"The Crypto Officer of partition {partition.serial} is locked out.")
        if old == new:
            raise RestProblem(400, "The new password must differ from the old one.")
        if not self.state.change_co_password(partition.name, old, new):
            left = partition.co.attempts_left
            outcome = "the Crypto Officer is now locked out" if left <= 0 else _attempts(left)
            raise RestProblem(401, f"Crypto Officer password change failed: wrong old password ({outcome}).")
        return RestReply(204)


def _partition_url(state: ApplianceModel, partition: Partition) -> str:
    return f"{HSMS}/{state.serial}/partitions/{partition.serial}"


def _partition_view(partition: Partition) -> dict[str, Any]:
    return {
        "id": partition.serial,
        "name": partition.name,
        "label": partition.label,
        "serialNumber": partition.serial,
        "state": "initialized" if partition.initialized else "zeroized",
        "version": partition.version,
    }


def _co_view(partition: Partition) -> dict[str, Any]:
    co = partition.co
    return {
        "id": "co",
        "name": "Crypto Officer",
        "initialized": co.initialized,
        "pinToBeChanged": co.pin_to_be_changed,
        "lockedOut": co.locked_out,
        "loginAttemptsLeft": max(0, co.attempts_left),
        "activated": False,
        "primaryAuthentication": "Password",
        "secondaryAuthentication": "None",
        "challengeToBeChanged": False,
    }


def _json_object(body: bytes, *, allow_empty: bool = False) -> dict[str, Any]:
    if not body.strip() and allow_empty:
        return {}
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RestProblem(400, "The request body is not JSON.") from None
    if not isinstance(document, dict):
        raise RestProblem(400, "The request body must be a JSON object.")
    return document


def _text(body: dict[str, Any], key: str, *, limit: int = MAX_VALUE) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise RestProblem(400, f"'{key}' is required (a non-empty string).")
    if len(value) > limit:
        raise RestProblem(400, f"'{key}' is longer than {limit} characters.")
    return value


def _require_role(body: dict[str, Any], role: str) -> None:
    if body.get("role") != role:
        raise RestProblem(400, f"'role' must be '{role}'.")


def _require_no_ped(body: dict[str, Any]) -> None:
    if body.get("ped", "0") not in _NO_PED:
        raise RestProblem(400, "This appliance has no PED: 'ped' must be \"0\".")


def _attempts(left: int) -> str:
    return "1 attempt left" if left == 1 else f"{left} attempts left"


def _shown(value: str) -> str:
    """An identifier from a URL, safe to echo in an error (never a secret, but bounded)."""
    return repr(value[:40])


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


# -- HTTPS ------------------------------------------------------------------------------------------


class _Cut(Exception):
    """A fault ended the request without an answer; the connection is closed."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LunaSimREST/7"
    sys_version = ""
    timeout = _IDLE_CONNECTION_TIMEOUT
    server: _TlsServer
    _drop_after = False

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        service = self.server.service
        session = f"rest-{self.server.number_of(self.connection)}"
        line = f"{self.command} {self.path.split('?', 1)[0]}"
        try:
            body = self._read_body()
        except RestProblem as problem:
            seq = service.journal.record(session=session, kind="rest", line=line, command=None)
            service.journal.finish(seq, problem.status)
            self.close_connection = True
            self._send(RestReply(problem.status, {"error": problem.message}))
            return
        shown = mask_body(body)
        routed = route(self.command, self.path)
        name = routed.name if routed else None
        seq = service.journal.record(
            session=session,
            kind="rest",
            line=f"{line} {shown}" if shown else line,
            command=name,
            mutating=name in (REST_PARTITION_INIT, REST_CO_INIT, REST_CO_PASSWORD),
            auth=name in ("rest session open", "rest session close", REST_HSM_LOGIN, REST_PARTITION_LOGIN),
        )
        if routed is None:
            status = 405 if path_known(self.path) else 404
            reply = RestReply(status, {"error": f"No endpoint {line}."})
            service.journal.finish(seq, status)
            self._send(reply)
            return
        try:
            reply = self._run(routed, RestRequest(self.command, self.path, self._headers(), body))
        except _Cut:
            self.close_connection = True
            return
        service.journal.finish(seq, reply.status)
        if self._drop_after:
            self._cut()
            return
        self._send(reply)

    def _run(self, routed: Routed, request: RestRequest) -> RestReply:
        service = self.server.service
        action = service.faults.on_rest(routed.name)
        self._drop_after = False
        if action is not None:
            if action.kind == "drop" and not action.after_execute:
                self._cut()
            if action.kind == "flood":
                self._flood()
            if action.kind == "hang":
                assert action.hang is not None
                if not action.hang.hold(self._abandoned):
                    self._cut()
            if action.kind == "fail":
                return RestReply(500, {"error": action.message})
            self._drop_after = action.kind == "drop"
        reply = service.api.handle(routed, request)
        delay = service.faults.latency_for(routed.name)
        if delay > 0 and self.server.stopping.wait(delay):
            self._cut()
        return reply

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RestProblem(411, "Chunked request bodies are not accepted; send Content-Length.")
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.strip().isdigit():
            raise RestProblem(400, "Content-Length is not a number.")
        size = int(length)
        if size > MAX_BODY:
            raise RestProblem(413, f"The request body is larger than {MAX_BODY} bytes.")
        return self.rfile.read(size)

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def _send(self, reply: RestReply) -> None:
        data = json.dumps(reply.body).encode() if reply.body is not None else b""
        self.send_response(reply.status)
        for key, value in reply.headers:
            self.send_header(key, value)
        if data:
            self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _abandoned(self) -> bool:
        if self.server.stopping.is_set():
            return True
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)  # the client sends nothing while it waits, unless it closed

    def _cut(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _Cut

    def _flood(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Connection", "close")
        self.end_headers()
        with contextlib.suppress(OSError, ValueError):
            while not self.server.stopping.is_set():
                self.wfile.write(_FLOOD_CHUNK)
        self._cut()


class _TlsServer(ThreadingHTTPServer):
    """Accepts on one thread; the TLS handshake and the requests run on the connection's thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], service: RestServer, context: ssl.SSLContext) -> None:
        self.service = service
        self.context = context
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[ssl.SSLSocket, int] = {}
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        number = self.service.count_connection()
        request.settimeout(_HANDSHAKE_TIMEOUT)
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            connection = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        with self._lock:
            self._connections[connection] = number
        try:
            _Handler(connection, client_address, self)
        except (OSError, ssl.SSLError, ValueError):
            pass  # the peer went away
        finally:
            with self._lock:
                self._connections.pop(connection, None)
            with contextlib.suppress(OSError):
                connection.close()

    def number_of(self, connection: Any) -> int:
        with self._lock:
            return self._connections.get(connection, 0)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a connection's failure is the client's business; nothing to print

    def close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                connection.close()


def _server_context(certificate: ServerCertificate) -> ssl.SSLContext:
    """A TLS 1.2+ server context; ``ssl`` loads keys from files only, so they live a moment in a
    private temporary directory."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="luna-sim-rest-") as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_path.write_bytes(certificate.cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as key_file:
            key_file.write(certificate.key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context


class RestServer:
    """The HTTPS side of one appliance: ``RestApi`` over TLS on ``host``, started and stopped with it."""

    def __init__(
        self,
        state: ApplianceModel,
        journal: Journal,
        faults: Faults,
        credentials: Callable[[str, str], bool],
        *,
        host: str,
        port: int = 0,
    ) -> None:
        self.state = state
        self.journal = journal
        self.faults = faults
        self.host = host
        self.port = port
        self.certificate = make_server_certificate(state.hostname, "ec")
        self.api = RestApi(state, credentials)
        #: TCP connections accepted so far (whether or not a TLS handshake and a request followed).
        self.connections = 0
        self._lock = threading.Lock()
        self._server: _TlsServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def fingerprint(self) -> str:
        return certificate_fingerprint(self.certificate_der)

    def count_connection(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections

    def drop_connections(self) -> None:
        """Close every open connection (as an appliance closing idle keep-alive connections does)."""
        if self._server is not None:
            self._server.close_connections()

    def start(self) -> RestServer:
        if self._server is not None:
            return self
        server = _TlsServer((self.host, self.port), self, _server_context(self.certificate))
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"sim-rest-{self.state.hostname}"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=2)
