"""Parameter Store adapter: read a group's parameters, apply a :class:`~luna_ha.layout.ParameterPlan`.

The caller builds the client (``boto3.client("ssm")``), so ``AWS_ENDPOINT_URL`` and the region come
from the environment the usual way. Errors are :class:`~luna_ha.errors.StoreError` naming the
parameter (or path) and the AWS error code; never a value, and never AWS's own message, which may
quote the value (validation errors do).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from luna_ha.errors import StoreError
from luna_ha.layout import Parameter, ParameterPlan, check_path

if TYPE_CHECKING:
    from mypy_boto3_ssm.client import SSMClient
    from mypy_boto3_ssm.type_defs import PutParameterRequestTypeDef

STANDARD_TIER_MAX_BYTES = 4096
DELETE_BATCH = 10
PAGE_SIZE = 10  # the most GetParametersByPath returns per call
# Calls of one wave in flight at once. Parameter Store limits the calls per second of an account and
# region (its default throughput suits "low- to moderate-volume workloads"); a throttled call is
# retried with backoff by the client (luna_ha.compose.ssm_client).
WORKERS = 8

_R = TypeVar("_R")


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


class ParameterStore:
    """SSM Parameter Store for one run. ``calls`` counts the API calls made (for benchmarks)."""

    def __init__(self, client: SSMClient) -> None:
        self._client = client
        self.calls = 0
        self._count_lock = threading.Lock()

    def read(self, path: str) -> dict[str, Parameter]:
        """Every parameter below ``path`` (recursive, decrypted), by name.

        Only names below ``path + "/"`` are returned, whatever the service answers, so a sibling that
        merely shares the prefix (``/luna-ha/orders2`` for ``/luna-ha/orders``) is never included.
        """
        check_path(path)
        found: dict[str, Parameter] = {}
        paginator = self._client.get_paginator("get_parameters_by_path")
        pages = paginator.paginate(
            Path=path,
            Recursive=True,
            WithDecryption=True,
            PaginationConfig={"PageSize": PAGE_SIZE},
        )
        try:
            for page in pages:
                self._count()
                for item in page.get("Parameters", []):
                    name = item.get("Name", "")
                    if not name.startswith(path + "/"):
                        continue
                    found[name] = Parameter(
                        name=name,
                        value=item.get("Value", ""),
                        secure=item.get("Type") == "SecureString",
                    )
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"Cannot read parameters under {path}: {_code(exc)}") from None
        return found

    def get(self, name: str) -> Parameter | None:
        """One parameter (decrypted), or None when it does not exist: a single call."""
        self._count()
        code = None
        try:
            item = self._client.get_parameter(Name=name, WithDecryption=True)["Parameter"]
        except (ClientError, BotoCoreError) as exc:
            code = _code(exc)
        if code == "ParameterNotFound":
            return None
        if code is not None:
            raise StoreError(f"Cannot read parameter {name}: {code}")
        return Parameter(name=name, value=item.get("Value", ""), secure=item.get("Type") == "SecureString")

    def apply(self, plan: ParameterPlan) -> int:
        """Carry out ``plan``: its puts wave after wave, then its deletes (batches of 10) the same way.

        The calls of one wave run at the same time (a group of 16 appliances publishes 16 server
        certificates at once); a wave starts only when the one before it has been written entirely,
        so the order of :func:`~luna_ha.layout.plan_parameters` holds between ranks. When a call
        fails, the rest of its wave still runs, the next waves do not, and the first failure (in plan
        order) is raised. Returns the number of parameters written or deleted (a name already gone
        is not counted).
        """
        changed = 0
        for wave in plan.put_waves():
            changed += len(_together([partial(self._put, p, kms_key_id=plan.kms_key_id) for p in wave]))
        for names in plan.delete_waves():
            batches = [
                list(names[start : start + DELETE_BATCH]) for start in range(0, len(names), DELETE_BATCH)
            ]
            changed += sum(_together([partial(self._delete, b) for b in batches]))
        return changed

    def create(self, parameter: Parameter, *, kms_key_id: str | None = None) -> bool:
        """Write ``parameter`` (a SecureString under ``kms_key_id``) only if it does not exist yet;
        False when another writer was first.

        Two runs generating the same client generation at once (a duplicated event) thus agree
        on one key: the loser reads the winner's.
        """
        return self._put(parameter, kms_key_id=kms_key_id, overwrite=False)

    def _put(self, parameter: Parameter, *, kms_key_id: str | None, overwrite: bool = True) -> bool:
        size = len(parameter.value.encode("utf-8"))
        request: PutParameterRequestTypeDef = {
            "Name": parameter.name,
            "Value": parameter.value,
            "Type": "SecureString" if parameter.secure else "String",
            "Overwrite": overwrite,
            "Tier": "Advanced" if size > STANDARD_TIER_MAX_BYTES else "Standard",
        }
        if parameter.secure and kms_key_id:
            request["KeyId"] = kms_key_id
        if parameter.expires is not None:
            at = parameter.expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            expiration = {"Type": "Expiration", "Version": "1.0", "Attributes": {"Timestamp": at}}
            request["Tier"] = "Advanced"  # parameter policies need it
            request["Policies"] = json.dumps([expiration])
        self._count()
        # AWS's message and botocore's validation report can quote the value: keep only the code,
        # and raise outside the handler so that the StoreError carries no __context__ either.
        code = None
        try:
            self._client.put_parameter(**request)
        except (ClientError, BotoCoreError) as exc:
            code = _code(exc)
        if code == "ParameterAlreadyExists" and not overwrite:
            return False
        if code is not None:
            raise StoreError(f"Cannot write parameter {parameter.name}: {code}")
        return True

    def _count(self) -> None:
        with self._count_lock:
            self.calls += 1

    def _delete(self, names: list[str]) -> int:
        self._count()
        try:
            response = self._client.delete_parameters(Names=names)
        except ClientError as exc:
            if _code(exc) == "ParameterNotFound":
                return 0
            raise StoreError(f"Cannot delete parameters {', '.join(names)}: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"Cannot delete parameters {', '.join(names)}: {_code(exc)}") from exc
        # Names that do not exist come back in InvalidParameters: already gone is what we wanted.
        return len(response.get("DeletedParameters", []))


def _together(calls: Sequence[Callable[[], _R]]) -> list[_R]:
    """Run ``calls`` at the same time (one alone runs here); their results in order, or the first
    exception in order once every call has ended."""
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(calls)), thread_name_prefix="ssm") as pool:
        futures = [pool.submit(call) for call in calls]
    for future in futures:
        failure = future.exception()
        if failure is not None:
            raise failure
    return [future.result() for future in futures]
