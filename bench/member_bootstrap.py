"""Client bootstrap of an ASG member: AWS API calls and wall time for a first boot and a re-run
with nothing changed, for each Luna client generation.

The group is published by a real Create (the engine against simulated appliances); the member
reads it from the same local AWS, with the simulated client tools (``vtl``, ``lunacm``:
``luna_ha.sim.client_tools``; each invocation is a Python process, where the real tools are
native programs, so the tool time here is the simulator's start-up). Counted in this process
(``bootstrap()``): API calls per service, tool runs, wall time and the part spent in tool
processes. Then once as a member runs it: ``luna-ha client bootstrap`` as a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import boto3
from common import build_engine, group_spec, heading, note, physical_id, table
from fleet import Backend, calls_of, counting_aws_calls

from luna_ha.client.bootstrap import bootstrap
from luna_ha.client.tools import ClientTools, CompletedRun, subprocess_runner
from luna_ha.sim.client_tools import install_simulated_client

GENERATIONS = ("5.1", "5.3", "7")
PARTITION = "members"


@dataclass(frozen=True)
class Boot:
    seconds: float
    tool_seconds: float
    tool_runs: int
    mutating: int
    ssm_calls: int
    secrets_calls: int
    changes: int


@dataclass(frozen=True)
class MemberResult:
    generation: str
    first: Boot
    again: Boot


@dataclass(frozen=True)
class CliResult:
    generation: str
    first: float
    again: float


def publish(backend: Backend, members: int) -> tuple[str, dict[str, str]]:
    """A Create of a group of ``members`` appliances; its parameter path and the environment the
    simulated client tools need (which partitions each appliance has, the partition password)."""
    appliances = backend.start(members)
    spec = group_spec(backend, appliances, partition=PARTITION)
    report = build_engine().apply(spec, physical_id("Members"))
    if not report.ok:
        raise RuntimeError("the Create that publishes the group failed")
    partitions = {a.host: {a.partition_serial: PARTITION} for a in report.appliances}
    env = {
        "LUNA_HA_SIM_PARTITIONS": json.dumps(partitions),
        "LUNA_HA_SIM_PASSWORD": backend.group.partition_password,
    }
    return spec.parameter_path, env


def _tool_env(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment (AWS_ENDPOINT_URL included) without other simulator settings."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LUNA_HA_SIM_")}, **env}


def _boot(path: str, root: Path, config: Path, generation: str, env: Mapping[str, str]) -> Boot:
    tool_seconds = 0.0

    def runner(
        argv: Sequence[str], stdin: str | None, run_env: Mapping[str, str], timeout: float
    ) -> CompletedRun:
        nonlocal tool_seconds
        started = time.monotonic()
        try:
            return subprocess_runner(argv, stdin, run_env, timeout)
        finally:
            tool_seconds += time.monotonic() - started

    tools = ClientTools(root, generation, config_path=config, runner=runner, env=_tool_env(env))
    with counting_aws_calls() as calls:
        started = time.monotonic()
        report = bootstrap(
            path,
            "web",
            ssm_client=boto3.client("ssm"),
            secrets_client=boto3.client("secretsmanager"),
            luna_root=root,
            config_path=config,
            env_file=root / "luna-ha.env",
            tools=tools,
        )
        seconds = time.monotonic() - started
    return Boot(
        seconds,
        tool_seconds,
        len(report.commands),
        len(report.mutating_commands),
        calls_of(calls, "ssm"),
        calls_of(calls, "secretsmanager"),
        len(report.changes),
    )


def measure(backend: Backend, members: int, generations: Sequence[str]) -> list[MemberResult]:
    path, env = publish(backend, members)
    results = []
    with tempfile.TemporaryDirectory(prefix="luna-ha-bench-member-") as tmp:
        for generation in generations:
            root = Path(tmp) / f"client-{generation}"
            config = install_simulated_client(root, generation)
            first = _boot(path, root, config, generation, env)
            again = _boot(path, root, config, generation, env)
            results.append(MemberResult(generation, first, again))
    return results


def measure_cli(backend: Backend, members: int, generations: Sequence[str]) -> list[CliResult]:
    """``luna-ha client bootstrap`` as a process (interpreter, imports, boto3 clients, tools)."""
    path, env = publish(backend, members)
    command = Path(sys.executable).with_name("luna-ha")
    results = []
    with tempfile.TemporaryDirectory(prefix="luna-ha-bench-cli-") as tmp:
        for generation in generations:
            root = Path(tmp) / f"client-{generation}"
            config = install_simulated_client(root, generation)
            argv = [
                str(command),
                "client",
                "bootstrap",
                "--parameter-path",
                path,
                "--client",
                "web",
                "--luna-root",
                str(root),
                "--config",
                str(config),
                "--env-file",
                str(root / "luna-ha.env"),
                "--client-generation",
                generation,
            ]
            times = []
            for _ in range(2):
                started = time.monotonic()
                subprocess.run(argv, env=_tool_env(env), check=True, capture_output=True, timeout=300)
                times.append(time.monotonic() - started)
            results.append(CliResult(generation, times[0], times[1]))
    return results


def print_results(results: list[MemberResult], cli: list[CliResult], members: int) -> None:
    heading(
        f"Client bootstrap of an ASG member (group of {members} appliances, moto, simulated client tools)"
    )
    rows = []
    for r in results:
        for label, b in (("first boot", r.first), ("re-run, nothing changed", r.again)):
            rows.append(
                [
                    r.generation,
                    label,
                    b.ssm_calls,
                    b.secrets_calls,
                    f"{b.tool_runs} ({b.mutating})",
                    b.changes,
                    b.seconds,
                    b.tool_seconds,
                    b.seconds - b.tool_seconds,
                ]
            )
    print(
        table(
            [
                "client",
                "run",
                "SSM calls",
                "Secrets Manager calls",
                "tool runs (mutating)",
                "changes",
                "wall s",
                "in tool processes s",
                "the rest s",
            ],
            rows,
            left=2,
        )
    )
    if cli:
        heading("`luna-ha client bootstrap` as a process (interpreter and imports included)")
        print(
            table(
                ["client", "first boot s", "re-run s"],
                [[c.generation, c.first, c.again] for c in cli],
                left=1,
            )
        )
    note(
        "\nEach simulated vtl/lunacm run is a Python process (~0.1 s); the real tools are native, but "
        "`vtl verify` and HA commands talk to the appliances over NTLS."
    )
