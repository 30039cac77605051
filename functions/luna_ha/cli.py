"""The ``luna-ha`` command: plan / apply / destroy a group from a file, simulate, demo.

A composition root: it builds the real adapters (boto3 clients from the standard credential chain
and ``AWS_ENDPOINT_URL``, paramiko sessions) and hands them to the engine.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import TextIO

from luna_ha import compose
from luna_ha.clock import Deadline
from luna_ha.engine import Engine, GroupRunError, RunReport
from luna_ha.errors import LunaHAError
from luna_ha.layout import check_path
from luna_ha.spec import GroupSpec, load_group_file

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def cli_physical_id(spec: GroupSpec) -> str:
    """The identity a group managed from the CLI owns its registrations and parameters under."""
    return f"luna-ha-cli/{spec.partition_name}"


def build_engine(spec: GroupSpec, out: TextIO, table: str | None = None) -> Engine:
    """The engine with real adapters, printing each appliance's progress as one whole line."""
    lock = threading.Lock()

    def progress(host: str, message: str) -> None:
        with lock:  # appliances report from their own threads
            out.write(f"  [{host}] {message}\n")
            out.flush()

    return compose.build_engine(spec, progress, table=table)


def print_report(report: RunReport, out: TextIO) -> None:
    print(f"\n{report.operation}: {'ok' if report.ok else 'FAILED'} in {report.seconds:.1f} s", file=out)
    for a in report.appliances:
        role = "leaving" if a.leaving else "member"
        status = "ok" if a.ok else f"FAILED: {a.error}"
        if a.skipped:
            status = f"skipped: {a.skipped}"
        if report.operation == "plan":
            print(f"  {a.host} ({role}): {len(a.planned)} step(s) to run; {status}", file=out)
            for step in a.planned:
                print(f"      - {step}", file=out)
        else:
            print(
                f"  {a.host} ({role}): {len(a.done)} change(s), {a.commands} command(s) "
                f"({a.mutating} mutating), {a.seconds:.2f} s; {status}",
                file=out,
            )
    if report.parameters_put or report.parameters_deleted:
        print(
            f"  parameters: {len(report.parameters_put)} written, {len(report.parameters_deleted)} deleted",
            file=out,
        )
    for key, value in report.data.items():
        print(f"  {key}: {value}", file=out)


def _group_command(args: argparse.Namespace, out: TextIO) -> int:
    spec = load_group_file(args.config)
    for warning in spec.warnings:
        print(f"warning: {warning}", file=out)
    engine = build_engine(spec, out, getattr(args, "table", None))
    physical_id = args.id or cli_physical_id(spec)
    deadline = Deadline.after(args.timeout) if args.timeout else Deadline.never()
    print(
        f"{args.command} {spec.group_label} ({len(spec.appliances)} appliance(s), id {physical_id})", file=out
    )
    try:
        if args.command == "plan":
            report = engine.plan(spec, physical_id, deadline=deadline)
        elif args.command == "apply":
            moved_from = getattr(args, "moved_from", None)
            previous = replace(spec, parameter_path=moved_from) if moved_from else None
            report = engine.apply(spec, physical_id, previous=previous, deadline=deadline)
        else:
            report = engine.destroy(spec, physical_id, deadline=deadline)
    except GroupRunError as exc:
        print_report(exc.report, out)
        return EXIT_FAILED
    print_report(report, out)
    return EXIT_OK


def _parameter_path(text: str) -> str:
    try:
        return check_path(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="luna-ha", description="Luna HSM HA groups as code.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("plan", "show, per appliance, what apply would do (changes nothing)"),
        ("apply", "converge every appliance and publish the group to Parameter Store"),
        ("destroy", "remove this group's clients and parameters (partitions only under Delete policy)"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument(
            "-c", "--config", required=True, help="group file (YAML or JSON, resource property keys)"
        )
        p.add_argument(
            "--id", help="identity owning registrations and parameters (default luna-ha-cli/<Partition>)"
        )
        p.add_argument(
            "--timeout", type=float, default=0, help="seconds; start no step that cannot finish in time"
        )
        p.add_argument(
            "--table",
            help="the coordination table (DynamoDB) shared with the provider and other runs "
            "(default: $LUNA_HA_TABLE)",
        )
        if name == "apply":
            p.add_argument(
                "--moved-from",
                metavar="PATH",
                type=_parameter_path,
                help="the ParameterPath the group was applied with before you changed it: its client "
                "keys move to the new path (no re-registration) and its parameters there are deleted",
            )
    sim = sub.add_parser("simulate", help="run simulated Luna appliances on 127.0.0.1", add_help=False)
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    demo = sub.add_parser(
        "demo", help="the whole lifecycle locally: simulated appliances + moto", add_help=False
    )
    demo.add_argument("rest", nargs=argparse.REMAINDER)
    client = sub.add_parser(
        "client", help="on an ASG member: 'luna-ha client bootstrap --parameter-path ...'"
    )
    client.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # These two own their options: hand them everything after their name.
        if argv[:1] == ["simulate"]:
            from luna_ha.sim.cli import simulate_main

            return int(simulate_main(argv[1:]))
        if argv[:2] == ["client", "bootstrap"]:
            from luna_ha.client.cli import bootstrap_main

            return int(bootstrap_main(argv[2:]))
        if argv[:1] == ["demo"]:
            from luna_ha.demo import demo_main

            return int(demo_main(argv[1:]))
        args = build_parser().parse_args(argv)
        return _group_command(args, out)
    except LunaHAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
