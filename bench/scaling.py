"""Create on 1, 2, 4, 8 and 16 simulated appliances: the engine's parallelism against the ideal.

Every appliance has the same work and the same latency table, so the ideal Create of a group is
the slowest single appliance's own critical path: a one-appliance Create (median of the repeats;
it includes the group's own work: secrets, the client key, Parameter Store). Each size is run with
the engine's parallelism (16 workers; median of the repeats) and once one appliance after another
(1 worker). Every measured run starts from fresh appliances and a partition name of its own.

Two variants: ``initialized`` appliances (observe, login, partition create, client upload,
register, assign), and ``zeroized`` ones declared with ``Initialize`` (``hsm init`` first, the
slowest command, then regenCert and ntls bind).

Luna Network HSM 7 (``measure(..., dialect="7.8")``, initialized appliances): the engine also opens
a REST session per appliance, initializes the partition and its Crypto Officer (lunash on 7.8, REST
on 7.2) and changes the Crypto Officer's first password over REST; ``print_luna7`` prints it
against the ideal of the same software, with the lunash commands and REST requests each appliance
received.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from common import (
    LATENCY_FACTORS,
    Timed,
    build_engine,
    group_spec,
    heading,
    latency_options,
    median,
    note,
    physical_id,
    table,
    timed,
)
from fleet import ApplianceStats, Backend, counting_aws_calls

VARIANTS = ("initialized", "zeroized")
_runs = itertools.count()


@dataclass
class SizeResult:
    size: int
    parallel: list[Timed] = field(default_factory=list)
    sequential: Timed | None = None
    #: What each appliance received during the last parallel run (its journal).
    received: list[ApplianceStats] = field(default_factory=list)


@dataclass
class VariantResult:
    variant: str
    backend: str
    sizes: dict[int, SizeResult] = field(default_factory=dict)
    dialect: str = "5.4"

    @property
    def ideal(self) -> float:
        return median([t.seconds for t in self.sizes[1].parallel])


def create_once(
    backend: Backend,
    variant: str,
    size: int,
    workers: int,
    read_seconds: float,
    aws_latency: float,
    dialect: str = "5.4",
) -> Timed:
    zeroized = variant == "zeroized"
    appliances = backend.start(size, zeroized=zeroized, dialect=dialect, **latency_options(read_seconds))
    run = next(_runs)
    spec = group_spec(backend, appliances, partition=f"p{run}", initialize=zeroized)
    with counting_aws_calls(aws_latency):
        engine = build_engine(workers)
        return timed(backend, engine, lambda: engine.apply(spec, physical_id(f"Group{run}")))


def measure(
    backend: Backend,
    variant: str,
    sizes: list[int],
    *,
    repeats: int,
    sequential_sizes: list[int],
    read_seconds: float,
    aws_latency: float,
    dialect: str = "5.4",
) -> VariantResult:
    result = VariantResult(variant, backend.name, dialect=dialect)

    def once(size: int, workers: int) -> Timed:
        return create_once(backend, variant, size, workers, read_seconds, aws_latency, dialect)

    once(1, 1)  # first use: imports, moto, caches
    every = sorted(set([1, *sizes]))
    for size in every:
        result.sizes[size] = SizeResult(size)
    # Round after round over the sizes, so that other load on the machine touches every size alike;
    # the ideal (one appliance) deserves at least 3 runs.
    for round_ in range(max(repeats, 3)):
        for size in every:
            if size == 1 or round_ < repeats:
                result.sizes[size].parallel.append(once(size, 16))
                result.sizes[size].received = backend.stats()
    for size in every:
        if size in sequential_sizes:
            result.sizes[size].sequential = once(size, 1)
    return result


def print_latency_table(read_seconds: float) -> None:
    rows = [["reads (hsm show, partition/client list, client show/fingerprint)", 1.0, read_seconds * 1000]]
    rows += [[name, factor, factor * read_seconds * 1000] for name, factor in LATENCY_FACTORS.items()]
    rows += [["other REST requests (Luna 7: session, reads)", 1.0, read_seconds * 1000]]
    print(
        table(
            ["lunash command / REST request", "x a read", "ms"],
            [[n, f"{f:g}", f"{ms:.0f}"] for n, f, ms in rows],
        )
    )


def _per_appliance(received: list[ApplianceStats], kinds: tuple[str, ...]) -> str:
    """Entries of ``kinds`` each appliance's journal holds, with the mutating ones in brackets;
    a range when the appliances differ."""
    counts = [sum(e.kind in kinds for e in a.entries) for a in received]
    mutating = [sum(e.kind in kinds and e.mutating for e in a.entries) for a in received]

    def spread(values: list[int]) -> str:
        return str(min(values)) if min(values) == max(values) else f"{min(values)}-{max(values)}"

    return f"{spread(counts)} ({spread(mutating)})" if received else "-"


def print_luna7(results: list[VariantResult], sizes: list[int]) -> None:
    """One table over the Luna 7 dialects: each size against the one-appliance Create of the same
    software, one after another at the sizes that ran so, and what each appliance received."""
    if not results:
        return
    backend = results[0].backend
    heading(f"Create, Luna Network HSM 7 (initialized appliances) — simulator and AWS in: {backend}")
    rows = []
    for r in results:
        for size in sizes:
            s = r.sizes[size]
            par = median([t.seconds for t in s.parallel])
            seq = s.sequential.seconds if s.sequential else float("nan")
            rows.append(
                [
                    r.dialect,
                    size,
                    r.ideal,
                    par,
                    par / r.ideal,
                    seq,
                    seq / par,
                    max(t.connections for t in s.parallel),
                    _per_appliance(s.received, ("command", "scp", "exec")),
                    _per_appliance(s.received, ("rest",)),
                ]
            )
    print(
        table(
            [
                "software",
                "appliances",
                "ideal s",
                "parallel s",
                "parallel/ideal",
                "sequential s",
                "sequential/parallel",
                "SSH conn./appliance",
                "lunash commands + SCP (mutating)",
                "REST requests (mutating)",
            ],
            rows,
        )
    )
    for r in results:
        ideal_runs = [t.seconds for t in r.sizes[1].parallel]
        largest = max(sizes)
        runs = r.sizes[largest].parallel

        def med(attr: str, runs: list[Timed] = runs) -> float:
            return median([getattr(t, attr) for t in runs])

        note(
            f"\n{r.dialect}: ideal = median one-appliance Create of {r.dialect} ({len(ideal_runs)} runs, "
            f"{min(ideal_runs):.2f}-{max(ideal_runs):.2f} s); at {largest} appliances (medians, slowest "
            f"appliance): connect+observe {med('observe'):.2f} s, steps {med('steps'):.2f} s, after "
            f"the appliances {med('after'):.2f} s; engine CPU {med('engine_cpu'):.2f} s, simulator+moto "
            f"CPU {med('simulator_cpu'):.2f} s."
        )
    note(
        "\nPer appliance, from its journal: lunash command lines and SCP transfers (the `server.pem` "
        "download is read-only), and REST requests (session open/close, reads, HSM SO and Partition SO "
        "logins; mutating: partition init, Crypto Officer init, its first password change)."
    )


def print_results(results: list[VariantResult], sizes: list[int]) -> None:
    """Per variant: the headline table (the first backend), then the other backends' parallel runs."""
    by_variant: dict[str, list[VariantResult]] = {}
    for r in results:
        by_variant.setdefault(r.variant, []).append(r)
    for variant, group in by_variant.items():
        main, others = group[0], group[1:]
        heading(f"Create, {variant} appliances — simulator and AWS in: {main.backend}")
        ideal = main.ideal
        rows = []
        for size in sizes:
            s = main.sizes[size]
            par = median([t.seconds for t in s.parallel])
            seq = s.sequential.seconds if s.sequential else float("nan")
            row: list[object] = [size, ideal, par, par / ideal, seq, seq / par, seq / ideal]
            row.append(max(t.connections for t in s.parallel))
            for other in others:
                o = median([t.seconds for t in other.sizes[size].parallel])
                row += [o, o / other.ideal]
            rows.append(row)
        headers = [
            "appliances",
            "ideal s",
            "parallel s",
            "parallel/ideal",
            "sequential s",
            "sequential/parallel",
            "sequential/ideal",
            "SSH conn./appliance",
        ]
        for other in others:
            headers += [f"parallel s ({other.backend})", "parallel/ideal"]
        print(table(headers, rows, left=0))
        sequential = [s.sequential for s in main.sizes.values() if s.sequential is not None]
        solo = [a.seconds for run in sequential for a in run.report.appliances]
        ideal_runs = [t.seconds for t in main.sizes[1].parallel]
        note(
            f"\nideal = median one-appliance Create ({len(ideal_runs)} runs, {min(ideal_runs):.2f}-"
            f"{max(ideal_runs):.2f} s, the group's own work included)"
            + (
                f"; the slowest appliance's session run alone (sequential runs): {max(solo):.2f} s."
                if solo
                else "."
            )
        )
        heading(f"Where the time goes, {variant} appliances ({main.backend}; medians, slowest appliance)")
        rows = []
        for size in sizes:
            runs = main.sizes[size].parallel

            def med(attr: str, runs: list[Timed] = runs) -> float:
                return median([getattr(t, attr) for t in runs])

            rows.append(
                [size]
                + [med(a) for a in ("seconds", "before", "secret", "observe", "steps", "finish", "after")]
                + [
                    f"{med('engine_cpu'):.2f} ({med('main_cpu'):.2f} / {med('appliance_cpu'):.2f} / "
                    f"{med('transport_cpu'):.2f})",
                    med("simulator_cpu"),
                ]
            )
        print(
            table(
                [
                    "appliances",
                    "Create s",
                    "before the appliances s",
                    "until connecting s",
                    "connect+observe s",
                    "steps s",
                    "serial+server.pem s",
                    "after the appliances s",
                    "engine CPU s (main / appliance threads / SSH transports)",
                    "simulator+moto CPU s",
                ],
                rows,
                left=0,
            )
        )
        note(
            "\nbefore: group secrets, SSM read, client key + certificate, their parameters; "
            "until connecting: the manager secret; connect+observe: SSH handshake, auth, shell, hsm show, "
            "partition/client list; after: SSM read, group document and per-member parameters. "
            "CPU: process time of the engine's process (its main thread, the appliances' worker threads, "
            "the rest: paramiko's transport threads), and of the simulator's (appliances + moto server)."
        )
