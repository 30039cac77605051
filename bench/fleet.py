"""Simulated appliances and local AWS for the benchmarks, in this process or in child processes.

The simulator is pure Python (a paramiko server and lunash's state machine per appliance) and moto
is too. Run in the engine's own process, their CPU time and their hold on the GIL count against
the engine, which real appliances and real AWS never do. So the benchmarks have two backends:

* ``ChildBackend`` (the default): the appliances run in ``processes`` child processes (appliance i
  in child i mod processes), and moto's server in the first of them, reached over loopback through
  ``AWS_ENDPOINT_URL``, as the demo reaches it. The engine's process then does only the engine's
  own work (SSH client sessions, boto3 calls, certificates), as in Lambda.
* ``InProcessBackend``: everything in this process (``mock_aws`` and the simulator's threads), as
  the functional tests run it.

Both start fresh appliances for each measured run (``start``), seed their manager secrets, and
report what each appliance received (its journal and the SSH connections it accepted).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import boto3

REGION = "us-east-1"
ADMIN_SECRET = "luna/admin"  # noqa: S105 - a secret's name
PARTITION_SECRET = "luna/partition"  # noqa: S105 - a secret's name
_AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
)


@dataclass(frozen=True)
class ApplianceInfo:
    """What a group declaration and the manager secret need to reach one simulated appliance
    (the attributes ``tests.functional.lab.Lab`` reads from a ``SimulatedAppliance``)."""

    hostname: str
    host: str
    port: int
    host_key_line: str
    username: str
    password: str = field(repr=False)
    #: A Luna 7 appliance's REST service (None: a 5.x/6.x appliance, which serves none).
    rest_port: int | None = None
    rest_certificate_fingerprint: str | None = None

    @property
    def rest_service(self) -> int | None:
        """Not None when the appliance serves REST (what ``luna_ha_lab.localaws.rest_properties``
        asks a ``SimulatedAppliance``)."""
        return self.rest_port


@dataclass(frozen=True)
class Entry:
    """One journal entry, without its text."""

    session: str
    kind: str
    command: str | None
    mutating: bool
    auth: bool


@dataclass(frozen=True)
class ApplianceStats:
    hostname: str
    connections: int
    entries: tuple[Entry, ...]


# -- the appliances (in whichever process runs them) ---------------------------------------------


def _start_appliances(indices: Sequence[int], options: dict[str, Any]) -> list[Any]:
    """Appliance i: hostname luna-sim-<i+1>, on 127.0.0.<i+1>, HSM serial 500001+i."""
    from luna_ha.sim.server import SimulatedAppliance, stop_appliances

    def make(i: int) -> SimulatedAppliance:
        return SimulatedAppliance(
            hostname=f"luna-sim-{i + 1:02d}", host=f"127.0.0.{i + 1}", serial=f"{500001 + i}", **options
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        appliances = list(pool.map(make, indices))
    started: list[SimulatedAppliance] = []
    try:
        for appliance in appliances:
            started.append(appliance.start())
    except BaseException:
        stop_appliances(started)
        raise
    return started


def _info(appliance: Any) -> ApplianceInfo:
    rest = appliance.rest_service is not None
    return ApplianceInfo(
        appliance.hostname,
        appliance.host,
        appliance.port,
        appliance.host_key_line,
        appliance.username,
        appliance.password,
        appliance.rest_port if rest else None,
        appliance.rest_certificate_fingerprint if rest else None,
    )


def _stats(appliance: Any) -> ApplianceStats:
    entries = tuple(
        Entry(e.session, e.kind, e.command, e.mutating, e.auth) for e in appliance.journal.entries()
    )
    return ApplianceStats(appliance.hostname, appliance.connections, entries)


def _child_main(conn: Connection, with_aws: bool) -> None:
    """A child process: serves ``(operation, argument)`` requests until ``stop``."""
    import logging

    from luna_ha.sim.server import stop_appliances

    appliances: list[Any] = []
    server = None
    try:
        endpoint = None
        if with_aws:
            import urllib.request

            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310
            urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310 - our own loopback URL
        conn.send(("ok", endpoint))
        while True:
            operation, argument = conn.recv()
            try:
                if operation == "start":
                    stop_appliances(appliances)
                    appliances = []
                    indices, options = argument
                    appliances = _start_appliances(indices, options)
                    conn.send(("ok", [_info(a) for a in appliances]))
                elif operation == "stats":
                    conn.send(("ok", [_stats(a) for a in appliances]))
                elif operation == "cpu":
                    conn.send(("ok", time.process_time()))
                elif operation == "stop":
                    conn.send(("ok", None))
                    return
                else:
                    conn.send(("error", f"unknown operation {operation!r}"))
            except Exception as exc:  # report it to the parent, keep serving
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        stop_appliances(appliances)
        if server is not None:
            server.stop()


# -- backends -------------------------------------------------------------------------------------


class Backend:
    """Start appliances, seed their secrets, report their journals; a context manager."""

    name = ""

    def __init__(self) -> None:
        from luna_ha_lab.localaws import LabSecrets

        self.group = LabSecrets.generate()
        self.appliances: list[ApplianceInfo] = []
        self._saved_env: dict[str, str | None] = {}
        self._seeded: set[str] = set()

    # to implement
    def _start(self, n: int, options: dict[str, Any]) -> list[ApplianceInfo]:
        raise NotImplementedError

    def stats(self) -> list[ApplianceStats]:
        raise NotImplementedError

    def simulator_cpu(self) -> float:
        """CPU seconds used so far by the processes that run the appliances and AWS, if not this one."""
        return 0.0

    def __enter__(self) -> Backend:
        self._saved_env = {k: os.environ.get(k) for k in _AWS_ENV}
        for k in _AWS_ENV:
            os.environ.pop(k, None)
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
            }
        )
        return self

    def __exit__(self, *exc: object) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def start(
        self, n: int, *, zeroized: bool = False, dialect: str = "5.4", **options: Any
    ) -> list[ApplianceInfo]:
        """``n`` fresh appliances of software ``dialect`` (initialized with the group's admin
        password and domain, or zeroized), their manager secrets written; EC server keys keep the
        simulator's CPU low. A 7.x appliance serves REST too."""
        settings: dict[str, Any] = {"key_type": "ec", "dialect": dialect, **options}
        if not zeroized:
            settings.update(
                initialized=True, admin_password=self.group.admin_password, domain=self.group.domain
            )
        self.appliances = self._start(n, settings)
        self._seed(self.appliances)
        return self.appliances

    def _seed(self, appliances: Sequence[ApplianceInfo]) -> None:
        from luna_ha.coordination import create_table
        from luna_ha.spec import host_key_fingerprint
        from luna_ha_lab.localaws import TABLE

        if not self._seeded:  # the first time: the provider's coordination table
            create_table(boto3.client("dynamodb", region_name=REGION), TABLE)
        sm = boto3.client("secretsmanager", region_name=REGION)
        every = [host_key_fingerprint(a.host_key_line) for a in appliances]
        values: dict[str, dict[str, Any]] = {
            ADMIN_SECRET: {
                "password": self.group.admin_password,
                "domain": self.group.domain,
                "partitionSoPassword": self.group.partition_so_password,  # Luna 7 partitions
                "appliances": every,
            },
            PARTITION_SECRET: {"password": self.group.partition_password, "appliances": every},
        }
        for a, fingerprint in zip(appliances, every, strict=True):
            values[f"luna/manager/{a.hostname}"] = {
                "username": a.username,
                "password": a.password,
                "appliances": [fingerprint],
            }
        for name, value in values.items():
            text = json.dumps(value)
            if name in self._seeded:
                sm.put_secret_value(SecretId=name, SecretString=text)
            else:
                sm.create_secret(Name=name, SecretString=text)
                self._seeded.add(name)


