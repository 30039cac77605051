"""Coordination between runs: records every stack, group and CLI run of one provider shares.

They live in one DynamoDB table (the provider's, or one named for the CLI), outside every group's
``ParameterPath``, and every change to them is a conditional write, so two runs never both win:

==================================  ==========================================================
``path#<ParameterPath>``            a claim (``kind=claim``): the resource that owns the path
                                    (``owner``, the same for every replacement of one logical
                                    resource) and the physical id holding it now (``holder``);
                                    or, for a path above claimed ones, ``kind=ancestor`` with the
                                    set of claimed paths ``below`` it
``hsm-admin#<host key fingerprint>`` the one run that may log in as HSM Admin on that appliance,
                                    until its own deadline (``holder``, ``expires``)
``deleting#<physical id>``          a Delete of that id began at ``at``; read for 2 hours
``uploads#<HSM serial>``            the files runs uploaded to that HSM's appliance and have not
                                    deleted yet (``files``, a set)
``partition#<HSM serial>#<name>``   a partition a resource created (``state`` creating or
                                    created), adopted (``adopted``), or created and kept when it
                                    let the partition go (``retained``): ``owner``, ``serial``
==================================  ==========================================================

``expires`` (epoch seconds) decides; the table's TTL attribute ``ttl`` only collects garbage
(DynamoDB deletes expired items lazily, moto never). A claim and a partition record have no expiry:
a claim goes with the Delete of its resource, a partition record with the partition (or with the
end of an adoption).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from luna_ha.errors import LunaHAError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

PartitionState = Literal["creating", "created", "adopted", "retained"]

TABLE_ENV = "LUNA_HA_TABLE"
CLAIM_ATTEMPTS = 10
_STATES = ("creating", "created", "adopted", "retained")
KEY = "pk"
TTL_ATTRIBUTE = "ttl"
# How long garbage stays after it stopped mattering (TTL only collects; ``expires`` decides).
_TTL_SLACK = 24 * 3600


class CoordinationError(LunaHAError):
    """The coordination table could not be read or written."""


class PathTaken(LunaHAError):
    """A ParameterPath belongs to another resource, or lies above or below another group's path."""


@dataclass(frozen=True)
class PathClaim:
    owner: str
    holder: str


@dataclass(frozen=True)
class AdminLease:
    holder: str
    expires: float
    group: str


@dataclass(frozen=True)
class PartitionRecord:
    """What this product knows of one partition it created or adopted."""

    hsm_serial: str
    name: str
    owner: str
    state: PartitionState
    serial: str | None = None

    def belongs_to(self, owner: str, observed_serial: str | None) -> bool:
        """This resource's record of the partition the appliance shows now (a partition deleted
        by hand and created again by someone else has another serial)."""
        return self.owner == owner and (self.serial is None or self.serial == observed_serial)


def ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``["/a", "/a/b"]``: every strict ancestor, shallowest first."""
    segments = path.strip("/").split("/")
    return ["/" + "/".join(segments[:i]) for i in range(1, len(segments))]


def _path_key(path: str) -> str:
    return f"path#{path}"


def admin_key(appliance: str) -> str:
    return f"hsm-admin#{appliance}"


def _deleting_key(physical_id: str) -> str:
    return f"deleting#{physical_id}"


def _uploads_key(hsm_serial: str) -> str:
    return f"uploads#{hsm_serial}"


def _partition_key(hsm_serial: str, name: str) -> str:
    return f"partition#{hsm_serial}#{name}"


class Coordinator:
    """The coordination records in one DynamoDB table. ``calls`` counts the API calls made."""

    def __init__(self, client: DynamoDBClient, table: str, *, now: Callable[[], float] = time.time) -> None:
        self._client = client
        self.table = table
        self.now = now
        self.calls = 0

    # -- paths ---------------------------------------------------------------------------------
    def claim_path(self, path: str, *, owner: str, holder: str) -> None:
        """Make ``holder`` (a physical id of resource ``owner``) the holder of ``path``, atomically.

        Allowed: a free path, or one claimed by the same ``owner`` (a replacement of the same
        logical resource takes its old path over). Refused with :class:`PathTaken` naming the other
        group: a path another resource claims, one below another group's path, one above them.
        """
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {KEY: {"S": _path_key(path)}},
                    "UpdateExpression": "SET kind = :claim, #owner = :owner, holder = :holder",
                    "ConditionExpression": (
                        f"attribute_not_exists({KEY}) OR attribute_not_exists(kind)"
                        " OR (kind = :claim AND #owner = :owner)"
                        " OR (kind = :ancestor AND attribute_not_exists(below))"
                    ),
                    "ExpressionAttributeNames": {"#owner": "owner"},
                    "ExpressionAttributeValues": {
                        ":claim": {"S": "claim"},
                        ":ancestor": {"S": "ancestor"},
                        ":owner": {"S": owner},
                        ":holder": {"S": holder},
                    },
                }
            }
        ]
        above = ancestors(path)
        for ancestor in above:
            items.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": {KEY: {"S": _path_key(ancestor)}},
                        "UpdateExpression": "SET kind = if_not_exists(kind, :ancestor) ADD below :path",
                        # (an item without a kind is nobody's: moto can leave one behind when it
                        # cancels a transaction half-way; DynamoDB never does)
                        "ConditionExpression": (
                            f"attribute_not_exists({KEY}) OR attribute_not_exists(kind) OR kind = :ancestor"
                        ),
                        "ExpressionAttributeValues": {
                            ":ancestor": {"S": "ancestor"},
                            ":path": {"SS": [path]},
                        },
                    }
                }
            )
        for attempt in range(CLAIM_ATTEMPTS):
            failed = self._transact(items, f"claim ParameterPath {path}", retry_conflicts=True)
            if failed is None:
                return
            refusal = self._claim_refusal(path, owner, above, failed)
            if refusal is not None:
                raise PathTaken(refusal)
            # A condition failed that the items, read again, do not explain: another claim or
            # release touched the same items at that moment. Try again.
            _back_off(attempt)
        raise CoordinationError(f"Cannot claim ParameterPath {path}: the coordination table kept changing")

    def _claim_refusal(self, path: str, owner: str, above: list[str], failed: int) -> str | None:
        """Why a claim was refused, from the items as they are now (None: they no longer refuse)."""
        if failed == 0:
            item = self._get(_path_key(path))
            if item is not None and _s(item, "kind") == "ancestor" and _ss(item, "below"):
                below = sorted(_ss(item, "below"))
                return (
                    f"Property ParameterPath: {path} is above the path of another group "
                    f"({', '.join(below[:3])}); choose a path of its own"
                )
            if item is not None and _s(item, "kind") == "claim" and _s(item, "owner") != owner:
                return (
                    f"Property ParameterPath: {path} belongs to another resource ({_s(item, 'holder')}); "
                    "choose a path of its own"
                )
            return None
        ancestor = self._get(_path_key(above[failed - 1]))
        if ancestor is not None and _s(ancestor, "kind") == "claim":
            return (
                f"Property ParameterPath: {path} is below {above[failed - 1]}, the path of another group; "
                "choose a path of its own"
            )
        return None

    def path_claim(self, path: str) -> PathClaim | None:
        item = self._get(_path_key(path))
        if item is None or _s(item, "kind") != "claim":
            return None
        return PathClaim(owner=_s(item, "owner"), holder=_s(item, "holder"))

    def never_held(self, path: str, *, owner: str) -> bool:
        """True when resource ``owner`` cannot have held ``path``: another resource claims it or a
        path above it, or groups are claimed below it. Claims pass only between replacements of
        one resource, so such a resource never got past its claim."""
        item = self._get(_path_key(path))
        if item is not None and (_s(item, "kind") == "ancestor" or _s(item, "owner") != owner):
            return _s(item, "kind") == "ancestor" or _s(item, "kind") == "claim"
        return any(
            (above := self._get(_path_key(a))) is not None and _s(above, "kind") == "claim"
            for a in ancestors(path)
        )

    def release_path(self, path: str, *, holder: str) -> None:
        """Give ``path`` up if ``holder`` holds it (a replaced id's Delete leaves its successor's
        claim alone), and take it out of its ancestors' sets; an ancestor left with nothing below
        it is deleted."""
        items: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self.table,
                    "Key": {KEY: {"S": _path_key(path)}},
                    "ConditionExpression": "kind = :claim AND holder = :holder",
                    "ExpressionAttributeValues": {":claim": {"S": "claim"}, ":holder": {"S": holder}},
                }
            }
        ]
        for ancestor in ancestors(path):
            items.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": {KEY: {"S": _path_key(ancestor)}},
                        "UpdateExpression": "DELETE below :path",
                        "ConditionExpression": "kind = :ancestor",
                        "ExpressionAttributeValues": {
                            ":ancestor": {"S": "ancestor"},
                            ":path": {"SS": [path]},
                        },
                    }
                }
            )
        if self._transact(items, f"release ParameterPath {path}", retry_conflicts=True) is not None:
            return  # not ours (any more), or already released
        for ancestor in reversed(ancestors(path)):
            self._delete_if(
                _path_key(ancestor),
                "kind = :ancestor AND attribute_not_exists(below)",
                {":ancestor": {"S": "ancestor"}},
            )

    # -- HSM Admin leases ------------------------------------------------------------------------
    def acquire_admin(self, appliance: str, *, holder: str, until: float, group: str) -> AdminLease | None:
        """Take the HSM Admin lease of ``appliance`` until ``until`` (the holder's own deadline).

        Succeeds when nobody holds it, when the holder's deadline has passed (a run that died), or
        when ``holder`` holds it already. Returns None on success, else the lease that is in force.
        """
        now = self.now()
        try:
            self._call(
                "put_item",
                TableName=self.table,
                Item={
                    KEY: {"S": admin_key(appliance)},
                    "holder": {"S": holder},
                    "expires": {"N": _number(until)},
                    "group": {"S": group},
                    TTL_ATTRIBUTE: {"N": _number(until + _TTL_SLACK)},
                },
                ConditionExpression=f"attribute_not_exists({KEY}) OR expires < :now OR holder = :holder",
                ExpressionAttributeValues={":now": {"N": _number(now)}, ":holder": {"S": holder}},
            )
        except _ConditionFailed:
            item = self._get(admin_key(appliance))
            if item is None:  # let go between our write and this read: try again later
                return AdminLease(holder="", expires=now, group="")
            return AdminLease(holder=_s(item, "holder"), expires=_n(item, "expires"), group=_s(item, "group"))
        return None

    def release_admin(self, appliance: str, *, holder: str) -> None:
        self._delete_if(admin_key(appliance), "holder = :holder", {":holder": {"S": holder}})

    # -- deletion markers ------------------------------------------------------------------------
    def mark_deleting(self, physical_id: str, *, at: float, lifetime: float) -> None:
        self._call(
            "put_item",
            TableName=self.table,
            Item={
                KEY: {"S": _deleting_key(physical_id)},
                "at": {"N": _number(at)},
                "expires": {"N": _number(at + lifetime)},
                TTL_ATTRIBUTE: {"N": _number(at + lifetime + _TTL_SLACK)},
            },
        )

    def deleting_since(self, physical_id: str) -> float | None:
        """When a Delete of ``physical_id`` began, if one did and its marker is still in force."""
        item = self._get(_deleting_key(physical_id))
        if item is None or _n(item, "expires") < self.now():
            return None
        return _n(item, "at")

    # -- partitions ------------------------------------------------------------------------------
    def partition_record(self, hsm_serial: str, name: str) -> PartitionRecord | None:
        item = self._get(_partition_key(hsm_serial, name))
        if item is None:
            return None
        state = _s(item, "state")
        return PartitionRecord(
            hsm_serial=hsm_serial,
            name=name,
            owner=_s(item, "owner"),
            state=state if state in _STATES else "adopted",  # type: ignore[arg-type]
            serial=_s(item, "serial") or None,
        )

    def record_partition(self, record: PartitionRecord) -> bool:
        """Write ``record`` unless another resource has one for that partition (one it still uses:
        a retained partition may be taken over): False then."""
        item: dict[str, Any] = {
            KEY: {"S": _partition_key(record.hsm_serial, record.name)},
            "owner": {"S": record.owner},
            "state": {"S": record.state},
        }
        if record.serial:
            item["serial"] = {"S": record.serial}
        try:
            self._call(
                "put_item",
                TableName=self.table,
                Item=item,
                ConditionExpression=f"attribute_not_exists({KEY}) OR #owner = :owner OR #state = :retained",
                ExpressionAttributeNames={"#owner": "owner", "#state": "state"},
                ExpressionAttributeValues={":owner": {"S": record.owner}, ":retained": {"S": "retained"}},
            )
        except _ConditionFailed:
            return False
        return True

    def forget_partition(self, hsm_serial: str, name: str, *, owner: str) -> None:
        self._delete_if(
            _partition_key(hsm_serial, name),
            "#owner = :owner",
            {":owner": {"S": owner}},
            names={"#owner": "owner"},
        )

    # -- uploaded files --------------------------------------------------------------------------
    def uploads(self, hsm_serial: str) -> frozenset[str]:
        item = self._get(_uploads_key(hsm_serial))
        return frozenset(_ss(item, "files")) if item is not None else frozenset()

    def add_upload(self, hsm_serial: str, name: str) -> None:
        """Record ``name`` before it is uploaded, so that a run that dies before deleting it leaves
        the next run a note to delete it."""
        self._call(
            "update_item",
            TableName=self.table,
            Key={KEY: {"S": _uploads_key(hsm_serial)}},
            UpdateExpression="ADD files :name",
            ExpressionAttributeValues={":name": {"SS": [name]}},
        )

    def remove_upload(self, hsm_serial: str, name: str) -> None:
        self._call(
            "update_item",
            TableName=self.table,
            Key={KEY: {"S": _uploads_key(hsm_serial)}},
            UpdateExpression="DELETE files :name",
            ExpressionAttributeValues={":name": {"SS": [name]}},
        )
        self._delete_if(_uploads_key(hsm_serial), "attribute_not_exists(files)", {})

    # -- plumbing --------------------------------------------------------------------------------
    def records(self) -> Iterator[dict[str, Any]]:
        """Every record (for tests and operators; a Scan)."""
        paginator = self._client.get_paginator("scan")
        try:
            for page in paginator.paginate(TableName=self.table):
                self.calls += 1
                yield from page.get("Items", [])
        except (ClientError, BotoCoreError) as exc:
            problem = f"Cannot read the coordination table {self.table}: {_code(exc)}"
            raise CoordinationError(problem) from None

    def _get(self, key: str) -> dict[str, Any] | None:
        response = self._call("get_item", TableName=self.table, Key={KEY: {"S": key}}, ConsistentRead=True)
        item = response.get("Item")
        return dict(item) if item else None

    def _delete_if(
        self,
        key: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> None:
        extra: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
        if values:
            extra["ExpressionAttributeValues"] = values
        with contextlib.suppress(_ConditionFailed):  # not ours, or gone already: as wanted
            self._call(
                "delete_item",
                TableName=self.table,
                Key={KEY: {"S": key}},
                ConditionExpression=condition,
                **extra,
            )

    def _transact(
        self, items: list[dict[str, Any]], what: str, *, retry_conflicts: bool = False
    ) -> int | None:
        """Run a transaction; None when it committed, else the index of the first item whose
        condition failed. A transaction that met another one on the same items (DynamoDB cancels
        it with TransactionConflict) is tried again a few times when ``retry_conflicts``."""
        for attempt in range(CLAIM_ATTEMPTS):
            try:
                self._call("transact_write_items", TransactItems=items)
            except _Cancelled as cancelled:
                for index, reason in enumerate(cancelled.reasons):
                    if reason == "ConditionalCheckFailed":
                        return index
                if retry_conflicts and "TransactionConflict" in cancelled.reasons:
                    _back_off(attempt)
                    continue
                raise CoordinationError(
                    f"Cannot {what} in the coordination table {self.table}: {', '.join(cancelled.reasons)}"
                ) from None
            return None
        raise CoordinationError(f"Cannot {what} in the coordination table {self.table}: TransactionConflict")

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        code = None
        try:
            return dict(getattr(self._client, operation)(**kwargs))
        except ClientError as exc:
            code = _code(exc)
            if code == "ConditionalCheckFailedException":
                raise _ConditionFailed from None
            if code == "TransactionCanceledException":
                reasons = [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons", [])]
                raise _Cancelled(reasons) from None
        except BotoCoreError as exc:
            code = _code(exc)
        raise CoordinationError(f"Cannot use the coordination table {self.table}: {code}")


def create_table(client: DynamoDBClient, table: str) -> None:
    """The table as the provider template creates it (for the demo, the simulator and tests)."""
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )


class _ConditionFailed(Exception):
    pass


class _Cancelled(Exception):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons


def _back_off(attempt: int) -> None:
    """Full jitter: contenders that met once do not meet again in step."""
    time.sleep(random.uniform(0, min(0.5, 0.02 * 2**attempt)))


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def _number(value: float) -> str:
    return f"{value:.3f}"


def _s(item: dict[str, Any], key: str) -> str:
    value = item.get(key, {})
    return str(value.get("S", "")) if isinstance(value, dict) else ""


def _n(item: dict[str, Any], key: str) -> float:
    value = item.get(key, {})
    try:
        return float(value.get("N", "0")) if isinstance(value, dict) else 0.0
    except ValueError:
        return 0.0


def _ss(item: dict[str, Any], key: str) -> set[str]:
    value = item.get(key, {})
    return set(value.get("SS", [])) if isinstance(value, dict) else set()
