"""The ``luna-ha`` command: plan / apply / destroy / status of a group from a file, simulate, demo.

A composition root: it builds the real adapters (boto3 clients from the standard credential chain
and ``AWS_ENDPOINT_URL``, paramiko sessions) and hands them to the engine.

Conventions (README, "The CLI"): the result goes to standard output (text, or one JSON document
with ``--output json``), progress, warnings and errors to standard error; the exit status is 0 on
success, 1 on failure, 2 on a usage error and 3 when changes are pending (``plan``) or drift was
found (``status``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError

from luna_ha import compose
from luna_ha.awsenv import check_aws_setup, honour_aws_region
from luna_ha.awsenv import describe as describe_aws_error
from luna_ha.clock import Deadline
from luna_ha.drift import Drift, spec_from_document
from luna_ha.engine import Engine, GroupRunError, RunReport
from luna_ha.errors import LunaHAError
from luna_ha.layout import check_path, find_document
from luna_ha.spec import GroupSpec, load_group_file

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CHANGES = 0, 1, 2, 3
GROUP_COMMANDS = ("plan", "apply", "destroy", "status")
# The version of the document ``--output json`` prints; bumped on any change that is not an addition.
JSON_SCHEMA = 1
EXIT_STATUS_TEXT = (
    "exit status: 0 success (plan: nothing to do; status: in sync); 1 failure; 2 usage error; "
    "3 plan: changes pending, status: drift found"
)


def distribution_version() -> str:
    """The installed distribution's version (``unknown`` when run from a tree that is not installed,
    as in the Lambda function)."""
    try:
        return importlib.metadata.version("luna-ha")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def cli_physical_id(spec: GroupSpec) -> str:
    """The identity a group managed from the CLI owns its registrations and parameters under."""
    return f"luna-ha-cli/{spec.partition_name}"


def build_engine(out: TextIO, table: str | None = None) -> Engine:
    """The engine with real adapters, printing each appliance's progress as one whole line."""
    lock = threading.Lock()

    def progress(host: str, message: str) -> None:
        with lock:  # appliances report from their own threads
            out.write(f"  [{host}] {message}\n")
            out.flush()

    return compose.build_engine(progress, table=table)


def print_report(report: RunReport, out: TextIO, drift: Sequence[Drift] | None = None) -> None:
    outcome = "ok" if report.ok else "FAILED"
    if drift is not None and report.ok:
        outcome = f"{len(drift)} difference(s)" if drift else "in sync"
    print(f"\n{report.operation}: {outcome} in {report.seconds:.1f} s", file=out)
    for a in report.appliances:
        role = "leaving" if a.leaving else "member"
        role = f"{role}, {a.software}" if a.software else role
        status = "ok" if a.ok else f"FAILED: {a.error}"
        if a.skipped:
            status = f"skipped: {a.skipped}"
        if report.operation in ("plan", "status"):
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
    if report.operation in ("plan", "status") and report.ok:
        print(
            f"  parameters: {len(report.parameters_to_put)} to write, "
            f"{len(report.parameters_to_delete)} to delete",
            file=out,
        )
        for name in report.parameters_to_put:
            print(f"      + {name}", file=out)
        for name in report.parameters_to_delete:
            print(f"      - {name}", file=out)
    for key, value in report.data.items():
        print(f"  {key}: {value}", file=out)
    if drift:
        print("  differences:", file=out)
        for item in drift:
            print(f"      {item}", file=out)


def changes_pending(report: RunReport) -> bool:
    """Whether a successful ``plan`` found work for ``apply``: on an appliance or in Parameter Store."""
    return report.operation == "plan" and bool(
        any(a.planned for a in report.appliances) or report.parameters_to_put or report.parameters_to_delete
    )


def exit_status(report: RunReport, drift: Sequence[Drift] | None = None) -> int:
    if not report.ok:
        return EXIT_FAILED
    return EXIT_CHANGES if changes_pending(report) or drift else EXIT_OK


