"""``luna-ha demo``: the whole lifecycle on this machine, nothing outside 127.0.0.0/8.

Simulated Luna SA appliances on loopback addresses, moto's server for Secrets Manager and SSM
(reached through ``AWS_ENDPOINT_URL``, exactly as a real endpoint would be), and the same engine
and report printing the CLI uses: plan, create, a no-op re-run, a client rotation, a new (zeroized)
appliance initialized and added, and destroy.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from luna_ha.cli import build_engine, print_report
from luna_ha.engine import RunReport
from luna_ha.spec import GroupSpec, parse_properties

DEMO_ID = "luna-ha-demo/payments"


def demo_main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="luna-ha demo", description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every simulated command")
    args = parser.parse_args(argv)
    out = out or sys.stdout

    import boto3

    from luna_ha.sim.localaws import LabSecrets, group_properties, local_aws, seed_secrets
    from luna_ha.sim.server import SimulatedAppliance

    lab = LabSecrets.generate()
    started = time.monotonic()
    appliances = [
        SimulatedAppliance(
            host=f"127.0.0.{i + 1}",
            hostname=f"luna-sim-{i + 1:02d}",
            initialized=i < 2,
            admin_password=lab.admin_password if i < 2 else None,
            domain=lab.domain if i < 2 else None,
            default_latency=args.latency,
        ).start()
        for i in range(3)
    ]
    try:
        with local_aws() as endpoint:
            print(f"local AWS (moto: Secrets Manager, SSM) at {endpoint}", file=out)
            for a in appliances:
                state = "zeroized" if a.state.zeroized else "initialized"
                print(
                    f"appliance {a.hostname} at {a.host}:{a.port} ({state}, HSM serial {a.serial})", file=out
                )
            seed_secrets(appliances, lab)

            def spec(members: int, rotation: int) -> GroupSpec:
                return parse_properties(group_properties(appliances[:members], clients={"web": rotation}))

            steps: list[tuple[str, str, GroupSpec]] = [
                ("plan", "1. plan: what Create would do (changes nothing)", spec(2, 0)),
                ("apply", "2. create: partition + client on two appliances, publish to SSM", spec(2, 0)),
                ("apply", "3. the same again: nothing to do, no mutating command", spec(2, 0)),
                (
                    "apply",
                    "4. rotate client 'web' (Rotation 0 -> 1): new generation, previous kept",
                    spec(2, 1),
                ),
                ("apply", "5. add a zeroized appliance with Initialize: true", spec(3, 1)),
                (
                    "destroy",
                    "6. destroy: revoke and delete clients, delete parameters, keep partitions",
                    spec(3, 1),
                ),
            ]
            for operation, title, group in steps:
                print(f"\n== {title}", file=out)
                engine = build_engine(group, out)
                report: RunReport
                if operation == "plan":
                    report = engine.plan(group, DEMO_ID)
                elif operation == "apply":
                    report = engine.apply(group, DEMO_ID)
                else:
                    report = engine.destroy(group, DEMO_ID)
                print_report(report, out)
                names = _parameter_names(boto3.client("ssm"), group.parameter_path)
                print(f"  SSM under {group.parameter_path}: {len(names)} parameter(s)", file=out)
            kept = [a.hostname for a in appliances if "payments" in a.state.partitions]
            print(f"\npartition 'payments' kept (Retain) on: {', '.join(kept)}", file=out)
            print(f"demo finished in {time.monotonic() - started:.1f} s", file=out)
    finally:
        for a in appliances:
            a.stop()
    return 0


def _parameter_names(ssm: object, path: str) -> list[str]:
    names: list[str] = []
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True):  # type: ignore[attr-defined]
        names += [p["Name"] for p in page["Parameters"]]
    return names
