"""CloudFormation's response endpoint, on this machine: an HTTPS server on 127.0.0.1 with a throwaway CA.

A custom resource answers CloudFormation by a ``PUT`` of a JSON document to the event's
``ResponseURL``, a pre-signed S3 URL. crhelper 2.0.12 sends that ``PUT`` itself
(``crhelper/utils.py:_send_response``): ``http.client.HTTPSConnection(host, context=ctx)`` with
``ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)``, no socket timeout, retrying forever.
It is bound as a default argument of ``CfnResource._send``, so patching the module attribute changes
nothing. Nothing to patch is needed here: :class:`ResponseReceiver` is a real HTTPS endpoint and,
for its lifetime, points ``SSL_CERT_FILE`` at its own CA, which ``create_default_context`` loads
through OpenSSL's default verify paths. crhelper does not use ``requests``, so ``REQUESTS_CA_BUNDLE``
is left alone.

Python 3.13's default context sets ``VERIFY_X509_STRICT``: the certificates below carry what strict
verification asks for (critical basic constraints and key usage, subject and authority key ids).

The request line of a ``PUT`` holds the pre-signed query string: nothing here logs it, and
:func:`display_url` is the form for messages.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import ipaddress
import json
import logging
import os
import secrets
import shutil
import socketserver
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qs, quote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

HOST: Final = "127.0.0.1"
RESPONSE_PATH: Final = "/cfn-response/"
#: CloudFormation rejects a response document larger than this ("Response object is too long").
MAX_RESPONSE_BYTES: Final = 4096
#: CloudFormation's limit on a physical resource id.
MAX_PHYSICAL_ID_BYTES: Final = 1024
#: What the receiver reads at most; a larger body is refused with 413 before it is read.
MAX_ACCEPTED_BYTES: Final = 1 << 20
SUCCESS: Final = "SUCCESS"
FAILED: Final = "FAILED"
_REQUIRED_FIELDS: Final = ("Status", "PhysicalResourceId", "StackId", "RequestId", "LogicalResourceId")
_KNOWN_FIELDS: Final = frozenset({*_REQUIRED_FIELDS, "Reason", "NoEcho", "Data"})
_SOCKET_TIMEOUT: Final = 10.0
#: What :meth:`ResponseReceiver.misbehave` can do to a reply.
REPLY_FAULTS: Final = ("trickle", "cut")


class NoResponse(TimeoutError):
    """No (valid) answer reached the receiver for an event within the wait.

    The message says what is known (the handler returned, raised, or is still running; responses
    that were refused; TLS handshakes that failed) and never contains the ResponseURL's query.
    ``handler_state`` is ``"running"``, ``"returned"``, ``"raised"`` or ``""`` (not known).
    """

    def __init__(self, message: str, *, request_id: str = "", handler_state: str = "") -> None:
        super().__init__(message)
        self.request_id = request_id
        self.handler_state = handler_state


def display_url(url: str) -> str:
    """``url`` without its query string (which stands for a pre-signed URL's credentials)."""
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc}{split.path}" + ("?…" if split.query else "")


# --------------------------------------------------------------------------------------------------
# Throwaway CA


@dataclass(frozen=True)
class ThrowawayCA:
    """A CA certificate and a server certificate it signed for 127.0.0.1 and localhost (PEM)."""

    ca_cert_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes = field(repr=False)


