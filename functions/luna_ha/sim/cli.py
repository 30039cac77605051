"""``luna-ha simulate``: simulated Luna appliances (Luna SA 5.x/6.x, Luna Network HSM 7.x) on loopback.

Appliance i listens on 127.0.0.<i>, so each is a distinct ``Host``. All of them share one HSM Admin
password and cloning domain, as the members of an HA group must. Prints, per appliance, what a
group file needs (host, port, host key line, fingerprint) and the simulator's own generated
credentials. Printing them is the point of this local test tool; nothing else does.

With ``--aws`` it also runs moto's server on 127.0.0.1, creates the secrets a group needs there,
writes a ready group file (``--group-file``), and prints the ``export`` lines that point the CLI
at it: ``luna-ha apply -c group.yaml`` then works in another terminal. That needs the ``demo``
extra (:mod:`luna_ha_lab` and moto), which a plain install does not bring.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import TextIO

import yaml

from luna_ha.sim.lab import LabSecrets, require_local_aws
from luna_ha.sim.server import SimulatedAppliance, start_appliances, stop_appliances


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="luna-ha simulate",
        description=(
            "Run simulated Luna appliances (Luna SA 5.x/6.x or Luna Network HSM 7.x) on 127.0.0.1 "
            "until Ctrl-C."
        ),
    )
    parser.add_argument("-n", "--count", type=int, default=1, help="number of appliances (1-64, default 1)")
    parser.add_argument(
        "--port-base", type=int, help="appliance i listens on PORT_BASE+i (default: ephemeral)"
    )
    parser.add_argument(
        "--zeroized", action="store_true", help="start with zeroized HSMs (default: initialized)"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, metavar="SECONDS", help="delay of every command"
    )
    parser.add_argument(
        "--dialect",
        choices=("5.1", "5.4", "6.2", "7.2", "7.8", "7.x"),
        default="5.4",
        help="appliance software",
    )
    parser.add_argument(
        "--aws", action="store_true", help="also run local AWS (moto) with the group's secrets in it"
    )
    parser.add_argument(
        "--group-file",
        default="group.yaml",
        help="with --aws: where to write the group file (default group.yaml)",
    )
    return parser


def describe(appliance: SimulatedAppliance, index: int) -> str:
    state = appliance.state
    status = "zeroized" if state.zeroized else f"initialized, label {state.label}"
    lines = [
        f"[{index}] {appliance.hostname}  (HSM serial {state.serial}, {status})",
        f"    host:         {appliance.host}",
        f"    port:         {appliance.port}",
        f"    host key:     {appliance.host_key_line}",
        f"    fingerprint:  {appliance.host_key_fingerprint}",
        f"    username:     {appliance.username}",
        f"    password:     {appliance.password}",
    ]
    if appliance.rest_service is not None:
        lines += [
            f"    REST port:    {appliance.rest_port}",
            f"    REST pin:     {appliance.rest_certificate_fingerprint}",
        ]
    if not state.zeroized:
        lines += [
            f"    HSM Admin password: {state.admin_password}",
            f"    cloning domain:     {state.domain}",
        ]
    return "\n".join(lines)


def wait_for_interrupt() -> None:
    """Block until Ctrl-C (replaced in tests)."""
    threading.Event().wait()


def simulate_main(argv: list[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the simulator; returns the exit status (2 for bad arguments, as argparse does)."""
    out = out or sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not 1 <= args.count <= 64:
            parser.error("--count must be between 1 and 64")
        if args.latency < 0:
            parser.error("--latency must not be negative")
        if args.port_base is not None and not 1 <= args.port_base <= 65535 - args.count:
            parser.error("--port-base leaves no room for the appliances")
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.aws:
        require_local_aws("simulate --aws")
    lab = LabSecrets.generate()
    try:
        appliances = start_appliances(
            args.count,
            port_base=args.port_base,
            distinct_hosts=True,
            initialized=not args.zeroized,
            admin_password=None if args.zeroized else lab.admin_password,
            domain=None if args.zeroized else lab.domain,
            default_latency=args.latency,
            dialect=args.dialect,
        )
    except OSError as problem:
        print(f"luna-ha simulate: cannot listen: {problem}", file=sys.stderr)
        return 1
    try:
        print("Simulated Luna appliances on loopback (Ctrl-C to stop):\n", file=out)
        for index, appliance in enumerate(appliances, 1):
            print(describe(appliance, index) + "\n", file=out)
        if args.aws:
            # the lab is an extra (require_local_aws checked it is installed)
            from luna_ha_lab.localaws import environment, group_properties, local_aws, seed_secrets

            with local_aws() as endpoint:
                seed_secrets(appliances, lab)
                Path(args.group_file).write_text(
                    yaml.safe_dump(group_properties(appliances), sort_keys=False)
                )
                print(
                    f"Local AWS (moto: Secrets Manager, SSM) at {endpoint}; group file: {args.group_file}",
                    file=out,
                )
                print("In another terminal:\n", file=out)
                for key, value in environment(endpoint).items():
                    print(f"  export {key}={value}", file=out)
                print(
                    f"  luna-ha plan -c {args.group_file}\n  luna-ha apply -c {args.group_file}\n", file=out
                )
                out.flush()
                wait_for_interrupt()
        else:
            out.flush()
            wait_for_interrupt()
    except KeyboardInterrupt:
        print("Stopping.", file=out)
    finally:
        stop_appliances(appliances)
    return 0
