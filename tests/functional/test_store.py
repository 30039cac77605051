"""ParameterStore against moto's SSM: publish, read back, converge, delete, fail safely."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.stub import Stubber

from luna_ha import compose
from luna_ha.errors import StoreError
from luna_ha.layout import (
    GroupDocument,
    Member,
    Parameter,
    ParameterPlan,
    build_layout,
    kms_key_changed,
    owned_by,
    plan_parameters,
    server_cert_name,
)
from luna_ha.store import ParameterStore

PATH = "/luna-ha/payments"
OWNER = "stack-Group-payments-1a2b3c"
KEY_PEM = "-----BEGIN PRIVATE KEY-----\nTOP-SECRET-KEY-MATERIAL\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def ssm(aws: None) -> Any:
    return boto3.client("ssm")


@pytest.fixture
def kms_key_id(aws: None) -> str:
    return str(boto3.client("kms").create_key()["KeyMetadata"]["KeyId"])


def layout(
    path: str = PATH, clients: int = 1, owner: str = OWNER, kms: str | None = None
) -> dict[str, Parameter]:
    hosts = ("10.0.1.10", "fd00::11")
    names = [f"c{i}" for i in range(clients)]
    doc = GroupDocument(
        owner=owner,
        label="payments-ha",
        partition="payments",
        members=tuple(Member(h, f"15{i}", server_cert_name(path, h)) for i, h in enumerate(hosts)),
        ha_group_serial="1150",
        partition_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:partition",
        kms_key_id=kms,
        clients={name: f"{name}-3f2a1c-r0" for name in names},
    )
    return build_layout(
        path,
        doc,
        {h: f"SERVER {h}" for h in hosts},
        {name: {f"{name}-3f2a1c-r0": (f"CERT {name}", KEY_PEM)} for name in names},
    )


def publish(
    store: ParameterStore, desired: dict[str, Parameter], path: str = PATH, kms_key_id: str | None = None
) -> int:
    existing = store.read(path)
    return store.apply(plan_parameters(desired, existing, rewrite_secure=False, kms_key_id=kms_key_id))


def test_published_parameters_read_back_identically(ssm: Any) -> None:
    store = ParameterStore(ssm)
    desired = layout()

    assert publish(store, desired) == len(desired)

    assert store.read(PATH) == desired


def test_a_second_publish_of_the_same_layout_writes_nothing(ssm: Any) -> None:
    store = ParameterStore(ssm)
    publish(store, layout())
    versions = {
        p["Name"]: p["Version"] for p in ssm.get_parameters_by_path(Path=PATH, Recursive=True)["Parameters"]
    }

    plan = plan_parameters(layout(), store.read(PATH), rewrite_secure=False)
    calls_before = store.calls
    assert store.apply(plan) == 0

    assert plan.empty
    assert store.calls == calls_before
    after = {
        p["Name"]: p["Version"] for p in ssm.get_parameters_by_path(Path=PATH, Recursive=True)["Parameters"]
    }
    assert after == versions


def test_private_keys_are_secure_strings_under_the_given_kms_key(ssm: Any, kms_key_id: str) -> None:
    store = ParameterStore(ssm)
    publish(store, layout(kms=kms_key_id), kms_key_id=kms_key_id)

    key_name = f"{PATH}/clients/c0/c0-3f2a1c-r0/key"
    described = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [key_name]}])[
        "Parameters"
    ]
    assert described[0]["Type"] == "SecureString"
    assert described[0]["KeyId"] == kms_key_id
    cert = ssm.get_parameter(Name=f"{PATH}/clients/c0/c0-3f2a1c-r0/cert")["Parameter"]
    assert cert["Type"] == "String"
    assert store.read(PATH)[key_name] == Parameter(key_name, KEY_PEM, secure=True)


def test_without_a_kms_key_id_secure_strings_use_the_account_default(ssm: Any) -> None:
    store = ParameterStore(ssm)
    publish(store, layout())

    key_name = f"{PATH}/clients/c0/c0-3f2a1c-r0/key"
    described = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [key_name]}])[
        "Parameters"
    ]
    assert described[0]["Type"] == "SecureString"
    assert described[0].get("KeyId", "alias/aws/ssm") == "alias/aws/ssm"


def test_changing_the_kms_key_rewrites_the_keys_under_the_new_key(ssm: Any, kms_key_id: str) -> None:
    publish(ParameterStore(ssm), layout())
    store = ParameterStore(ssm)
    desired = layout(kms=kms_key_id)
    existing = store.read(PATH)
    doc = GroupDocument.from_json(desired[f"{PATH}/group"].value)

    rewrite = kms_key_changed(existing, doc)
    store.apply(plan_parameters(desired, existing, rewrite_secure=rewrite, kms_key_id=kms_key_id))

    key_name = f"{PATH}/clients/c0/c0-3f2a1c-r0/key"
    described = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [key_name]}])[
        "Parameters"
    ]
    assert described[0]["KeyId"] == kms_key_id


def test_read_follows_pagination_beyond_ten_parameters(ssm: Any) -> None:
    store = ParameterStore(ssm)
    desired = layout(clients=8)  # group + 2 servers + 8 x (current, cert, key) = 27
    publish(store, desired)

    store.calls = 0
    assert store.read(PATH) == desired
    assert store.calls == 3  # pages of 10


def test_read_returns_only_names_below_the_path_not_a_prefix_sibling(ssm: Any) -> None:
    store = ParameterStore(ssm)
    publish(store, layout("/luna-ha/orders"), "/luna-ha/orders")
    publish(store, layout("/luna-ha/orders2"), "/luna-ha/orders2")
    ssm.put_parameter(Name="/luna-ha/ordersx", Value="v", Type="String")

    assert all(name.startswith("/luna-ha/orders/") for name in store.read("/luna-ha/orders"))


def test_delete_removes_everything_in_batches_of_ten(ssm: Any) -> None:
    store = ParameterStore(ssm)
    desired = layout(clients=8)
    publish(store, desired)
    existing = store.read(PATH)
    assert owned_by(existing, OWNER)

    store.calls = 0
    removed = store.apply(plan_parameters({}, existing, rewrite_secure=False, path=PATH))

    assert removed == 27
    assert store.calls == 4  # 18 certificates and keys in 2 batches, 8 pointers, the group document
    assert store.read(PATH) == {}


def test_delete_of_a_path_leaves_a_prefix_sibling_alone(ssm: Any) -> None:
    store = ParameterStore(ssm)
    publish(store, layout("/luna-ha/orders"), "/luna-ha/orders")
    sibling = layout("/luna-ha/orders2")
    publish(store, sibling, "/luna-ha/orders2")

    existing = store.read("/luna-ha/orders")
    store.apply(plan_parameters({}, existing, rewrite_secure=False, path="/luna-ha/orders"))

    assert store.read("/luna-ha/orders") == {}
    assert store.read("/luna-ha/orders2") == sibling


def test_deleting_names_that_are_already_gone_succeeds(ssm: Any) -> None:
    store = ParameterStore(ssm)

    assert store.apply(ParameterPlan(deletes=(f"{PATH}/group", f"{PATH}/servers/x/cert"))) == 0


def test_a_value_over_4096_bytes_goes_to_the_advanced_tier(ssm: Any) -> None:
    store = ParameterStore(ssm)
    big = Parameter(f"{PATH}/servers/big/cert", "x" * 4097)
    small = Parameter(f"{PATH}/servers/small/cert", "x" * 4096)

    store.apply(ParameterPlan(puts=(big, small)))

    tiers = {p["Name"]: p["Tier"] for p in ssm.describe_parameters()["Parameters"]}
    assert tiers == {big.name: "Advanced", small.name: "Standard"}


def record_calls(ssm: Any, seconds: float = 0.02) -> list[tuple[str, float, float]]:
    """(parameter name or first deleted name, start, end) of every write and delete ``ssm`` makes;
    each takes ``seconds`` longer, as over a real network."""
    calls: list[tuple[str, float, float]] = []
    names: dict[int, str] = {}
    started: dict[int, float] = {}

    def named(params: dict[str, Any], **_: Any) -> None:
        names[threading.get_ident()] = params.get("Name") or params["Names"][0]

    def before(**_: Any) -> None:
        started[threading.get_ident()] = time.monotonic()
        time.sleep(seconds)

    def after(**_: Any) -> None:
        me = threading.get_ident()
        calls.append((names.pop(me), started.pop(me), time.monotonic()))

    for operation in ("PutParameter", "DeleteParameters"):
        ssm.meta.events.register(f"before-parameter-build.ssm.{operation}", named)
        ssm.meta.events.register(f"before-call.ssm.{operation}", before)
        ssm.meta.events.register(f"after-call.ssm.{operation}", after)
    return calls


def test_a_wave_is_written_at_once_and_each_wave_only_after_the_one_before(ssm: Any) -> None:
    store = ParameterStore(ssm)
    publish(store, layout(clients=1))
    desired = layout(clients=6)  # five new clients: 10 certificates and keys, 6 pointers, the group
    calls = record_calls(ssm)

    publish(store, desired)

    def span(names: list[str]) -> tuple[float, float]:
        times = [(start, end) for name, start, end in calls if name in names]
        assert len(times) == len(names)
        return min(s for s, _ in times), max(e for _, e in times)

    new = [n for n in desired if "/clients/" in n and "/clients/c0/" not in n]
    pairs = [n for n in new if n.endswith(("/cert", "/key"))]
    pointers = [n for n in new if n.endswith("/current")]
    first, second, third = span(pairs), span(pointers), span([f"{PATH}/group"])
    assert first[1] <= second[0] and second[1] <= third[0]
    in_first = [(start, end) for name, start, end in calls if name in pairs]
    together = max(sum(1 for s, e in in_first if s <= at < e) for at, _ in in_first)
    assert together > 1  # calls of the wave in flight at the same moment: not one after another
    assert store.read(PATH) == desired


def test_when_a_write_of_a_wave_fails_the_next_waves_are_not_written(ssm: Any) -> None:
    store = ParameterStore(ssm)
    desired = layout(clients=3)
    ok = list(plan_parameters(desired, {}, rewrite_secure=False).put_waves()[1])
    bad = Parameter("/aws/reserved/cert", "CERT")  # a name the service refuses
    plan = ParameterPlan(puts=(*ok, bad, Parameter(f"{PATH}/group", "late")))

    with pytest.raises(StoreError, match="Cannot write parameter /aws/reserved/cert: "):
        store.apply(plan)

    written = store.read(PATH)
    assert {p.name for p in ok} <= set(written)  # the rest of the wave was written
    assert f"{PATH}/group" not in written  # the next wave was not


def test_a_parameter_that_expires_carries_an_expiration_policy_in_the_advanced_tier(ssm: Any) -> None:
    store = ParameterStore(ssm)
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))

    store.apply(ParameterPlan(puts=(Parameter(f"{PATH}/deleting", "x", expires=at),)))

    (described,) = ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Values": [f"{PATH}/deleting"]}]
    )["Parameters"]
    assert described["Tier"] == "Advanced"
    (policy,) = described["Policies"]
    assert "2030-01-02T01:04:05.000Z" in policy["PolicyText"]  # in UTC, as Parameter Store wants it
    assert "Expiration" in policy["PolicyText"]


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def throttle(client: Any, names: list[str]) -> list[str]:
    """The first PutParameter of each of ``names`` that ``client`` sends is answered twice as a
    throttled Parameter Store answers (HTTP 400 ThrottlingException), below botocore's retries."""
    throttled: list[str] = []
    lock = threading.Lock()
    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()

    def before_send(request: Any, **_: Any) -> AWSResponse | None:
        name = json.loads(request.body)["Name"]
        with lock:
            if name not in names or throttled.count(name) >= 2:
                return None
            throttled.append(name)
        return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Body(body))

    client.meta.events.register("before-send.ssm.PutParameter", before_send)
    return throttled


