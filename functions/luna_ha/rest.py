"""One session with the REST API of a Luna Network HSM 7 appliance (HTTPS, standard library only).

    with LunaRest("hsm-a", "10.0.0.5", 8443, fingerprint=pin, deadline=deadline) as rest:
        rest.open_session(username, password)
        co = rest.co_role(hsm_id, partition_id)
        if co.pin_to_be_changed:
            rest.change_co_password(hsm_id, partition_id, temporary, final)

Trust: the appliance's web server certificate is self-signed, so there is no CA to verify it
against. The pin is the trust, as the host key is for SSH: every connection's certificate must
have the pinned ``SHA256:`` fingerprint (unpadded base64 of the SHA-256 of its DER, the textual
form of SSH host key fingerprints), checked right after the TLS handshake and before a single byte
of HTTP (or a credential) is sent. A mismatch raises ``HostKeyMismatch`` naming
``RestCertificateFingerprint``.

Bounds: every request must finish within ``timeout`` seconds, capped by the run's ``Deadline``
(``CommandTimeout``); an answer may be at most ``MAX_RESPONSE`` bytes (``OutputTooLarge``). An error
status raises ``RestRequestFailed`` with the status and the appliance's ``error`` text; a rejected
login at ``open_session`` raises ``AuthenticationFailed``. Every error names the appliance and the
step and never carries a password: values this client sent are cut out of the appliance's text
before it is shown. Nothing is retried: a request that may have run (the connection closed before
its answer) raises ``ConnectionLost`` and the caller re-reads the state.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import select
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

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
from luna_ha.spec import FINGERPRINT_RE, sha256_fingerprint

log = logging.getLogger(__name__)

#: The appliance's REST port (its `webserver` service).
REST_PORT = 8443
#: What one answer may be; the largest (a partition list of 100 partitions) is ~10 KiB.
MAX_RESPONSE = 256 * 1024
#: How long one request may take, connection included (also capped by the run's deadline).
REQUEST_TIMEOUT = 10.0
CONTENT_TYPE = "application/vnd.safenetinc.lunasa+json;version="
COOKIE = "SESSIONID"
HSMS = "/api/lunasa/hsms"
#: How much of the appliance's error text a message shows.
MAX_ERROR_TEXT = 200
_CHUNK = 65536


def certificate_fingerprint(der: bytes) -> str:
    """``SHA256:`` + unpadded base64 of the SHA-256 of a certificate's DER encoding."""
    return sha256_fingerprint(der)


@dataclass(frozen=True)
class RestHsm:
    id: str
    label: str
    serial: str
    so_logins_left: int
    zeroized: bool


@dataclass(frozen=True)
class RestPartition:
    id: str
    name: str
    label: str
    serial: str
    #: ``zeroized`` (created, never initialized) or ``initialized``, as the appliance says.
    state: str
    version: int

    @property
    def initialized(self) -> bool:
        """False only for ``zeroized``: a state this client does not know never reads as "free to
        initialize" (re-initializing erases a partition)."""
        return self.state != "zeroized"


@dataclass(frozen=True)
class RestRole:
    """A partition role as the appliance reports it (the Crypto Officer)."""

    initialized: bool
    pin_to_be_changed: bool
    locked_out: bool
    attempts_left: int


class _PinMismatch(Exception):
    def __init__(self, presented: str) -> None:
        super().__init__(presented)
        self.presented = presented


class _PinnedConnection(http.client.HTTPSConnection):
    """An HTTPS connection that checks the peer certificate's fingerprint on every (re)connect,
    before anything is sent; no CA or host name verification (the pin replaces both)."""

    def __init__(self, host: str, port: int, pin: str, timeout: float) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        super().__init__(host, port, timeout=timeout, context=context)
        self.pin = pin

    def connect(self) -> None:
        super().connect()
        assert isinstance(self.sock, ssl.SSLSocket)
        der = self.sock.getpeercert(binary_form=True)
        presented = certificate_fingerprint(der) if der else "no certificate"
        if presented != self.pin:
            self.close()
            raise _PinMismatch(presented)


