"""Benchmarks: print tables and ratios, never assert on time.

Create of a group on 1, 2, 4, 8 and 16 simulated appliances with per-command latency (reads fast,
login and partition create slower), run with the engine's parallelism and one appliance after
another. The ideal is the one-appliance run: every appliance has the same critical path.

    make bench                # or: .venv/bin/python bench/run.py --sizes 1 2 4 --latency 0.02
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from moto import mock_aws

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.functional.lab import Lab, running_lab

LATENCY = {"hsm login": 4.0, "partition create": 8.0, "client register": 2.0, "client assignPartition": 2.0}


def create_seconds(lab: Lab, members: int, workers: int, physical_id: str) -> tuple[float, int, int]:
    """One Create from scratch: a partition name of its own, so nothing exists yet."""
    partition = "p-" + physical_id.replace("/", "-")
    spec = lab.spec(members=list(range(members)), PartitionName=partition)
    engine = lab.engine()
    engine.max_workers = workers
    started = time.monotonic()
    report = engine.apply(spec, physical_id)
    seconds = time.monotonic() - started
    connections = max(a.connections for a in report.appliances)
    mutating = max(a.mutating for a in report.appliances)
    return seconds, connections, mutating


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per read command")
    args = parser.parse_args()
    # moto only: never a real account
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    unit = args.latency
    latency = {name: factor * unit for name, factor in LATENCY.items()}
    print(f"Create: read latency {unit * 1000:.0f} ms, login/partition create/register x4/x8/x2 that")
    print(
        f"{'appliances':>10} {'parallel s':>11} {'sequential s':>13} {'ideal s':>8} {'par/ideal':>10} "
        f"{'seq/par':>8} {'conn/appl':>10}"
    )
    with mock_aws(), running_lab(max(args.sizes), latency=latency, default_latency=unit) as lab:
        create_seconds(lab, 1, 1, "bench/warm-up")  # first-use costs (imports, moto) are not the ideal
        ideal, _, _ = create_seconds(lab, 1, 1, "bench/ideal")
        for size in args.sizes:
            parallel, connections, _ = create_seconds(lab, size, 16, f"bench/par/{size}")
            sequential, _, _ = create_seconds(lab, size, 1, f"bench/seq/{size}")
            print(
                f"{size:>10} {parallel:>11.2f} {sequential:>13.2f} {ideal:>8.2f} {parallel / ideal:>10.2f} "
                f"{sequential / parallel:>8.2f} {connections:>10}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
