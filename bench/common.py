"""What the benchmark scripts share: the latency table, the group under test, the timed engine,
and printing tables (Markdown, aligned, so that they read in a terminal and paste into the README)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleet import REGION, ApplianceInfo, Backend  # noqa: E402
from tests.functional.lab import Lab  # noqa: E402

from luna_ha.coordination import Coordinator  # noqa: E402
from luna_ha.engine import ApplianceReport, Engine, RunReport  # noqa: E402
from luna_ha.secrets import SecretReader  # noqa: E402
from luna_ha.spec import GroupSpec, parse_properties  # noqa: E402
from luna_ha.store import ParameterStore  # noqa: E402
from luna_ha_lab.localaws import TABLE  # noqa: E402

#: Seconds of each command, as a multiple of a read's (``hsm show``, ``partition list``, ``client
#: list/show/fingerprint``, ``hsm logout``). SCP transfers carry no added latency. Luna 7: its
#: lunash steps, and its REST requests (every other REST request, a session's opening and closing
#: included, takes a read's time).
LATENCY_FACTORS: dict[str, float] = {
    "hsm init": 20.0,
    "sysconf regenCert": 6.0,
    "ntls bind": 4.0,
    "hsm login": 4.0,
    "partition create": 8.0,
    "partition delete": 6.0,
    "client register": 2.0,
    "client assignPartition": 2.0,
    "client revokePartition": 2.0,
    "client delete": 2.0,
    # Luna 7
    "service restart": 6.0,
    "partition init": 8.0,
    "partition init co": 4.0,
    "rest hsm login": 4.0,
    "rest partition init": 8.0,
    "rest partition login": 4.0,
    "rest co init": 4.0,
    "rest co password": 4.0,
}


def latency_options(read_seconds: float) -> dict[str, Any]:
    return {
        "latency": {name: factor * read_seconds for name, factor in LATENCY_FACTORS.items()},
        "default_latency": read_seconds,
    }


def physical_id(name: str) -> str:
    return f"arn:aws:cloudformation:us-east-1:123456789012:stack/bench/1|{name}|payments"


def group_spec(
    backend: Backend,
    appliances: Sequence[ApplianceInfo],
    *,
    partition: str = "payments",
    initialize: bool = False,
    rotation: int = 0,
    **extra: Any,
) -> GroupSpec:
    """The group over ``appliances`` as ``tests.functional.lab.Lab`` declares it; with
    ``initialize`` each appliance gets ``Initialize: true`` and its hostname as ``HsmLabel``."""
    g = backend.group
    lab = Lab(list(appliances), g.admin_password, g.domain, g.partition_password)  # type: ignore[arg-type]
    props = lab.props(
        members=list(range(len(appliances))), clients={"web": rotation}, PartitionName=partition, **extra
    )
    if initialize:
        for item, appliance in zip(props["Appliances"], appliances, strict=True):
            item.update({"Initialize": "true", "HsmLabel": appliance.hostname})
    return parse_properties(props)


class TimedEngine(Engine):
    """The engine, with the time of its appliance phase and of each appliance's progress messages
    (``connecting``, ``N step(s) to run``, ``done: <step>``, ``converged``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(progress=self._record, **kwargs)
        self.phase: tuple[float, float] = (0.0, 0.0)
        self.events: list[tuple[float, str, str]] = []
        self.appliance_cpu: list[float] = []  # CPU of each appliance's worker thread

    def _record(self, host: str, message: str) -> None:
        self.events.append((time.monotonic(), host, message))  # list.append: atomic

    def _fan_out(self, work: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """Each appliance's work in its worker thread (opening and observing it, then converging
        it), with the CPU that thread spent on it."""

        def timed_work(item: Any) -> Any:
            started = time.thread_time()
            try:
                return work(item)
            finally:
                self.appliance_cpu.append(time.thread_time() - started)

        return super()._fan_out(timed_work, items)

    def _run_all(self, *args: Any, **kwargs: Any) -> list[ApplianceReport]:
        started = time.monotonic()
        try:
            return super()._run_all(*args, **kwargs)
        finally:
            self.phase = (started, time.monotonic())


def build_engine(workers: int = 16) -> TimedEngine:
    """As the Lambda builds it (``compose.build_engine``): boto3 clients from the environment,
    deletion markers on."""
    return TimedEngine(
        secrets=SecretReader(boto3.client("secretsmanager", region_name=REGION)),
        store=ParameterStore(boto3.client("ssm", region_name=REGION)),
        coordinator=Coordinator(boto3.client("dynamodb", region_name=REGION), TABLE),
        max_workers=workers,
        deletion_markers=True,
    )


@dataclass(frozen=True)
class Timed:
    """One measured run. The breakdown (seconds, slowest appliance for the per-appliance ones):
    ``before`` the appliance phase (group secrets, SSM read, client keys), ``secret`` (an appliance
    until ``connecting``: its manager secret), ``observe`` (SSH connect, observe, plan), ``steps``
    (the planned steps), ``finish`` (partition serial, server.pem) and ``after`` the appliance
    phase (SSM read, group document and parameters)."""

    seconds: float
    before: float
    secret: float
    observe: float
    steps: float
    finish: float
    after: float
    connections: int
    engine_cpu: float
    main_cpu: float
    appliance_cpu: float
    simulator_cpu: float
    report: RunReport

    @property
    def transport_cpu(self) -> float:
        """paramiko's transport threads (packets, ciphers, key exchange) and any other thread."""
        return self.engine_cpu - self.main_cpu - self.appliance_cpu


def timed(backend: Backend, engine: TimedEngine, run: Callable[[], RunReport]) -> Timed:
    sim_before = backend.simulator_cpu()
    cpu_before, main_before = time.process_time(), time.thread_time()
    started = time.monotonic()
    report = run()
    ended = time.monotonic()
    cpu, main = time.process_time() - cpu_before, time.thread_time() - main_before
    sim = backend.simulator_cpu() - sim_before
    if not report.ok:
        raise RuntimeError(f"{report.operation} failed: {[str(a.error) for a in report.failures]}")
    phase_start, phase_end = engine.phase
    marks: dict[str, dict[str, float]] = {}
    for at, host, message in engine.events:
        kind = "done" if message.startswith("done: ") else message.split(" ", 1)[0]
        if message.endswith("step(s) to run"):
            kind = "planned"
        marks.setdefault(host, {})[kind] = at  # the last of each kind
    secret = observe = steps = finish = 0.0
    for m in marks.values():
        connecting = m.get("connecting", phase_start)
        planned = m.get("planned", connecting)
        done = m.get("done", planned)
        end = m.get("converged", done)
        secret = max(secret, connecting - phase_start)
        observe = max(observe, planned - connecting)
        steps = max(steps, done - planned)
        finish = max(finish, end - done)
    return Timed(
        ended - started,
        phase_start - started,
        secret,
        observe,
        steps,
        finish,
        ended - phase_end,
        max((a.connections for a in report.appliances), default=0),
        cpu,
        main,
        sum(engine.appliance_cpu),
        sim,
        report,
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- output ---------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, left: int = 1) -> str:
    """A Markdown table with padded columns; the first ``left`` columns align left."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + "-" if i < left else "-" * (w + 1) + ":") for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if value != value else f"{value:.2f}"  # NaN: not measured
    return str(value)


def heading(text: str) -> None:
    print(f"\n### {text}\n", flush=True)


def note(text: str) -> None:
    print(text, flush=True)