def report_document(
    report: RunReport, spec: GroupSpec, physical_id: str, drift: Sequence[Drift] | None = None
) -> dict[str, Any]:
    """What ``--output json`` prints (schema in README.md, "The CLI"). Names, counts and error
    messages only: no parameter value, no certificate, no secret."""
    reads = report.operation in ("plan", "status")
    changed = bool(
        report.parameters_put or report.parameters_deleted or any(a.done for a in report.appliances)
    )
    return {
        "schema": JSON_SCHEMA,
        "version": distribution_version(),
        "operation": report.operation,
        "ok": report.ok,
        "changes_pending": changes_pending(report) if report.operation == "plan" else None,
        "changed": changed,
        "group": {
            "label": spec.group_label,
            "partition": spec.partition_name,
            "parameter_path": spec.parameter_path,
            "id": physical_id,
        },
        "seconds": round(report.seconds, 3),
        "appliances": [
            {
                "host": a.host,
                "role": "leaving" if a.leaving else "member",
                "software": a.software,
                "ok": a.ok,
                "error": None if a.error is None else str(a.error),
                "skipped": a.skipped,
                "planned": [str(step) for step in a.planned],
                "done": [str(step) for step in a.done],
                "partition_serial": a.partition_serial,
                "commands": a.commands,
                "mutating": a.mutating,
                "seconds": round(a.seconds, 3),
            }
            for a in report.appliances
        ],
        "parameters": {"written": list(report.parameters_put), "deleted": list(report.parameters_deleted)},
        "parameters_planned": (
            {"put": list(report.parameters_to_put), "delete": list(report.parameters_to_delete)}
            if reads and report.ok
            else None
        ),
        "in_sync": (report.ok and not drift) if report.operation == "status" else None,
        "drift": (
            [{"kind": d.kind.name.lower(), "subject": d.subject, "detail": d.detail} for d in drift]
            if drift is not None
            else None
        ),
        "data": dict(report.data),
        "warnings": list(spec.warnings),
    }


def _confirm_destroy(spec: GroupSpec, physical_id: str, err: TextIO, stdin: TextIO) -> bool:
    """Terraform's rule: on a terminal ask, and only ``yes`` approves; elsewhere ``--yes`` must."""
    if not stdin.isatty():
        print("error: destroy changes appliances: pass --yes to approve without a terminal", file=err)
        return False
    partitions = (
        "and delete its partition"
        if spec.partition_deletion_policy == "Delete"
        else "(partitions are kept: PartitionDeletionPolicy Retain)"
    )
    print(
        f"destroy {spec.group_label}: revoke and delete the clients of {physical_id} on "
        f"{len(spec.appliances)} appliance(s) {partitions}, and delete its parameters under "
        f"{spec.parameter_path}.",
        file=err,
    )
    err.write("Only 'yes' will be accepted to approve: ")
    err.flush()
    if stdin.readline().strip() == "yes":
        return True
    print("destroy cancelled: nothing was changed", file=err)
    return False


def _published_spec(path: str) -> tuple[GroupSpec, str]:
    """``status --parameter-path``: the declaration the group document under ``path`` records, and
    its owner (the physical id of the stack's resource, or a CLI identity)."""
    from luna_ha.store import ParameterStore

    document = find_document(ParameterStore(compose.ssm_client()).read(path), path)
    if document is None:
        raise LunaHAError(f"{path}/group: no readable group document (nothing published there?)")
    return spec_from_document(document, path), document.owner


