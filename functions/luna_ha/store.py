"""Parameter Store adapter: read a group's parameters, apply a :class:`~luna_ha.layout.ParameterPlan`.

The caller builds the client (``boto3.client("ssm")``), so ``AWS_ENDPOINT_URL`` and the region come
from the environment the usual way. Errors are :class:`~luna_ha.errors.StoreError` naming the
parameter (or path) and the AWS error code; never a value, and never AWS's own message, which may
quote the value (validation errors do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from luna_ha.errors import StoreError
from luna_ha.layout import Parameter, ParameterPlan, check_path

if TYPE_CHECKING:
    from mypy_boto3_ssm.client import SSMClient
    from mypy_boto3_ssm.type_defs import PutParameterRequestTypeDef

STANDARD_TIER_MAX_BYTES = 4096
DELETE_BATCH = 10
PAGE_SIZE = 10  # the most GetParametersByPath returns per call


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


class ParameterStore:
    """SSM Parameter Store for one run. ``calls`` counts the API calls made (for benchmarks)."""

    def __init__(self, client: SSMClient, kms_key_id: str | None = None) -> None:
        self._client = client
        self.kms_key_id = kms_key_id
        self.calls = 0

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
                self.calls += 1
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

    def apply(self, plan: ParameterPlan) -> int:
        """Carry out ``plan``: puts in order, then deletes in batches of 10.

        Returns the number of parameters written or deleted (a name already gone is not counted).
        """
        changed = 0
        for parameter in plan.puts:
            self._put(parameter)
            changed += 1
        deletes = list(plan.deletes)
        for start in range(0, len(deletes), DELETE_BATCH):
            changed += self._delete(deletes[start : start + DELETE_BATCH])
        return changed

    def create(self, parameter: Parameter) -> bool:
        """Write ``parameter`` only if it does not exist yet; False when another writer was first.

        Two runs generating the same client generation at once (a duplicated event) thus agree
        on one key: the loser reads the winner's.
        """
        return self._put(parameter, overwrite=False)

    def _put(self, parameter: Parameter, *, overwrite: bool = True) -> bool:
        size = len(parameter.value.encode("utf-8"))
        request: PutParameterRequestTypeDef = {
            "Name": parameter.name,
            "Value": parameter.value,
            "Type": "SecureString" if parameter.secure else "String",
            "Overwrite": overwrite,
            "Tier": "Advanced" if size > STANDARD_TIER_MAX_BYTES else "Standard",
        }
        if parameter.secure and self.kms_key_id:
            request["KeyId"] = self.kms_key_id
        self.calls += 1
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

    def _delete(self, names: list[str]) -> int:
        self.calls += 1
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
