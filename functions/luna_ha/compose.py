"""The composition root: real adapters for the engine (boto3 from the standard chain, paramiko).

``AWS_ENDPOINT_URL`` and the usual AWS variables apply through boto3; nothing here knows whether
it talks to AWS or to a local endpoint.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from luna_ha.coordination import TABLE_ENV, Coordinator
from luna_ha.engine import Engine, Progress
from luna_ha.errors import LunaHAError

if TYPE_CHECKING:
    from mypy_boto3_ssm.client import SSMClient


def ssm_client() -> SSMClient:
    """The engine's Parameter Store client. The store writes a wave of parameters at once; when
    Parameter Store throttles, each throttled call backs off (with jitter) and retries, up to 5
    attempts (15 s of backoff at most, well inside the margin the function keeps for its answer),
    instead of failing the run. Not botocore's "adaptive" mode: once throttled, its
    client-side rate limiter slows every later call of the run (27 puts took 20 s instead of 3 in
    tests/functional/test_store.py)."""
    import boto3
    from botocore.config import Config

    return boto3.client("ssm", config=Config(retries={"mode": "standard", "max_attempts": 5}))


def coordination_table(table: str | None = None) -> str:
    """The coordination table: ``table`` if given, else ``LUNA_HA_TABLE`` (the provider sets it)."""
    name = table or os.environ.get(TABLE_ENV, "")
    if not name:
        raise LunaHAError(
            f"no coordination table: give --table or set {TABLE_ENV} to the provider's table "
            "(output CoordinationTableName), or to a table of your own as the README describes"
        )
    return name


def build_engine(
    progress: Progress | None = None,
    *,
    deletion_markers: bool = False,
    table: str | None = None,
) -> Engine:
    import boto3

    from luna_ha.secrets import SecretReader
    from luna_ha.store import ParameterStore

    return Engine(
        secrets=SecretReader(boto3.client("secretsmanager")),
        store=ParameterStore(ssm_client()),
        coordinator=Coordinator(boto3.client("dynamodb"), coordination_table(table)),
        progress=progress,
        deletion_markers=deletion_markers,
    )