class LunaRest:
    """One REST session with one appliance; a context manager that closes the session on exit.

    ``label`` names the appliance in every message (the Host as the user wrote it); ``fingerprint``
    is the pinned ``SHA256:`` fingerprint of its REST certificate.
    """

    def __init__(
        self,
        label: str,
        host: str,
        port: int = REST_PORT,
        *,
        fingerprint: str,
        deadline: Deadline | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if FINGERPRINT_RE.fullmatch(fingerprint) is None:
            raise ValueError("a REST certificate pin is 'SHA256:' and 43 base64 characters without padding")
        self.label = label
        self.host = host
        self.port = port
        self.fingerprint = fingerprint
        self.deadline = deadline or Deadline.never()
        self.timeout = timeout
        self._connection: _PinnedConnection | None = None
        self._token: str | None = None

    def __repr__(self) -> str:
        state = "open" if self._token else "no session"
        return f"LunaRest({self.label!r}, {self.host}:{self.port}, {state})"

    def __enter__(self) -> LunaRest:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def has_session(self) -> bool:
        return self._token is not None

    # -- session ------------------------------------------------------------------------------------

    def open_session(self, username: str, password: str, *, step: str = "REST login") -> None:
        """``POST /auth/session`` with Basic authentication (the appliance user, as for SSH)."""
        credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
        try:
            answer = self._exchange(
                "POST",
                "/auth/session",
                step,
                {},
                secrets=(password, credentials),
                extra={"Authorization": f"Basic {credentials}"},
            )
        except RestRequestFailed as failed:
            if failed.status != 401:
                raise
            raise AuthenticationFailed(
                self.label,
                step,
                f"the appliance's REST API rejected the credentials of user '{username}' "
                f"(HTTP 401: {failed.error or 'no reason given'})",
            ) from None
        token = _cookie_value(answer.cookies, COOKIE)
        if not token:
            raise ApplianceError(
                self.label, step, f"the appliance opened no REST session (no {COOKIE} cookie in its answer)"
            )
        self._token = token

    def close(self, *, step: str = "REST logout") -> None:
        """``DELETE /auth/session`` (best effort: the session dies by itself after 10 idle
        minutes), then close the connection."""
        if self._token is not None and not self.deadline.expired:
            try:
                self._exchange("DELETE", "/auth/session", step)
            except ApplianceError as problem:
                log.debug("appliance %s: closing the REST session failed: %s", self.label, problem)
        self._token = None
        if self._connection is not None:
            with contextlib.suppress(Exception):  # best effort on the way out
                self._connection.close()
        self._connection = None

    # -- HSM ------------------------------------------------------------------------------------------

    def hsms(self, *, step: str = "REST HSMs") -> list[str]:
        """The ids (serial numbers) of the appliance's HSMs."""
        document = self._get(HSMS, step)
        return [
            _str(item, "id", self._where(step, HSMS))
            for item in _list(document, "hsms", self._where(step, HSMS))
        ]

    def hsm(self, hsm_id: str, *, step: str = "REST HSM") -> RestHsm:
        path = _hsm_path(hsm_id)
        doc, where = self._get(path, step), self._where(step, path)
        return RestHsm(
            id=_str(doc, "id", where),
            label=_str(doc, "label", where),
            serial=_str(doc, "serialNumber", where),
            so_logins_left=_int(doc, "soLoginsLeft", where),
            zeroized=_bool(doc, "zeroized", where),
        )

    def hsm_login(self, hsm_id: str, password: str, *, step: str = "REST HSM login") -> None:
        """Log in as HSM SO for this session. A wrong password costs one of the HSM's SO attempts
        (the last one zeroizes it): callers check ``hsm(...).so_logins_left`` first."""
        body = {"ped": "0", "password": password, "role": "so"}
        self._exchange("POST", _hsm_path(hsm_id) + "/login", step, body, secrets=(password,))

    # -- partitions -----------------------------------------------------------------------------------

    def partitions(self, hsm_id: str, *, step: str = "REST partitions") -> list[str]:
        """The ids (serial numbers) of the HSM's partitions."""
        path = _hsm_path(hsm_id) + "/partitions"
        doc, where = self._get(path, step), self._where(step, path)
        return [_str(item, "id", where) for item in _list(doc, "partitions", where)]

    def partition(self, hsm_id: str, partition_id: str, *, step: str = "REST partition") -> RestPartition:
        path = _partition_path(hsm_id, partition_id)
        doc, where = self._get(path, step), self._where(step, path)
        return RestPartition(
            id=_str(doc, "id", where),
            name=_str(doc, "name", where),
            label=_str(doc, "label", where),
            serial=_str(doc, "serialNumber", where),
            state=_str(doc, "state", where),
            version=_int(doc, "version", where),
        )

    def init_partition(
        self,
        hsm_id: str,
        partition_id: str,
        label: str,
        so_password: str,
        domain: str,
        *,
        step: str = "REST partition init",
    ) -> None:
        """Initialize a partition: label, Partition SO password, cloning domain. Needs the HSM SO
        logged in in this session. On an initialized partition this ERASES it: check first."""
        body = {"label": label, "password": so_password, "domain": domain, "defaultDomain": False, "ped": "0"}
        self._exchange(
            "PUT", _partition_path(hsm_id, partition_id), step, body, secrets=(so_password, domain)
        )

    def partition_so_login(
        self, hsm_id: str, partition_id: str, so_password: str, *, step: str = "REST partition SO login"
    ) -> None:
        """Log in as the partition's SO for this session (a wrong password costs one attempt)."""
        body = {"role": "so", "password": so_password, "ped": "0"}
        path = _partition_path(hsm_id, partition_id) + "/login"
        self._exchange("POST", path, step, body, secrets=(so_password,))

    # -- Crypto Officer -------------------------------------------------------------------------------

    def co_role(self, hsm_id: str, partition_id: str, *, step: str = "REST Crypto Officer") -> RestRole:
        path = _co_path(hsm_id, partition_id)
        doc, where = self._get(path, step), self._where(step, path)
        return RestRole(
            initialized=_bool(doc, "initialized", where),
            pin_to_be_changed=_bool(doc, "pinToBeChanged", where),
            locked_out=_bool(doc, "lockedOut", where),
            attempts_left=_int(doc, "loginAttemptsLeft", where),
        )

    def init_co(self, hsm_id: str, partition_id: str, password: str, *, step: str = "REST CO init") -> None:
        """Give the Crypto Officer its (first) password; needs the Partition SO logged in in this
        session. Under policy 21 the password must then be changed (``change_co_password``)."""
        body = {"password": password, "defaultChallenge": False, "ped": "0"}
        self._exchange("PUT", _co_path(hsm_id, partition_id), step, body, secrets=(password,))

    def change_co_password(
        self, hsm_id: str, partition_id: str, old: str, new: str, *, step: str = "REST CO password"
    ) -> None:
        """The Crypto Officer's own password change (a wrong ``old`` costs one CO attempt)."""
        body = {"oldPassword": old, "newPassword": new}
        self._exchange("PATCH", _co_path(hsm_id, partition_id), step, body, secrets=(old, new))

    # -- HTTP -----------------------------------------------------------------------------------------

    def _where(self, step: str, path: str) -> tuple[str, str, str]:
        return (self.label, step, f"GET {path}")

    def _get(self, path: str, step: str) -> dict[str, Any]:
        answer = self._exchange("GET", path, step)
        try:
            document = json.loads(answer.body)
        except (ValueError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict):
            raise ApplianceError(self.label, step, f"the answer to GET {path} is not a JSON object")
        return document

    def _exchange(
        self,
        method: str,
        path: str,
        step: str,
        body: dict[str, Any] | None = None,
        *,
        secrets: Iterable[str] = (),
        extra: dict[str, str] | None = None,
    ) -> _Answer:
        """Send one request and read its answer within the time and size bounds; 2xx or raise."""
        opening = path == "/auth/session" and method == "POST"
        if not opening and self._token is None:
            raise ApplianceError(self.label, step, "no REST session is open (open_session first)")
        limit = self.deadline.cap(self.timeout)
        if limit <= 0:
            raise CommandTimeout(
                self.label, step, f"the run's deadline has passed; {method} {path} was not sent"
            )
        ends = time.monotonic() + limit
        sock = self._connect(step, limit)
        headers = {"Content-Type": CONTENT_TYPE, "Accept": "application/json", **(extra or {})}
        if not opening:
            headers["Cookie"] = f"{COOKIE}={self._token}"
        data = json.dumps(body).encode() if body is not None else None
        connection = self._connection
        assert connection is not None
        try:
            connection.request(method, path, body=data, headers=headers)
            sock.settimeout(max(0.001, ends - time.monotonic()))
            response = connection.getresponse()
            raw = self._read(response, sock, ends, step, f"{method} {path}")
        except TimeoutError:
            self._drop_connection()
            raise CommandTimeout(
                self.label, step, f"no complete answer to {method} {path} within {limit:.0f} s"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise ConnectionLost(
                self.label,
                step,
                f"the connection failed before the whole answer to {method} {path} arrived "
                f"({type(exc).__name__}); whether the request took effect is unknown",
            ) from None
        status = response.status
        log.debug("appliance %s: REST %s %s -> HTTP %d", self.label, method, path, status)
        if not 200 <= status < 300:
            error = _error_text(raw, secrets)
            shown = f": {error}" if error else ""
            raise RestRequestFailed(
                self.label, step, f"{method} {path} answered HTTP {status}{shown}", status=status, error=error
            )
        return _Answer(status, raw, tuple(response.headers.get_all("Set-Cookie") or ()))

    def _connect(self, step: str, timeout: float) -> socket.socket:
        """The open connection, or a new one whose certificate matches the pin."""
        connection = self._connection
        if connection is not None and connection.sock is not None and _dropped(connection.sock):
            self._drop_connection()
            connection = None
        if connection is None:
            connection = self._connection = _PinnedConnection(self.host, self.port, self.fingerprint, timeout)
        if connection.sock is None:
            connection.timeout = timeout
            try:
                connection.connect()
            except _PinMismatch as mismatch:
                self._drop_connection()
                raise HostKeyMismatch(
                    self.label,
                    step,
                    f"the REST certificate of {self.host}:{self.port} ({mismatch.presented}) does not "
                    "match the pinned RestCertificateFingerprint; nothing was sent. Check "
                    "RestCertificateFingerprint.",
                ) from None
            except TimeoutError:
                self._drop_connection()
                raise CommandTimeout(
                    self.label, step, f"no TLS connection to {self.host}:{self.port} within {timeout:.0f} s"
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
                raise ConnectFailed(
                    self.label, step, f"cannot reach the REST API at {self.host}:{self.port} ({reason})"
                ) from None
        assert connection.sock is not None
        return connection.sock

    def _read(
        self, response: http.client.HTTPResponse, sock: socket.socket, ends: float, step: str, what: str
    ) -> bytes:
        length = response.getheader("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > MAX_RESPONSE:
            self._drop_connection()
            raise OutputTooLarge(
                self.label,
                step,
                f"the answer to {what} announces {int(length)} bytes (at most {MAX_RESPONSE})",
            )
        parts: list[bytes] = []
        size = 0
        while True:
            remaining = ends - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = response.read1(_CHUNK)
            if not chunk:
                return b"".join(parts)
            size += len(chunk)
            if size > MAX_RESPONSE:
                self._drop_connection()
                raise OutputTooLarge(
                    self.label, step, f"the answer to {what} is larger than {MAX_RESPONSE} bytes"
                )
            parts.append(chunk)

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # best effort: it is broken already
                self._connection.close()
        self._connection = None


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    cookies: tuple[str, ...]


def _dropped(sock: socket.socket) -> bool:
    """True when an idle connection was closed by the appliance (readable while no answer is due)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _cookie_value(set_cookies: Iterable[str], name: str) -> str | None:
    for header in set_cookies:
        key, sep, value = header.split(";", 1)[0].strip().partition("=")
        if sep and key == name and value:
            return value
    return None


def _error_text(raw: bytes, secrets: Iterable[str]) -> str:
    """The appliance's ``error`` text, printable, bounded, and without any value this client sent."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        document = None
    text = document.get("error") if isinstance(document, dict) else None
    if not isinstance(text, str):
        return ""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "********")
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."


def _segment(value: str) -> str:
    return quote(value, safe="")


def _hsm_path(hsm_id: str) -> str:
    return f"{HSMS}/{_segment(hsm_id)}"


def _partition_path(hsm_id: str, partition_id: str) -> str:
    return f"{_hsm_path(hsm_id)}/partitions/{_segment(partition_id)}"


def _co_path(hsm_id: str, partition_id: str) -> str:
    return f"{_partition_path(hsm_id, partition_id)}/roles/co"


# -- reading answers ------------------------------------------------------------------------------------

Where = tuple[str, str, str]  # label, step, request


def _field(document: Any, key: str, kind: type, where: Where) -> Any:
    value = document.get(key) if isinstance(document, dict) else None
    # bool is an int in Python: an int field must not accept true/false, nor a bool field 0/1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        label, step, request = where
        raise ApplianceError(label, step, f"the answer to {request} has no {kind.__name__} '{key}'")
    return value


def _str(document: Any, key: str, where: Where) -> str:
    value: str = _field(document, key, str, where)
    return value


def _int(document: Any, key: str, where: Where) -> int:
    value: int = _field(document, key, int, where)
    return value


def _bool(document: Any, key: str, where: Where) -> bool:
    value: bool = _field(document, key, bool, where)
    return value


def _list(document: Any, key: str, where: Where) -> list[Any]:
    value: list[Any] = _field(document, key, list, where)
    return value
