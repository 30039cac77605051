"""SSH connections and commands per appliance for each operation of a group's life, and the AWS
API calls of each: Create, a no-op Update, a client rotation, Delete; Create on zeroized
appliances declared with ``Initialize``; and Create on initialized Luna 7 appliances (7.8, 7.2),
which also receive REST requests.

Counted on both sides: the engine's ``RunReport`` (connections, commands and mutating commands per
appliance) and the simulators' journals and accepted connections (what the appliances received).
Journal classes: mutating (changes configuration, SCP uploads included), login (``hsm login`` /
``hsm logout``: login state only), read-only (the rest, SCP downloads included). REST requests
(Luna 7) are counted apart: all of them, and the mutating ones (partition init, Crypto Officer
init, its password change).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common import build_engine, group_spec, heading, note, physical_id, table
from fleet import ApplianceStats, Backend, calls_of, counting_aws_calls

from luna_ha.engine import RunReport


@dataclass(frozen=True)
class OperationCounts:
    name: str
    engine_connections: list[int]
    engine_commands: list[int]
    engine_mutating: list[int]
    accepted: list[int]
    mutating: list[int]
    login: list[int]
    read_only: list[int]
    rest: list[int]
    rest_mutating: list[int]
    ssm_calls: int
    secrets_calls: int
    dynamodb_calls: int
    parameters_written: int
    parameters_deleted: int


def _spread(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def _counted(
    backend: Backend, name: str, run: Callable[[], RunReport], before: list[ApplianceStats]
) -> OperationCounts:
    with counting_aws_calls() as calls:
        report = run()
    if not report.ok:
        raise RuntimeError(f"{name} failed: {[str(a.error) for a in report.failures]}")
    after = backend.stats()
    mutating, login, read_only, accepted, rest, rest_mutating = [], [], [], [], [], []
    for old, new in zip(before, after, strict=True):
        entries = new.entries[len(old.entries) :]
        commands = [e for e in entries if e.kind in ("command", "scp", "exec")]
        mutating.append(sum(e.mutating for e in commands))
        login.append(sum(e.auth for e in commands))
        read_only.append(sum(not e.mutating and not e.auth for e in commands))
        accepted.append(new.connections - old.connections)
        requests = [e for e in entries if e.kind == "rest"]
        rest.append(len(requests))
        rest_mutating.append(sum(e.mutating for e in requests))
    members = report.appliances
    return OperationCounts(
        name,
        [a.connections for a in members],
        [a.commands for a in members],
        [a.mutating for a in members],
        accepted,
        mutating,
        login,
        read_only,
        rest,
        rest_mutating,
        calls_of(calls, "ssm"),
        calls_of(calls, "secretsmanager"),
        calls_of(calls, "dynamodb"),
        len(report.parameters_put),
        len(report.parameters_deleted),
    )


def measure(backend: Backend, appliances: int, luna7: Sequence[str] = ()) -> list[OperationCounts]:
    """The lifecycle on ``appliances`` Luna SA 5.4 appliances, Create on zeroized ones, then a
    Create on initialized appliances of each Luna 7 software in ``luna7``."""
    results: list[OperationCounts] = []
    group_id = physical_id("Lifecycle")

    started = backend.start(appliances)
    spec0 = group_spec(backend, started, partition="lifecycle", rotation=0)
    spec1 = group_spec(backend, started, partition="lifecycle", rotation=1)

    for name, make in (
        ("Create", lambda e: e.apply(spec0, group_id)),
        ("Update, nothing changed", lambda e: e.apply(spec0, group_id, previous=spec0)),
        ("Update, client rotation 0 → 1", lambda e: e.apply(spec1, group_id, previous=spec0)),
        ("Delete (Retain partitions)", lambda e: e.destroy(spec1, group_id)),
    ):
        results.append(_run(backend, name, make))

    zeroized = backend.start(appliances, zeroized=True)
    spec = group_spec(backend, zeroized, partition="lifecycle2", initialize=True)
    results.append(
        _run(backend, "Create, zeroized + Initialize", lambda e: e.apply(spec, physical_id("Init")))
    )
    for dialect in luna7:
        started = backend.start(appliances, dialect=dialect)
        spec7 = group_spec(backend, started, partition=f"luna{dialect.replace('.', '')}")
        results.append(
            _run(
                backend,
                f"Create, Luna 7 ({dialect})",
                lambda e, spec7=spec7, dialect=dialect: e.apply(spec7, physical_id(f"Luna{dialect}")),
            )
        )
    return results


def _run(backend: Backend, name: str, make: Callable[..., RunReport]) -> OperationCounts:
    before = backend.stats()
    holder: dict[str, RunReport] = {}

    def run() -> RunReport:
        engine = build_engine()  # inside counting_aws_calls: its clients are counted
        holder["report"] = make(engine)
        return holder["report"]

    return _counted(backend, name, run, before)


def print_results(results: list[OperationCounts], appliances: int) -> None:
    heading(f"SSH connections and commands per appliance ({appliances} appliances), AWS calls per run")
    rows = [
        [
            r.name,
            _spread(r.engine_connections),
            _spread(r.accepted),
            _spread(r.mutating),
            _spread(r.login),
            _spread(r.read_only),
            f"{_spread(r.rest)} ({_spread(r.rest_mutating)})",
            f"{_spread(r.engine_commands)} ({_spread(r.engine_mutating)})",
            r.ssm_calls,
            r.secrets_calls,
            r.dynamodb_calls,
            f"{r.parameters_written}/{r.parameters_deleted}",
        ]
        for r in results
    ]
    print(
        table(
            [
                "operation",
                "SSH conn. (engine)",
                "SSH conn. (appliance)",
                "mutating",
                "login",
                "read-only",
                "REST requests (mutating)",
                "engine: commands (mutating)",
                "SSM calls per run",
                "Secrets Manager calls per run",
                "DynamoDB calls per run",
                "parameters put/deleted",
            ],
            rows,
        )
    )
    note(
        "\nmutating / login / read-only: what each appliance's journal received (SCP upload = mutating, "
        "server.pem download = read-only). Lambda settings: deletion markers on (Delete writes one "
        "marker record, every apply reads it once more); DynamoDB (the coordination table): the path "
        "claim, one partition record read per appliance (and written when a partition is created), "
        "one HSM Admin lease per appliance that logs in (taken and let go); one BatchGetSecretValue "
        "reads every secret of a run."
    )