def test_throttled_writes_of_a_wave_are_retried_by_the_engines_client(aws: None) -> None:
    client = compose.ssm_client()
    store = ParameterStore(client)
    desired = layout(clients=6)
    names = [n for n in desired if "/clients/c" in n][:6]  # in the wave of certificates and keys
    throttled = throttle(client, names)

    publish(store, desired)

    assert sorted(throttled) == sorted(names * 2)
    assert store.read(PATH) == desired


def test_a_client_without_retries_would_fail_on_the_same_throttling(aws: None) -> None:
    client = boto3.client("ssm", config=Config(retries={"mode": "standard", "max_attempts": 1}))
    store = ParameterStore(client)
    desired = layout(clients=6)
    throttle(client, [n for n in desired if "/clients/c" in n][:6])

    with pytest.raises(StoreError, match="ThrottlingException"):
        publish(store, desired)


def test_a_rejected_write_names_the_parameter_and_code_but_not_the_value(ssm: Any) -> None:
    store = ParameterStore(ssm)
    bad = Parameter("/aws/reserved/key", KEY_PEM, secure=True)

    with pytest.raises(StoreError) as caught:
        store.apply(ParameterPlan(puts=(bad,)))

    message = str(caught.value)
    assert "/aws/reserved/key" in message
    assert "AccessDeniedException" in message
    assert "TOP-SECRET" not in message


