"""``luna-ha client bootstrap``: configure this ASG member's Luna client from Parameter Store.

A composition root: boto3 clients from the standard credential chain (``AWS_ENDPOINT_URL`` and the
instance role are honoured by boto3 itself, ``AWS_REGION`` by :mod:`luna_ha.awsenv`), the client
tools of the installation found (or named) here, then :func:`luna_ha.client.bootstrap.bootstrap`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from botocore.exceptions import BotoCoreError

from luna_ha.awsenv import describe as describe_aws_error
from luna_ha.awsenv import honour_aws_region
from luna_ha.client.bootstrap import BootstrapReport, bootstrap
from luna_ha.client.tools import (
    DEFAULT_TIMEOUT,
    GENERATIONS,
    ClientTools,
    detect_generation,
    generation_named,
)
from luna_ha.errors import ClientToolError, LunaHAError

__all__ = ["bootstrap_main", "build_bootstrap_parser", "print_bootstrap_report"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = Path("/etc/Chrystoki.conf")
DEFAULT_ENV_FILE = Path("/etc/luna-ha.env")


def build_bootstrap_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="luna-ha client bootstrap",
        description="Configure this Luna client (certificates, servers, HA group) from SSM parameters.",
    )
    parser.add_argument(
        "--parameter-path", required=True, help="the group's ParameterPath, e.g. /luna-ha/payments"
    )
    parser.add_argument("--client", help="client name (default: the only client published)")
    parser.add_argument(
        "--luna-root",
        type=Path,
        help=f"Luna client install root (default: the first of {GENERATIONS['5.3'].default_root}, "
        f"{GENERATIONS['5.1'].default_root} that exists)",
    )
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="Chrystoki.conf (default %(default)s)"
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=DEFAULT_ENV_FILE,
        help="env file for applications (default %(default)s)",
    )
    parser.add_argument(
        "--client-generation",
        choices=["5.1", "5.3", "6", "7", "10"],
        help="Luna client generation (default: detected from the install root and vtl ver)",
    )
    parser.add_argument(
        "--java-security", type=Path, help="also register the LunaProvider in this java.security file"
    )
    parser.add_argument(
        "--tool-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds per vtl/lunacm command (default %(default)s)",
    )
    return parser


def _default_root() -> Path:
    for generation in ("5.3", "5.1"):
        root = Path(GENERATIONS[generation].default_root)
        if root.is_dir():
            return root
    raise ClientToolError(
        "no Luna client found at /usr/safenet/lunaclient or /usr/lunasa: install it or pass --luna-root"
    )


def print_bootstrap_report(report: BootstrapReport, out: TextIO) -> None:
    slot = f", slot {report.slot}" if report.slot is not None else ""
    print(
        f"luna-ha client bootstrap: HA group {report.group_label} (serial {report.group_serial}{slot}) "
        f"for client {report.client}, generation {report.generation}, Luna client {report.client_generation}",
        file=out,
    )
    if not report.changes:
        print("  nothing changed", file=out)
    for change in report.changes:
        print(f"  changed: {change}", file=out)
    for warning in report.warnings:
        print(f"  warning: {warning}", file=out)


def bootstrap_main(argv: list[str] | None = None, *, out: TextIO | None = None) -> int:
    """``luna-ha client bootstrap …``; returns the exit status (0 ok, 1 failed, 2 usage)."""
    out = out or sys.stdout
    try:
        args = build_bootstrap_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    honour_aws_region()
    try:
        import boto3

        root = args.luna_root or _default_root()
        generation = (
            generation_named(args.client_generation)
            if args.client_generation
            else detect_generation(root, timeout=args.tool_timeout)
        )
        tools = ClientTools(root, generation, config_path=args.config, timeout=args.tool_timeout)
        report = bootstrap(
            args.parameter_path,
            args.client,
            ssm_client=boto3.client("ssm"),
            secrets_client=boto3.client("secretsmanager"),
            luna_root=root,
            config_path=args.config,
            env_file=args.env_file,
            tools=tools,
            java_security=args.java_security,
        )
    except LunaHAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BotoCoreError as exc:  # no region, no credentials: said before any parameter is read
        print(f"error: {describe_aws_error(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    print_bootstrap_report(report, out)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(bootstrap_main())
