"""Create on 1, 2, 4, 8 and 16 simulated appliances: the engine's parallelism against the ideal.

Every appliance has the same work and the same latency table, so the ideal Create of a group is
the slowest single appliance's own critical path: a one-appliance Create (median of the repeats;
it includes the group's own work: secrets, the client key, Parameter Store). Each size is run with
the engine's parallelism (16 workers; median of the repeats) and once one appliance after another
(1 worker). Every measured run starts from fresh appliances and a partition name of its own.

Two variants: ``initialized`` appliances (observe, login, partition create, client upload,
register, assign), and ``zeroized`` ones declared with ``Initialize`` (``hsm init`` first, the
slowest command, then regenCert and ntls bind).
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
from fleet import Backend, counting_aws_calls

VARIANTS = ("initialized", "zeroized")
_runs = itertools.count()


@dataclass
class SizeResult:
    size: int
    parallel: list[Timed] = field(default_factory=list)
    sequential: Timed | None = None


@dataclass
class VariantResult:
    variant: str
    backend: str
    sizes: dict[int, SizeResult] = field(default_factory=dict)

    @property
    def ideal(self) -> float:
        return median([t.seconds for t in self.sizes[1].parallel])


def create_once(
    backend: Backend, variant: str, size: int, workers: int, read_seconds: float, aws_latency: float
) -> Timed:
    zeroized = variant == "zeroized"
    appliances = backend.start(size, zeroized=zeroized, **latency_options(read_seconds))
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
) -> VariantResult:
    result = VariantResult(variant, backend.name)
    create_once(backend, variant, 1, 1, read_seconds, aws_latency)  # first use: imports, moto, caches
    every = sorted(set([1, *sizes]))
    for size in every:
        result.sizes[size] = SizeResult(size)
    # Round after round over the sizes, so that other load on the machine touches every size alike;
    # the ideal (one appliance) deserves at least 3 runs.
    for round_ in range(max(repeats, 3)):
        for size in every:
            if size == 1 or round_ < repeats:
                run = create_once(backend, variant, size, 16, read_seconds, aws_latency)
                result.sizes[size].parallel.append(run)
    for size in every:
        if size in sequential_sizes:
            result.sizes[size].sequential = create_once(backend, variant, size, 1, read_seconds, aws_latency)
    return result


def print_latency_table(read_seconds: float) -> None:
    rows = [["reads (hsm show, partition/client list, client show/fingerprint)", 1.0, read_seconds * 1000]]
    rows += [[name, factor, factor * read_seconds * 1000] for name, factor in LATENCY_FACTORS.items()]
    print(table(["lunash command", "x a read", "ms"], [[n, f"{f:g}", f"{ms:.0f}"] for n, f, ms in rows]))


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