class InProcessBackend(Backend):
    """moto (``mock_aws``) and the simulated appliances in this process."""

    name = "in-process"

    def __init__(self) -> None:
        super().__init__()
        self._running: list[Any] = []
        self._mock: AbstractContextManager[Any] | None = None

    def __enter__(self) -> InProcessBackend:
        super().__enter__()
        from moto import mock_aws

        self._mock = mock_aws()
        self._mock.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        from luna_ha.sim.server import stop_appliances

        stop_appliances(self._running)
        self._running = []
        if self._mock is not None:
            self._mock.__exit__(None, None, None)
        super().__exit__(*exc)

    def _start(self, n: int, options: dict[str, Any]) -> list[ApplianceInfo]:
        from luna_ha.sim.server import stop_appliances

        stop_appliances(self._running)
        self._running = _start_appliances(range(n), options)
        return [_info(a) for a in self._running]

    def stats(self) -> list[ApplianceStats]:
        return [_stats(a) for a in self._running]


class ChildBackend(Backend):
    """The appliances in ``processes`` child processes, moto's server in the first one."""

    def __init__(self, processes: int = 1) -> None:
        super().__init__()
        self.processes = max(1, processes)
        self.name = "child process" if self.processes == 1 else f"{self.processes} child processes"
        self._children: list[tuple[Any, Connection]] = []
        self._placement: list[int] = []  # child of appliance i, in start order

    def __enter__(self) -> ChildBackend:
        super().__enter__()
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        endpoint = None
        try:
            for index in range(self.processes):
                parent, child = context.Pipe()
                process = context.Process(
                    target=_child_main, args=(child, index == 0), name=f"bench-sim-{index}", daemon=True
                )
                process.start()
                child.close()
                self._children.append((process, parent))
            for index, (_, conn) in enumerate(self._children):
                found = self._answer(conn)
                if index == 0:
                    endpoint = found
        except BaseException:
            self.__exit__(None, None, None)
            raise
        os.environ["AWS_ENDPOINT_URL"] = str(endpoint)
        return self

    def __exit__(self, *exc: object) -> None:
        for process, conn in self._children:
            try:
                conn.send(("stop", None))
                self._answer(conn)
            except (OSError, EOFError, RuntimeError):
                pass
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        self._children = []
        super().__exit__(*exc)

    @staticmethod
    def _answer(conn: Connection, timeout: float = 120.0) -> Any:
        if not conn.poll(timeout):
            raise RuntimeError("a simulator process did not answer")
        status, value = conn.recv()
        if status != "ok":
            raise RuntimeError(f"simulator process: {value}")
        return value

    def _ask_all(self, requests: list[tuple[str, Any]]) -> list[Any]:
        for (_, conn), request in zip(self._children, requests, strict=True):
            conn.send(request)
        return [self._answer(conn) for _, conn in self._children]

    def _start(self, n: int, options: dict[str, Any]) -> list[ApplianceInfo]:
        placement = [i % self.processes for i in range(n)]
        requests = [
            ("start", ([i for i in range(n) if placement[i] == c], options)) for c in range(self.processes)
        ]
        answers = self._ask_all(requests)
        self._placement = placement
        return self._in_order(answers)

    def _in_order(self, answers: list[list[Any]]) -> list[Any]:
        iterators = [iter(a) for a in answers]
        return [next(iterators[c]) for c in self._placement]

    def stats(self) -> list[ApplianceStats]:
        return self._in_order(self._ask_all([("stats", None)] * self.processes))

    def simulator_cpu(self) -> float:
        return float(sum(self._ask_all([("cpu", None)] * self.processes)))


def make_backend(kind: str, processes: int = 1) -> Backend:
    if kind == "in-process":
        return InProcessBackend()
    return ChildBackend(processes)


@contextmanager
def counting_aws_calls(latency: float = 0.0) -> Iterator[dict[str, int]]:
    """Count (and optionally delay) every AWS API call of boto3 clients created inside the block,
    by ``<service> <operation>``; ``latency`` seconds are slept before each call, in its thread."""
    import threading

    counts: dict[str, int] = {}
    lock = threading.Lock()

    def before_call(model: Any, **_: Any) -> None:
        key = f"{model.service_model.service_name} {model.name}"
        with lock:
            counts[key] = counts.get(key, 0) + 1
        if latency > 0:
            time.sleep(latency)

    session = boto3._get_default_session()
    session.events.register("before-call", before_call, unique_id="luna-ha-bench-count")
    try:
        yield counts
    finally:
        session.events.unregister("before-call", unique_id="luna-ha-bench-count")


def calls_of(counts: dict[str, int], service: str) -> int:
    return sum(n for key, n in counts.items() if key.split(" ", 1)[0] == service)
