"""Benchmarks of luna-ha: print tables and ratios, never assert on time.

1. Create scaling: groups of 1, 2, 4, 8 and 16 simulated appliances with per-command latency
   (reads fast; login, partition create slower; ``hsm init`` slowest), initialized appliances and
   zeroized ones declared with Initialize: wall time with the engine's parallelism against the
   ideal (the slowest single appliance's own critical path: a one-appliance Create) and against
   one appliance after another; where the time goes (``scaling.py``).
   Luna Network HSM 7: Create on 1, 4 and 16 initialized 7.8 and 7.2 appliances against the
   one-appliance Create of the same software, with the lunash commands and REST requests each
   appliance received (``--only luna7``; ``scaling.py``).
2. SSH connections and commands (mutating / login / read-only) per appliance, REST requests, and
   AWS calls, for Create, a no-op Update, a client rotation and Delete, and Create on Luna 7
   (``operations.py``).
3. Cold start: importing the Lambda handler module; size of the function code and of the built
   dependency layer (``footprint.py``).
4. Client bootstrap of an ASG member: AWS calls and wall time, first boot and re-run
   (``member_bootstrap.py``).

The simulated appliances and moto run in a child process by default (``fleet.py``), so that the
engine's process does only the engine's work. Takes about 6-7 minutes on a 2-core machine.

    make bench                          # everything, defaults
    .venv/bin/python bench/run.py --quick
    .venv/bin/python bench/run.py --only scaling --sizes 1 4 16 --latency 0.02 --repeats 1
    .venv/bin/python bench/run.py --only luna7 --luna7-dialects 7.8
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import footprint
import member_bootstrap
import operations
import scaling
from common import ROOT, heading, median, note, table
from fleet import make_backend

SECTIONS = ("scaling", "luna7", "operations", "coldstart", "sizes", "bootstrap")
LUNA7_DIALECTS = ("7.8", "7.2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a fast look (~1.5 min): fewer sizes and runs")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run these sections only")
    parser.add_argument("--skip", nargs="+", choices=SECTIONS, default=[], help="skip these sections")
    scale = parser.add_argument_group("Create scaling")
    scale.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="appliances per group")
    scale.add_argument("--latency", type=float, default=0.05, help="seconds of a read command (default 0.05)")
    scale.add_argument("--repeats", type=int, default=3, help="parallel runs per size (median; default 3)")
    scale.add_argument("--variants", nargs="+", choices=scaling.VARIANTS, default=list(scaling.VARIANTS))
    scale.add_argument(
        "--sequential",
        choices=("all", "largest", "none"),
        default="all",
        help="one-after-another runs: every size, the largest only, none (default all; the zeroized "
        "variant runs the largest only unless --full)",
    )
    scale.add_argument("--full", action="store_true", help="sequential runs at every size in every variant")
    scale.add_argument(
        "--simulator",
        choices=("child", "in-process", "both"),
        default="both",
        help="where the appliances and moto run: a child process, this process, or both (default both: "
        "the child process for every table, this process for the initialized variant's parallel runs)",
    )
    scale.add_argument("--sim-processes", type=int, default=1, help="child processes for the appliances")
    scale.add_argument(
        "--aws-latency",
        type=float,
        default=0.02,
        help="seconds added to each AWS API call for the sensitivity check (0: skip; default 0.02)",
    )
    luna7 = parser.add_argument_group("Create on Luna 7 (also takes --latency, --repeats, --sequential)")
    luna7.add_argument(
        "--luna7-dialects",
        nargs="+",
        choices=LUNA7_DIALECTS,
        default=list(LUNA7_DIALECTS),
        help="appliance software (7.8: partitions initialized with lunash; 7.2: over REST)",
    )
    luna7.add_argument(
        "--luna7-sizes", type=int, nargs="+", default=[1, 4, 16], help="appliances per group (default 1 4 16)"
    )
    other = parser.add_argument_group("other sections")
    other.add_argument("--ops-appliances", type=int, default=4, help="appliances for the operations table")
    other.add_argument(
        "--coldstart-runs", type=int, default=5, help="fresh interpreters per measure (median)"
    )
    other.add_argument("--layer-arch", choices=("arm64", "x86_64"), default="arm64", help="layer to measure")
    other.add_argument(
        "--no-layer-build", action="store_true", help="measure the layer only if already built"
    )
    other.add_argument(
        "--members", type=int, default=3, help="appliances of the group a member bootstraps from"
    )
    other.add_argument(
        "--generations",
        nargs="+",
        choices=member_bootstrap.GENERATIONS,
        default=list(member_bootstrap.GENERATIONS),
    )
    other.add_argument("--no-cli", action="store_true", help="skip `luna-ha client bootstrap` as a process")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [1, 4, 16]
        args.latency = 0.02
        args.repeats = 1
        args.sequential = "largest"
        args.simulator = "child"
        args.aws_latency = 0.0
        args.coldstart_runs = 3
        args.generations = ["5.3"]
        args.no_cli = True
        args.luna7_dialects = ["7.8"]
        args.luna7_sizes = [1, 16]
    if args.full:
        args.sequential = "all"
    return args


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    commit = "?"
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "functions", "layers", "templates"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if changed:
            commit += " + uncommitted changes under functions/, layers/ or templates/"
    except (OSError, subprocess.CalledProcessError):
        pass
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores{memory}; "
        f"Python {platform.python_version()}; commit {commit}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"{load()}"
    )


class Contention:
    """How much CPU the rest of the machine used while a section ran: every CPU's busy time
    (/proc/stat) less this process's and its reaped children's. Other work distorts the timings."""

    def __init__(self) -> None:
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float | None, float]:
        busy = None
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            # user nice system idle iowait irq softirq steal ...
            busy = (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            pass
        t = os.times()
        return time.monotonic(), busy, t.user + t.system + t.children_user + t.children_system

    def report(self) -> str:
        (t0, busy0, ours0), (t1, busy1, ours1) = self._start, self._sample()
        self._start = (t1, busy1, ours1)
        if busy0 is None or busy1 is None:
            return f"({t1 - t0:.0f} s)"
        other = max(0.0, (busy1 - busy0) - (ours1 - ours0))
        return f"({t1 - t0:.0f} s; other processes on the machine used {other:.1f} CPU-seconds meanwhile)"


def load() -> str:
    """The load average: other work on the machine distorts every timing here."""
    try:
        one, five = os.getloadavg()[:2]
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def run_scaling(args: argparse.Namespace) -> None:
    heading("Latency of the simulated appliances")
    scaling.print_latency_table(args.latency)
    largest = max(args.sizes)
    results = []
    kinds = ["child"] if args.simulator in ("child", "both") else ["in-process"]
    for kind in kinds:
        with make_backend(kind, args.sim_processes) as backend:
            for variant in args.variants:
                sequential = args.sequential
                if variant == "zeroized" and sequential == "all" and not args.full:
                    sequential = "largest"
                seq_sizes = {"all": args.sizes, "largest": [largest], "none": []}[sequential]
                results.append(
                    scaling.measure(
                        backend,
                        variant,
                        args.sizes,
                        repeats=args.repeats,
                        sequential_sizes=seq_sizes,
                        read_seconds=args.latency,
                        aws_latency=0.0,
                    )
                )
            if args.aws_latency > 0:
                check = scaling.measure(
                    backend,
                    "initialized",
                    [largest],
                    repeats=args.repeats,
                    sequential_sizes=[],
                    read_seconds=args.latency,
                    aws_latency=args.aws_latency,
                )
    if args.simulator == "both" and "initialized" in args.variants:
        with make_backend("in-process") as backend:
            results.append(
                scaling.measure(
                    backend,
                    "initialized",
                    args.sizes,
                    repeats=args.repeats,
                    sequential_sizes=[],
                    read_seconds=args.latency,
                    aws_latency=0.0,
                )
            )
    scaling.print_results(results, args.sizes)
    if args.aws_latency > 0:
        base = next(r for r in results if r.variant == "initialized")
        heading(f"The same Create, each AWS API call {args.aws_latency * 1000:.0f} ms slower (initialized)")
        rows = []
        for label, r in (("moto as is", base), (f"+{args.aws_latency * 1000:.0f} ms per call", check)):
            par = median([t.seconds for t in r.sizes[largest].parallel])
            after = median([t.after for t in r.sizes[largest].parallel])
            before = median([t.before for t in r.sizes[largest].parallel])
            rows.append([label, r.ideal, par, par / r.ideal, before, after])
        print(
            table(
                ["AWS", "ideal s", f"{largest} appliances s", "parallel/ideal", "before s", "after s"], rows
            )
        )


def run_luna7(args: argparse.Namespace) -> None:
    if "scaling" not in (args.only or SECTIONS) or "scaling" in args.skip:
        heading("Latency of the simulated appliances")
        scaling.print_latency_table(args.latency)
    sizes = sorted(set([1, *args.luna7_sizes]))
    largest = max(sizes)
    # one after another at the largest size only, unless --full (as the zeroized variant)
    seq_sizes = [] if args.sequential == "none" else sizes if args.full else [largest]
    with make_backend("child", args.sim_processes) as backend:
        results = [
            scaling.measure(
                backend,
                "initialized",
                sizes,
                repeats=args.repeats,
                sequential_sizes=seq_sizes,
                read_seconds=args.latency,
                aws_latency=0.0,
                dialect=dialect,
            )
            for dialect in args.luna7_dialects
        ]
    scaling.print_luna7(results, sizes)


def _cli_generation(generations: list[str]) -> list[str]:
    return ["5.3"] if "5.3" in generations else generations[:1]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sections = [s for s in (args.only or SECTIONS) if s not in args.skip]
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):  # local only: moto, never a real account
        os.environ.pop(name, None)
    started = time.monotonic()
    print(f"# luna-ha benchmarks\n\n{machine()}", flush=True)
    contention = Contention()
    if "scaling" in sections:
        run_scaling(args)
        note(f"\n{contention.report()}")
    if "luna7" in sections:
        contention.report()  # from here
        run_luna7(args)
        note(f"\n{contention.report()}")
    if "operations" in sections:
        with make_backend("child") as backend:
            counts = operations.measure(backend, args.ops_appliances, args.luna7_dialects)
        operations.print_results(counts, args.ops_appliances)
    if "coldstart" in sections:
        contention.report()  # from here
        footprint.print_cold_start(footprint.cold_start(args.coldstart_runs))
        note(f"\n{contention.report()}")
    if "sizes" in sections:
        directory, how = footprint.layer_dir(args.layer_arch, build=not args.no_layer_build)
        layer = footprint.layer_size(directory) if directory is not None else None
        footprint.print_sizes(footprint.function_size(), layer, how)
    if "bootstrap" in sections:
        contention.report()  # from here
        with make_backend("child") as backend:
            members = member_bootstrap.measure(backend, args.members, args.generations)
            cli = (
                []
                if args.no_cli
                else member_bootstrap.measure_cli(backend, args.members, _cli_generation(args.generations))
            )
        member_bootstrap.print_results(members, cli, args.members)
        note(f"\n{contention.report()}")
    note(f"\n(benchmarks took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
