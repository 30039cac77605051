"""``luna-ha demo``: the whole lifecycle on this machine, nothing outside 127.0.0.0/8.

- three simulated Luna SA appliances on 127.0.0.1-3 (two initialized, one zeroized), or Luna
  Network HSM 7 appliances with ``--dialect 7.x`` (7.8, 7.2), each with its REST service;
- moto's server for Secrets Manager and SSM, reached through ``AWS_ENDPOINT_URL``;
- a local CloudFormation that sends real-shaped Create, Update and Delete events to
  ``luna_ha.app.handler`` and receives crhelper's answer over HTTPS on 127.0.0.1 (throwaway CA);
- an ASG member (simulated Luna client tools) that runs ``luna-ha client bootstrap`` after the
  Create and again after a rotation.

The local AWS and CloudFormation are :mod:`luna_ha_lab` (the ``demo`` extra), imported lazily
once :func:`~luna_ha.sim.lab.require_local_aws` has found it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from luna_ha.sim.journal import JournalEntry

LOGICAL_ID = "Group"
PATH = "/luna-ha/payments"

#: Appliance software the demo runs (those of ``luna-ha simulate --dialect``).
DIALECT_CHOICES = ("5.1", "5.4", "6.2", "7.2", "7.8", "7.x")
#: What a Luna 7 step is called in the demo, by its journal name (lunash command or REST request).
LUNA7_STEPS = {
    "service restart": "NTLS restart",
    "partition init": "partition init (lunash)",
    "partition init co": "Crypto Officer init (lunash)",
    "rest partition init": "partition init (REST)",
    "rest co init": "Crypto Officer init (REST)",
    "rest co password": "Crypto Officer's first password change (REST)",
}

# The demo reads its own summary from the simulators; the function's JSON logs and metrics stay quiet.
_QUIET = {"LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true"}


# ``--help`` shows this as written (the module docstring is reStructuredText for the API docs).
DESCRIPTION = """\
The whole lifecycle on this machine, nothing outside 127.0.0.0/8:

  - three simulated Luna SA appliances on 127.0.0.1-3 (two initialized, one zeroized);
    with --dialect 7.x (7.8) or 7.2, Luna Network HSM 7 appliances with their REST
    service: the partitions are initialized and their Crypto Officer's first password
    changed, and the demo shows those steps;
  - moto's server as Secrets Manager and SSM, reached through AWS_ENDPOINT_URL;
  - a local CloudFormation that sends Create, Update and Delete events to the
    provider's Lambda handler and receives its answers over HTTPS on 127.0.0.1;
  - an Auto Scaling group member (simulated Luna client tools) that runs
    'luna-ha client bootstrap' after the Create and again after a rotation.

Needs the local AWS of luna-ha-lab and moto's server, which a plain install does not
bring: pip install 'luna-ha[demo]'.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="luna-ha demo", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds added to every simulated command (default 0)",
    )
    parser.add_argument(
        "--dialect",
        choices=DIALECT_CHOICES,
        default="5.4",
        help="appliance software, as for 'luna-ha simulate' (default 5.4; 7.x is 7.8)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the function's own log lines")
    return parser


def demo_main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    from luna_ha.sim.lab import LabSecrets, require_local_aws

    require_local_aws("demo")
    if not args.verbose:
        for key, value in _QUIET.items():
            os.environ.setdefault(key, value)

    from luna_ha.sim.server import SimulatedAppliance
    from luna_ha_lab.localaws import group_properties, local_aws, seed_secrets

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
            dialect=args.dialect,
        ).start()
        for i in range(3)
    ]
    try:
        with local_aws() as endpoint, tempfile.TemporaryDirectory(prefix="luna-ha-demo-") as tmp:
            print(f"local AWS (moto: Secrets Manager, SSM) at {endpoint}", file=out)
            for a in appliances:
                print(describe(a), file=out)
            seed_secrets(appliances, lab)
            member = _Member(Path(tmp), appliances, lab.partition_password)

            def props(members: int, rotation: int, **extra: Any) -> dict[str, Any]:
                return group_properties(appliances[:members], clients={"web": rotation}, **extra)

            from luna_ha.app import build_handler
            from luna_ha_lab.cloudformation import LocalCloudFormation, LocalStack

            with LocalCloudFormation(
                build_handler(), timeout_seconds=900, environment_factory=build_handler
            ) as cfn:
                print(
                    f"local CloudFormation: stack {cfn.stack_id.split('/')[1]}, responses over HTTPS",
                    file=out,
                )
                stack = LocalStack(cfn)
                step = _Stepper(stack, appliances, out)
                step(
                    "1. Create: partition + client 'web' on two appliances, SSM published",
                    "create",
                    props(2, 0),
                )
                member.bootstrap("2. an ASG member boots: luna-ha client bootstrap", out)
                step(
                    "3. Update with nothing changed (a duplicate, or ServiceTimeout only)",
                    "update",
                    {**props(2, 0), "ServiceTimeout": "1200"},
                    force=True,
                )
                step("4. Update: rotate client 'web' (Rotation 0 -> 1)", "update", props(2, 1))
                member.bootstrap("5. the member re-runs the bootstrap: new certificate, same group", out)
                step("6. Update: add a zeroized appliance with Initialize: true", "update", props(3, 1))
                member.bootstrap("7. the member re-runs the bootstrap: third server, third member", out)
                step(
                    "8. Delete: revoke and delete clients, delete parameters, keep partitions", "delete", None
                )
            kept = [a.hostname for a in appliances if "payments" in a.state.partitions]
            print(
                f"\npartition 'payments' kept (PartitionDeletionPolicy: Retain) on: {', '.join(kept)}",
                file=out,
            )
            print(f"demo finished in {time.monotonic() - started:.1f} s", file=out)
    finally:
        for a in appliances:
            a.stop()
    return 0


