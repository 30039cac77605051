"""The composition root: real adapters for the engine (boto3 from the standard chain, paramiko).

``AWS_ENDPOINT_URL`` and the usual AWS variables apply through boto3; nothing here knows whether
it talks to AWS or to a local endpoint.
"""

from __future__ import annotations

from luna_ha.engine import Engine, Progress
from luna_ha.spec import GroupSpec


def build_engine(
    spec: GroupSpec, progress: Progress | None = None, *, deletion_markers: bool = False
) -> Engine:
    import boto3
    from botocore.config import Config

    from luna_ha.secrets import SecretReader
    from luna_ha.store import ParameterStore

    return Engine(
        secrets=SecretReader(boto3.client("secretsmanager")),
        # The store writes a wave of parameters at once; adaptive retries slow this client down
        # when Parameter Store throttles (40 puts/s by default) instead of failing the run.
        store=ParameterStore(
            boto3.client("ssm", config=Config(retries={"mode": "adaptive", "max_attempts": 10})),
            kms_key_id=spec.kms_key_id,
        ),
        progress=progress,
        deletion_markers=deletion_markers,
    )