def test_a_validation_error_quoting_the_value_is_not_repeated(ssm: Any) -> None:
    store = ParameterStore(ssm)
    name = f"{PATH}/clients/c0/g/key"
    with Stubber(ssm) as stub:
        stub.add_client_error(
            "put_parameter",
            service_error_code="ValidationException",
            service_message=f"Value '{KEY_PEM}' at 'value' failed to satisfy constraint",
        )
        with pytest.raises(StoreError) as caught:
            store.apply(ParameterPlan(puts=(Parameter(name, KEY_PEM, secure=True),)))

    assert str(caught.value) == f"Cannot write parameter {name}: ValidationException"
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_a_failed_read_names_the_path_and_code(ssm: Any) -> None:
    store = ParameterStore(ssm)
    with Stubber(ssm) as stub:
        stub.add_client_error("get_parameters_by_path", service_error_code="AccessDeniedException")
        with pytest.raises(StoreError, match=f"{PATH}: AccessDeniedException"):
            store.read(PATH)


def test_a_failed_delete_names_the_parameters_and_code(ssm: Any) -> None:
    store = ParameterStore(ssm)
    with Stubber(ssm) as stub:
        stub.add_client_error("delete_parameters", service_error_code="ThrottlingException")
        with pytest.raises(StoreError, match=f"{PATH}/group: ThrottlingException"):
            store.apply(ParameterPlan(deletes=(f"{PATH}/group",)))


def test_calls_counts_every_api_call_also_when_calls_run_at_once(ssm: Any) -> None:
    store = ParameterStore(ssm)
    desired = layout(clients=8)  # 27 parameters, 18 of them in the first wave

    publish(store, desired)

    assert store.calls == 1 + len(desired)  # one read page, one put each


def test_get_reads_one_parameter_and_none_when_absent(ssm: Any) -> None:
    store = ParameterStore(ssm)
    publish(store, layout())
    key = next(p for p in layout().values() if p.secure)

    assert store.get(key.name) == key
    assert store.get(f"{PATH}/deleting") is None
    assert store.calls == 1 + len(layout()) + 2