def describe(appliance: Any) -> str:
    """One line per appliance: where it listens, its state and software (and REST port on 7.x)."""
    state = appliance.state
    status = "zeroized" if state.zeroized else "initialized"
    software = state.dialect.software_version
    rest = f", REST on port {appliance.rest_port}" if appliance.rest_service is not None else ""
    return (
        f"appliance {appliance.hostname} at {appliance.host}:{appliance.port} ({status}, HSM serial "
        f"{appliance.serial}, software {software}{rest})"
    )


class _Stepper:
    """Runs one stack operation and prints what it did: answers, commands per appliance, Data."""

    def __init__(self, stack: Any, appliances: Sequence[Any], out: TextIO) -> None:
        self.stack, self.appliances, self.out = stack, appliances, out

    def __call__(self, title: str, action: str, props: dict[str, Any] | None, **options: Any) -> None:
        print(f"\n== {title}", file=self.out)
        marks = [a.journal.mark() for a in self.appliances]
        if action == "delete":
            operation = self.stack.delete(LOGICAL_ID)
        else:
            operation = getattr(self.stack, action)(LOGICAL_ID, props, **options)
        for exchange in operation.exchanges:
            response = exchange.response
            if response is None:
                print(f"  {exchange.phase}: no answer", file=self.out)
                continue
            reason = f" ({response.reason})" if response.reason else ""
            print(f"  {exchange.phase}: {response.status} in {response.seconds:.2f} s{reason}", file=self.out)
        for appliance, mark in zip(self.appliances, marks, strict=True):
            received = appliance.journal.since(mark)
            entries = [e for e in received if e.kind in ("command", "scp")]
            requests = [e for e in received if e.kind == "rest"]
            if not entries and not requests:
                continue
            mutating = sum(1 for e in entries if e.mutating)
            line = f"  {appliance.host}: {len(entries)} command(s), {mutating} mutating"
            if requests:
                changes = sum(1 for e in requests if e.mutating)
                line += f"; {len(requests)} REST request(s), {changes} mutating"
            print(line, file=self.out)
            steps = [LUNA7_STEPS[e.command] for e in received if e.command in LUNA7_STEPS and _succeeded(e)]
            if steps:
                print(f"    Luna 7: {', '.join(steps)}", file=self.out)
        last = operation.exchanges[-1].response if operation.exchanges else None
        if last is not None and last.data:
            for key, value in last.data.items():
                print(f"  {key}: {value}", file=self.out)
        print(f"  stack: {operation.outcome}", file=self.out)


def luna7_partitions(shown: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """What the member's client reads from each Luna 7 appliance (``partitions_json``): serial,
    label, and what a Crypto Officer login meets there (``ready`` once the provider is done)."""
    return [
        f"  {host} shows the member partition {serial} '{p['label']}', Crypto Officer login: {p['login']}"
        for host, partitions in shown.items()
        for serial, p in partitions.items()
        if p.get("family", 5) >= 7
    ]


def _succeeded(entry: JournalEntry) -> bool:
    """A journal entry that ran to success: lunash result 0, or an HTTP 2xx answer to a REST request."""
    if entry.result is None:
        return False
    return 200 <= entry.result < 300 if entry.kind == "rest" else entry.result == 0


class _Member:
    """One ASG member: a simulated Luna client install (5.3; the 10.x client, generation 7, in front
    of Luna 7 appliances) that runs the real bootstrap CLI."""

    def __init__(self, root: Path, appliances: Sequence[Any], partition_password: str) -> None:
        from luna_ha.sim.client_tools import install_simulated_client

        self.appliances = appliances
        self.luna_root = root / "usr/safenet/lunaclient"
        generation = "7" if any(a.state.family == 7 for a in appliances) else "5.3"
        self.config = install_simulated_client(
            self.luna_root, generation, config_path=root / "etc/Chrystoki.conf"
        )
        self.env_file = root / "etc/luna-ha.env"
        self._password = partition_password

    def bootstrap(self, title: str, out: TextIO) -> None:
        from luna_ha.client.cli import bootstrap_main
        from luna_ha.sim.client_tools import partitions_json

        print(f"\n== {title}", file=out)
        # the simulated tools have no NTLS: tell them what each appliance's partitions are now
        # (serial, label, and, on Luna 7, what a Crypto Officer login would meet)
        shown = partitions_json({a.host: a.state for a in self.appliances})
        for line in luna7_partitions(json.loads(shown)):
            print(line, file=out)
        os.environ["LUNA_HA_SIM_PARTITIONS"] = shown
        os.environ["LUNA_HA_SIM_PASSWORD"] = self._password
        try:
            argv = [
                "--parameter-path",
                PATH,
                "--client",
                "web",
                "--luna-root",
                str(self.luna_root),
                "--config",
                str(self.config),
                "--env-file",
                str(self.env_file),
            ]
            status = bootstrap_main(argv, out=out)
        finally:
            os.environ.pop("LUNA_HA_SIM_PASSWORD", None)
        if status != 0:
            raise SystemExit(f"the member's bootstrap failed (exit {status})")
        print(f"  {self.env_file.name}: " + " ".join(self.env_file.read_text().split()), file=out)