def make_throwaway_ca(*, valid_for: dt.timedelta = dt.timedelta(days=1)) -> ThrowawayCA:
    """A fresh CA (its key is discarded once the server certificate is signed) and a server certificate."""
    now = dt.datetime.now(dt.UTC)
    not_before = now - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "luna-ha local CloudFormation"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"luna-ha throwaway CA {secrets.token_hex(4)}"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(now + valid_for)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ThrowawayCA(
        ca_cert_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        server_cert_pem=server_cert.public_bytes(serialization.Encoding.PEM),
        server_key_pem=server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


# --------------------------------------------------------------------------------------------------
# What the receiver records


@dataclass(frozen=True)
class ReceivedResponse:
    """One accepted response document, as it arrived.

    ``problems`` lists what CloudFormation itself would refuse although the document is well formed
    (too long, an empty or oversized PhysicalResourceId, ids that do not match the event the URL was
    issued for). ``body`` and ``data`` stay out of ``repr`` (``NoEcho`` data is meant to be hidden).
    """

    url_id: str
    """The ``<uuid>`` of the ``/cfn-response/<uuid>`` path the document was PUT to."""
    status: str
    reason: str
    physical_resource_id: str
    stack_id: str
    request_id: str
    logical_resource_id: str
    no_echo: bool
    body_size: int
    received_at: float
    """``time.monotonic()`` when the document was accepted."""
    problems: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    body: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class RejectedResponse:
    """A ``PUT`` the receiver refused (wrong path or signature, missing length, not a response document)."""

    url_id: str
    http_status: int
    why: str
    body_size: int


@dataclass(frozen=True)
class _Slot:
    url_id: str
    signature: str = field(repr=False)
    request_id: str
    stack_id: str
    logical_resource_id: str


# --------------------------------------------------------------------------------------------------
# The receiver


class ResponseReceiver:
    """An HTTPS endpoint on 127.0.0.1 (port 0) that takes CloudFormation responses.

    Use it as a context manager: on entry it makes a throwaway CA, starts serving, writes a CA
    bundle (the throwaway CA, then the CA file trusted until then) to a temporary file and (with
    ``set_environment``) points ``SSL_CERT_FILE`` at it (``keep_default_cas=False`` leaves the
    public CAs out of the bundle, which spares each TLS client ~40 ms of parsing them);
    on exit it stops, restores ``SSL_CERT_FILE`` as it was and deletes the file. Receivers are meant
    to nest, if at all, last in first out (the environment is process-wide).

    :meth:`new_response_url` issues a unique pre-signed-looking URL for an event; a ``PUT`` to it
    with a well-formed response document is recorded and answered ``200`` (as S3 would). Responses
    are counted per ``RequestId`` (:meth:`count`) so that tests can assert one answer per event.

    :meth:`misbehave` makes it a hostile endpoint: every response is still read and recorded, but
    the reply is trickled one byte at a time (``trickle``) or cut off mid-status-line (``cut``).
    """

    def __init__(self, *, set_environment: bool = True, keep_default_cas: bool = True) -> None:
        self._set_environment = set_environment
        self._keep_default_cas = keep_default_cas
        self._cond = threading.Condition()
        self._slots: dict[str, _Slot] = {}
        self._responses: list[ReceivedResponse] = []
        self._rejected: list[RejectedResponse] = []
        self._handshake_failures = 0
        self._reply_fault: tuple[str, float] | None = None
        self._server: _HTTPSServer | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: Path | None = None
        self._ca_file: Path | None = None
        self._saved_env: str | None = None
        self._env_applied = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> ResponseReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> ResponseReceiver:
        if self._server is not None:
            raise RuntimeError("the receiver is already running")
        ca = make_throwaway_ca()
        tmpdir = Path(tempfile.mkdtemp(prefix="luna-ha-cfn-"))  # mode 0700
        try:
            ca_file = tmpdir / "ca-bundle.pem"
            ca_file.write_bytes(
                ca.ca_cert_pem + (_default_cafile_contents() if self._keep_default_cas else b"")
            )
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            cert_file, key_file = tmpdir / "server.pem", tmpdir / "server.key"
            cert_file.write_bytes(ca.server_cert_pem)
            key_file.touch(mode=0o600)
            key_file.write_bytes(ca.server_key_pem)
            try:
                context.load_cert_chain(cert_file, key_file)
            finally:
                key_file.unlink()
                cert_file.unlink()
            server = _HTTPSServer(self, context)
        except BaseException:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        self._tmpdir, self._ca_file, self._server = tmpdir, ca_file, server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="cfn-receiver", daemon=True
        )
        self._thread.start()
        if self._set_environment:
            self._saved_env = os.environ.get("SSL_CERT_FILE")
            os.environ["SSL_CERT_FILE"] = str(ca_file)
            self._env_applied = True
        logger.debug("CloudFormation response receiver on https://%s:%d", HOST, self.port)
        return self

    def close(self) -> None:
        """Stop serving, restore ``SSL_CERT_FILE`` and delete the CA file. Safe to call twice.

        A sender still retrying (crhelper never gives up) keeps failing to connect afterwards.
        """
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._env_applied:
            if self._saved_env is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = self._saved_env
            self._env_applied = False
            self._saved_env = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        with self._cond:
            self._cond.notify_all()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the receiver is not running")
        return int(self._server.server_address[1])

    @property
    def ca_file(self) -> Path:
        """The CA bundle (PEM) that verifies this receiver; deleted by :meth:`close`."""
        if self._ca_file is None or self._tmpdir is None:
            raise RuntimeError("the receiver is not running")
        return self._ca_file

    # -- faults ------------------------------------------------------------------------------------

    def misbehave(self, fault: str | None, *, interval: float = 5.0) -> None:
        """How the reply to each later accepted ``PUT`` goes wrong (``None``: it does not).

        ``trickle``: the ``200`` reply is written one byte every ``interval`` seconds (until the
        sender hangs up); ``cut``: only ``HTT`` of the status line is written, then the connection
        is closed. Either way the response itself was read and counts as received.
        """
        if fault not in (None, *REPLY_FAULTS):
            raise ValueError(f"unknown reply fault {fault!r} (one of {', '.join(REPLY_FAULTS)})")
        with self._cond:
            self._reply_fault = None if fault is None else (fault, interval)

    def _reply_fault_now(self) -> tuple[str, float] | None:
        with self._cond:
            return self._reply_fault

    # -- URLs --------------------------------------------------------------------------------------

    def new_response_url(
        self, *, request_id: str, stack_id: str, logical_resource_id: str, region: str = "us-east-1"
    ) -> str:
        """A unique pre-signed-looking URL that accepts the response to one event.

        The signature is random and checked: a ``PUT`` with another one is refused with ``403``.
        """
        url_id = str(uuid.uuid4())
        signature = secrets.token_hex(32)
        now = dt.datetime.now(dt.UTC)
        credential = quote(f"AKIALOCALCFNRESPONSE/{now:%Y%m%d}/{region}/s3/aws4_request", safe="")
        query = (
            f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}&X-Amz-Date={now:%Y%m%dT%H%M%SZ}"
            f"&X-Amz-Expires=7200&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}"
        )
        with self._cond:
            self._slots[url_id] = _Slot(url_id, signature, request_id, stack_id, logical_resource_id)
        return f"https://{HOST}:{self.port}{RESPONSE_PATH}{url_id}?{query}"

    @staticmethod
    def url_id(url: str) -> str:
        """The ``<uuid>`` of a URL made by :meth:`new_response_url`."""
        path = urlsplit(url).path
        if not path.startswith(RESPONSE_PATH) or len(path) == len(RESPONSE_PATH):
            raise ValueError(f"not a response URL of this receiver: {display_url(url)}")
        return path[len(RESPONSE_PATH) :]

    # -- what arrived ------------------------------------------------------------------------------

    def responses(self, request_id: str | None = None) -> list[ReceivedResponse]:
        """Accepted responses in arrival order, all or those whose body carries ``request_id``."""
        with self._cond:
            return [r for r in self._responses if request_id is None or r.request_id == request_id]

    def responses_to_url(self, url_id: str) -> list[ReceivedResponse]:
        with self._cond:
            return [r for r in self._responses if r.url_id == url_id]

    @property
    def rejected(self) -> list[RejectedResponse]:
        with self._cond:
            return list(self._rejected)

    @property
    def handshake_failures(self) -> int:
        """TLS handshakes that failed (for instance a client that does not trust the throwaway CA)."""
        with self._cond:
            return self._handshake_failures

    def count(self, request_id: str) -> int:
        """How many accepted responses carried ``request_id``."""
        with self._cond:
            return sum(1 for r in self._responses if r.request_id == request_id)

    def counts(self) -> dict[str, int]:
        """Accepted responses per ``RequestId``."""
        with self._cond:
            return dict(Counter(r.request_id for r in self._responses))

    def wait(self, request_id: str, *, timeout: float, nth: int = 1) -> ReceivedResponse:
        """The ``nth`` accepted response carrying ``request_id``, waiting up to ``timeout`` seconds.

        Raises :class:`NoResponse` when it has not arrived in time.
        """
        found = self._wait(lambda r: r.request_id == request_id, nth, time.monotonic() + timeout)
        if found is None:
            raise NoResponse(
                f"no response #{nth} for RequestId {request_id} within {timeout:g} s"
                + self.diagnostics(request_id=request_id),
                request_id=request_id,
            )
        return found

    def wait_url(self, url_id: str, *, nth: int, timeout: float) -> ReceivedResponse | None:
        """The ``nth`` accepted response PUT to ``url_id``, or ``None`` after ``timeout`` seconds."""
        return self._wait(lambda r: r.url_id == url_id, nth, time.monotonic() + timeout)

    def diagnostics(self, *, url_id: str | None = None, request_id: str | None = None) -> str:
        """A suffix for error messages: refused responses and failed TLS handshakes (no URL query)."""
        with self._cond:
            slot_ids = {url_id} if url_id else set()
            if request_id:
                slot_ids |= {s.url_id for s in self._slots.values() if s.request_id == request_id}
            rejected = [r for r in self._rejected if r.url_id in slot_ids]
            failures = self._handshake_failures
        parts = []
        if rejected:
            parts.append(
                f"{len(rejected)} response(s) refused ("
                + "; ".join(f"{r.http_status}: {r.why}" for r in rejected[:3])
                + ")"
            )
        if failures:
            parts.append(
                f"{failures} TLS handshake(s) failed on the receiver (does the sender trust SSL_CERT_FILE?)"
            )
        return "; " + "; ".join(parts) if parts else ""

    def _wait(
        self, match: Callable[[ReceivedResponse], bool], nth: int, deadline: float
    ) -> ReceivedResponse | None:
        with self._cond:
            while True:
                found = [r for r in self._responses if match(r)]
                if len(found) >= nth:
                    return found[nth - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._server is None:
                    return None
                self._cond.wait(remaining)

    # -- request handling (server threads) ---------------------------------------------------------

    def _note_handshake_failure(self) -> None:
        with self._cond:
            self._handshake_failures += 1

    def _reject(self, url_id: str, status: int, why: str, size: int) -> tuple[int, str]:
        with self._cond:
            self._rejected.append(RejectedResponse(url_id, status, why, size))
        logger.debug("refused a response PUT (%d): %s", status, why)
        return status, why

    def _handle_put(self, target: str, length: str | None, read: Callable[[int], bytes]) -> tuple[int, str]:
        split = urlsplit(target)
        url_id = split.path[len(RESPONSE_PATH) :] if split.path.startswith(RESPONSE_PATH) else ""
        if length is None or not length.isdigit():
            return self._reject(url_id, 411, "Content-Length is missing", 0)
        size = int(length)
        if size > MAX_ACCEPTED_BYTES:
            return self._reject(url_id, 413, f"body of {size} bytes", size)
        raw: bytes = read(size)  # read before any refusal, so the sender gets an answer, not a reset
        with self._cond:
            slot = self._slots.get(url_id)
        if slot is None:
            return self._reject(url_id, 403, "no such pre-signed URL", len(raw))
        signature = parse_qs(split.query).get("X-Amz-Signature", [""])[0]
        if not secrets.compare_digest(signature, slot.signature):
            return self._reject(url_id, 403, "signature does not match", len(raw))
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            return self._reject(url_id, 400, "body is not JSON", len(raw))
        why = _malformed(body)
        if why:
            return self._reject(url_id, 400, why, len(raw))
        received = ReceivedResponse(
            url_id=url_id,
            status=body["Status"],
            reason=body.get("Reason", ""),
            physical_resource_id=body["PhysicalResourceId"],
            stack_id=body["StackId"],
            request_id=body["RequestId"],
            logical_resource_id=body["LogicalResourceId"],
            no_echo=_no_echo(body.get("NoEcho", False)),
            body_size=len(raw),
            received_at=time.monotonic(),
            problems=_problems(body, len(raw), slot),
            data=dict(body.get("Data") or {}),
            body=body,
        )
        with self._cond:
            self._responses.append(received)
            self._cond.notify_all()
        logger.debug(
            "response %s for %s (RequestId %s, %d bytes)",
            received.status,
            received.logical_resource_id,
            received.request_id,
            received.body_size,
        )
        return 200, "OK"


def _default_cafile_contents() -> bytes:
    """The CA file OpenSSL loads now (``SSL_CERT_FILE`` or the system default), to keep in the bundle.

    Replacing ``SSL_CERT_FILE`` with the throwaway CA alone would make every other HTTPS client of
    the process that uses the default verify paths distrust the public CAs for the receiver's
    lifetime; the bundle is the throwaway CA followed by what was trusted before.
    """
    cafile = ssl.get_default_verify_paths().cafile
    if not cafile:
        return b""
    try:
        contents = Path(cafile).read_bytes()
    except OSError:
        return b""
    return b"\n" + contents if b"-----BEGIN CERTIFICATE-----" in contents else b""


def _malformed(body: object) -> str:
    """Why ``body`` is not a CloudFormation response document ("" when it is one)."""
    if not isinstance(body, dict):
        return "body is not a JSON object"
    for name in _REQUIRED_FIELDS:
        if not isinstance(body.get(name), str):
            return f"{name} is missing or not a string"
    if body["Status"] not in (SUCCESS, FAILED):
        return f"Status must be SUCCESS or FAILED, not {body['Status'][:20]!r}"
    if not isinstance(body.get("Reason", ""), str):
        return "Reason is not a string"
    no_echo = body.get("NoEcho", False)
    if not isinstance(no_echo, bool) and no_echo not in ("true", "false"):
        return "NoEcho is not a boolean"
    if not isinstance(body.get("Data") or {}, dict):
        return "Data is not a JSON object"
    return ""


def _no_echo(value: object) -> bool:
    return value is True or value == "true"


def _problems(body: dict[str, Any], size: int, slot: _Slot) -> tuple[str, ...]:
    """What CloudFormation would refuse in a well-formed response document."""
    found = []
    if size > MAX_RESPONSE_BYTES:
        found.append(f"response is {size} bytes, over CloudFormation's {MAX_RESPONSE_BYTES} (too long)")
    physical_id: str = body["PhysicalResourceId"]
    if not physical_id:
        found.append("PhysicalResourceId is empty (CloudFormation: Invalid PhysicalResourceId)")
    elif len(physical_id.encode()) > MAX_PHYSICAL_ID_BYTES:
        found.append(f"PhysicalResourceId is over {MAX_PHYSICAL_ID_BYTES} bytes")
    for name, expected in (
        ("RequestId", slot.request_id),
        ("StackId", slot.stack_id),
        ("LogicalResourceId", slot.logical_resource_id),
    ):
        if body[name] != expected:
            found.append(f"{name} {body[name][:80]!r} is not the one of the event ({expected[:80]!r})")
    unknown = sorted(set(body) - _KNOWN_FIELDS)
    if unknown:
        found.append("unknown field(s): " + ", ".join(u[:40] for u in unknown[:5]))
    return tuple(found)


# --------------------------------------------------------------------------------------------------
# HTTP plumbing


class _HTTPSServer(http.server.ThreadingHTTPServer):
    """TLS per connection, in the connection's own thread, so a stalled handshake blocks nobody."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, receiver: ResponseReceiver, context: ssl.SSLContext) -> None:
        self.receiver = receiver
        self.ssl_context = context
        super().__init__((HOST, 0), _Handler)

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s ``socket.getfqdn`` (a reverse DNS lookup that can stall)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = HOST, int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_SOCKET_TIMEOUT)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.receiver._note_handshake_failure()
            logger.debug("TLS handshake failed: %s", type(exc).__name__)
            return
        try:
            _Handler(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("error serving a response PUT", exc_info=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPSServer
    server_version = "AmazonS3"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the request line carries the pre-signed query string."""

    def do_PUT(self) -> None:
        status, why = self.server.receiver._handle_put(
            self.path, self.headers.get("Content-Length"), self.rfile.read
        )
        fault = self.server.receiver._reply_fault_now()
        if status == 200 and fault is not None:
            self._misbehave(*fault)
            return
        self._answer(status, why)

    def _misbehave(self, fault: str, interval: float) -> None:
        self.close_connection = True
        reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        try:
            if fault == "cut":
                self.wfile.write(reply[:3])
                return
            for index in range(len(reply)):
                self.wfile.write(reply[index : index + 1])
                self.wfile.flush()
                time.sleep(interval)
        except OSError:
            return  # the sender hung up

    def do_GET(self) -> None:
        self._answer(405, "method not allowed")

    do_POST = do_DELETE = do_HEAD = do_GET

    def _answer(self, status: int, why: str) -> None:
        body = b"" if status == 200 else json.dumps({"error": why}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if body:
            self.send_header("Content-Type", "application/json")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
