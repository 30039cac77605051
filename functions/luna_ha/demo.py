"""``luna-ha demo``: the whole lifecycle on this machine, nothing outside 127.0.0.0/8.

Simulated Luna SA appliances on loopback addresses, moto's server for Secrets Manager and SSM
(reached through ``AWS_ENDPOINT_URL``, exactly as a real endpoint would be), and the same engine
and report printing the CLI uses: plan, create, a no-op re-run, a client rotation, a new (zeroized)
appliance initialized and added, and destroy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from luna_ha.cli import build_engine, print_report
from luna_ha.engine import RunReport
from luna_ha.spec import GroupSpec, parse_properties

DEMO_ID = "luna-ha-demo/payments"


@contextmanager
def local_aws() -> Iterator[str]:
    """moto's server on 127.0.0.1 with dummy credentials; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log lines in the demo
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
)


def _appliance(a: Any, **extra: Any) -> dict[str, Any]:
    return {
        "Host": a.host,
        "Port": a.port,
        "HostKey": a.host_key_line,
        "ManagerSecretArn": f"luna/manager/{a.hostname}",
        **extra,
    }


def demo_main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="luna-ha demo", description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every simulated command")
    args = parser.parse_args(argv)
    out = out or sys.stdout

    import boto3

    from luna_ha.sim.server import SimulatedAppliance

    admin_password, domain, partition_password = (secrets.token_urlsafe(12) for _ in range(3))
    started = time.monotonic()
    appliances = [
        SimulatedAppliance(
            host=f"127.0.0.{i + 1}",
            hostname=f"luna-sim-{i + 1:02d}",
            initialized=i < 2,
            admin_password=admin_password if i < 2 else None,
            domain=domain if i < 2 else None,
            default_latency=args.latency,
        ).start()
        for i in range(3)
    ]
    try:
        with local_aws() as endpoint:
            print(f"moto (Secrets Manager, SSM) at {endpoint}", file=out)
            for a in appliances:
                state = "initialized" if a.state.initialized else "zeroized"
                print(f"appliance {a.hostname} at {a.host}:{a.port} ({state}, serial {a.serial})", file=out)
            sm = boto3.client("secretsmanager")
            sm.create_secret(
                Name="luna/admin", SecretString=json.dumps({"password": admin_password, "domain": domain})
            )
            sm.create_secret(Name="luna/partition", SecretString=json.dumps({"password": partition_password}))
            for a in appliances:
                sm.create_secret(
                    Name=f"luna/manager/{a.hostname}",
                    SecretString=json.dumps({"username": a.username, "password": a.password}),
                )

            def spec(members: int, rotation: int) -> GroupSpec:
                members_props = [_appliance(a) for a in appliances[:2]]
                if members == 3:
                    members_props.append(_appliance(appliances[2], Initialize=True, HsmLabel="luna-sim-03"))
                return parse_properties(
                    {
                        "GroupLabel": "payments-ha",
                        "PartitionName": "payments",
                        "AdminSecretArn": "luna/admin",
                        "PartitionSecretArn": "luna/partition",
                        "Appliances": members_props,
                        "Clients": [{"Name": "web", "Rotation": rotation}],
                    }
                )

            steps: list[tuple[str, str, GroupSpec]] = [
                ("plan", "1. plan: what Create would do (changes nothing)", spec(2, 0)),
                ("apply", "2. create: partition + client on two appliances, publish to SSM", spec(2, 0)),
                ("apply", "3. the same again: nothing to do, no mutating command", spec(2, 0)),
                ("apply", "4. rotate client 'web' (Rotation 0 -> 1)", spec(2, 1)),
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
                if operation == "apply":
                    names = sorted(_parameter_names(group.parameter_path))
                    print(f"  SSM under {group.parameter_path}: {len(names)} parameter(s)", file=out)
            print(f"\ndemo finished in {time.monotonic() - started:.1f} s", file=out)
    finally:
        for a in appliances:
            a.stop()
    return 0


def _parameter_names(path: str) -> list[str]:
    import boto3

    names: list[str] = []
    for page in (
        boto3.client("ssm").get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True)
    ):
        names += [p["Name"] for p in page["Parameters"]]
    return names