def _group_command(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    published_path = getattr(args, "parameter_path", None)
    if published_path:
        check_aws_setup()
        spec, owner = _published_spec(published_path)
    else:
        spec, owner = load_group_file(args.config), ""
    for warning in spec.warnings:
        print(f"warning: {warning}", file=err)
    check_aws_setup()
    physical_id = args.id or owner or cli_physical_id(spec)
    if args.command == "destroy" and not args.yes and not _confirm_destroy(spec, physical_id, err, stdin):
        return EXIT_FAILED
    engine = build_engine(err, args.table)
    deadline = Deadline.after(args.timeout) if args.timeout else Deadline.never()
    if args.output == "text":
        print(
            f"{args.command} {spec.group_label} ({len(spec.appliances)} appliance(s), id {physical_id})",
            file=out,
        )
    drift: tuple[Drift, ...] | None = None
    try:
        if args.command == "plan":
            report = engine.plan(spec, physical_id, deadline=deadline)
        elif args.command == "status":
            report, drift = engine.status(spec, physical_id, deadline=deadline)
        elif args.command == "apply":
            moved_from = getattr(args, "moved_from", None)
            previous = replace(spec, parameter_path=moved_from) if moved_from else None
            report = engine.apply(spec, physical_id, previous=previous, deadline=deadline)
        else:
            report = engine.destroy(spec, physical_id, deadline=deadline)
    except GroupRunError as exc:
        report = exc.report
    if args.output == "json":
        print(json.dumps(report_document(report, spec, physical_id, drift), indent=2), file=out)
    else:
        print_report(report, out, drift)
    return exit_status(report, drift)


def _parameter_path(text: str) -> str:
    try:
        return check_path(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="luna-ha", description="Luna HSM HA groups as code.", epilog=EXIT_STATUS_TEXT
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {distribution_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("plan", "show, per appliance, what apply would do (changes nothing)"),
        ("apply", "converge every appliance and publish the group to Parameter Store"),
        ("destroy", "remove this group's clients and parameters (partitions only under Delete policy)"),
        (
            "status",
            "compare every appliance and the parameters with the declaration and the group document, "
            "and name each difference (changes nothing)",
        ),
    ):
        p = sub.add_parser(name, help=text, description=text, epilog=EXIT_STATUS_TEXT)
        if name == "status":
            source = p.add_mutually_exclusive_group(required=True)
            source.add_argument("-c", "--config", help="group file (YAML or JSON, resource property keys)")
            source.add_argument(
                "--parameter-path",
                metavar="PATH",
                type=_parameter_path,
                help="a deployed group's ParameterPath: its members and clients as its group document "
                "records them (and its owner as --id)",
            )
        else:
            p.add_argument(
                "-c", "--config", required=True, help="group file (YAML or JSON, resource property keys)"
            )
        p.add_argument(
            "--id",
            help="identity owning registrations and parameters (default luna-ha-cli/<Partition>; "
            "status --parameter-path: the group document's owner)",
        )
        p.add_argument(
            "--timeout", type=float, default=0, help="seconds; start no step that cannot finish in time"
        )
        p.add_argument(
            "--table",
            help="the coordination table (DynamoDB) shared with the provider and other runs "
            "(default: $LUNA_HA_TABLE)",
        )
        p.add_argument(
            "--output",
            choices=("text", "json"),
            default="text",
            help="text (default) or one JSON document (schema in the README) on standard output",
        )
        if name == "apply":
            p.add_argument(
                "--moved-from",
                metavar="PATH",
                type=_parameter_path,
                help="the ParameterPath the group was applied with before you changed it: its client "
                "keys move to the new path (no re-registration) and its parameters there are deleted",
            )
        if name == "destroy":
            p.add_argument(
                "-y",
                "--yes",
                action="store_true",
                help="approve without asking; required when standard input is not a terminal",
            )
    sim = sub.add_parser("simulate", help="run simulated Luna appliances on 127.0.0.1", add_help=False)
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    demo = sub.add_parser(
        "demo", help="the whole lifecycle locally: simulated appliances + moto", add_help=False
    )
    demo.add_argument("rest", nargs=argparse.REMAINDER)
    client = sub.add_parser(
        "client",
        help="on an ASG member: luna-ha client bootstrap --parameter-path ...",
        description=("Commands for an Auto Scaling group member's Luna client."),
    )
    client_sub = client.add_subparsers(dest="client_command", required=True, metavar="{bootstrap}")
    bootstrap = client_sub.add_parser(
        "bootstrap",
        help="configure this Luna client from the group's parameters (luna-ha client bootstrap --help)",
        add_help=False,
    )
    bootstrap.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _dispatch(argv: list[str], out: TextIO, err: TextIO, stdin: TextIO) -> int:
    # These own their options: hand them everything after their name.
    if argv[:1] == ["simulate"]:
        from luna_ha.sim.cli import simulate_main

        return int(simulate_main(argv[1:]))
    if argv[:2] == ["client", "bootstrap"]:
        from luna_ha.client.cli import bootstrap_main

        return int(bootstrap_main(argv[2:]))
    if argv[:1] == ["demo"]:
        from luna_ha.demo import demo_main

        return int(demo_main(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in GROUP_COMMANDS:  # pragma: no cover - every other command returned above
        parser.print_usage(err)
        return EXIT_USAGE
    return _group_command(args, out, err, stdin)


def main(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    *,
    err: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """``luna-ha ...``; returns the exit status (see :data:`EXIT_STATUS_TEXT`)."""
    out = out or sys.stdout
    err = err or sys.stderr
    stdin = stdin or sys.stdin
    argv = list(sys.argv[1:] if argv is None else argv)
    honour_aws_region()
    try:
        return _dispatch(argv, out, err, stdin)
    except SystemExit as exc:  # argparse (--help, --version, usage errors) or a message to show
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or EXIT_OK
        print(f"error: {exc.code}", file=err)
        return EXIT_FAILED
    except LunaHAError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    except BotoCoreError as exc:  # an endpoint that cannot be reached, ...: one line, no traceback
        print(f"error: {describe_aws_error(exc)}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
