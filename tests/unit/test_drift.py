"""drift.compare: each kind of difference between declaration, appliances and parameters is named,
and a group in sync has none."""

from __future__ import annotations

from dataclasses import replace

import pytest

from luna_ha.drift import (
    ApplianceView,
    Drift,
    Expected,
    Kind,
    compare,
    document_differences,
    spec_from_document,
)
from luna_ha.errors import LunaHAError
from luna_ha.layout import GroupDocument, Member, Parameter, build_layout
from luna_ha.ownership import ownership_token
from luna_ha.planner import ApplianceState, PartitionRoles, Registration

PATH = "/luna-ha/payments"
OWNER = "luna-ha-cli/payments"
TOKEN = ownership_token(OWNER)
GEN = f"web-{TOKEN}-r0"
FP = "AB:CD"
HOSTS = ("10.0.1.10", "10.0.1.11")
SERIALS = {"10.0.1.10": "1001", "10.0.1.11": "1002"}
CONNECTION = {"Host": "", "HostKeyFingerprint": "SHA256:" + "A" * 43, "ManagerSecretArn": "luna/m"}


def document(**changes: object) -> GroupDocument:
    doc = GroupDocument(
        owner=OWNER,
        label="payments-ha",
        partition="payments",
        members=tuple(Member.of(_Host(h), SERIALS[h], PATH, {**CONNECTION, "Host": h}) for h in HOSTS),
        ha_group_serial="11001",
        partition_secret_arn="luna/partition",
        kms_key_id=None,
        clients={"web": GEN},
    )
    return replace(doc, **changes)  # type: ignore[arg-type]


class _Host:
    def __init__(self, host: str) -> None:
        self.host = host


def layout(doc: GroupDocument | None = None) -> dict[str, Parameter]:
    return build_layout(
        PATH,
        doc or document(),
        {h: f"SERVER-PEM-{h}" for h in HOSTS},
        {"web": {GEN: ("CERT-VALUE", "KEY-VALUE")}},
    )


def state(host: str, **changes: object) -> ApplianceState:
    base = ApplianceState(
        hsm_serial=f"hsm-{host}",
        hsm_label="hsm",
        zeroized=False,
        attempts_left=3,
        partitions={"payments": SERIALS[host], "other": "9"},
        clients=(GEN, "human-client"),
        registrations={GEN: Registration(GEN, GEN, ("payments",), FP)},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def views(**changed: ApplianceState) -> list[ApplianceView]:
    return [
        ApplianceView(
            h,
            member=True,
            state=changed.get(h.replace(".", "_"), state(h)),
            server_cert=f"SERVER-PEM-{h}",
        )
        for h in HOSTS
    ]


EXPECTED = Expected(PATH, "payments", TOKEN, {GEN: FP})


def drift(
    appliances: list[ApplianceView] | None = None,
    existing: dict[str, Parameter] | None = None,
    desired: dict[str, Parameter] | None = None,
    expected: Expected = EXPECTED,
) -> list[tuple[Kind, str]]:
    found = compare(
        expected,
        appliances if appliances is not None else views(),
        existing if existing is not None else layout(),
        desired if desired is not None else layout(),
    )
    return [(d.kind, d.subject) for d in found]


def test_a_group_in_sync_has_no_drift() -> None:
    assert drift() == []


def test_a_registration_deleted_on_one_appliance() -> None:
    gone = state("10.0.1.11", clients=("human-client",), registrations={})
    assert drift(views(**{"10_0_1_11": gone})) == [(Kind.REGISTRATION_MISSING, "10.0.1.11")]


def test_a_partition_revoked_from_the_registration() -> None:
    revoked = state("10.0.1.10", registrations={GEN: Registration(GEN, GEN, (), FP)})
    assert drift(views(**{"10_0_1_10": revoked})) == [(Kind.PARTITION_UNASSIGNED, "10.0.1.10")]


def test_a_registration_with_another_certificate() -> None:
    other = state("10.0.1.10", registrations={GEN: Registration(GEN, GEN, ("payments",), "EF:01")})
    assert drift(views(**{"10_0_1_10": other})) == [(Kind.REGISTRATION_CERT, "10.0.1.10")]


def test_an_extra_registration_of_this_group_but_not_of_another_owner() -> None:
    extra = f"web-{TOKEN}-r7"
    foreign = "web-000000-r7"
    more = state("10.0.1.10", clients=(GEN, extra, foreign))
    assert drift(views(**{"10_0_1_10": more})) == [(Kind.REGISTRATION_EXTRA, "10.0.1.10")]


def test_registrations_on_an_appliance_that_left_the_group() -> None:
    left = ApplianceView("10.0.1.12", member=False, state=state("10.0.1.10"))
    found = compare(EXPECTED, [*views(), left], layout(), layout())
    assert [(d.kind, d.subject) for d in found] == [(Kind.REGISTRATION_EXTRA, "10.0.1.12")]
    assert "not a member" in found[0].detail


def test_a_partition_deleted_and_one_recreated_with_another_serial() -> None:
    deleted = state("10.0.1.10", partitions={"other": "9"})
    recreated = state("10.0.1.11", partitions={"payments": "2002"})
    found = drift(views(**{"10_0_1_10": deleted, "10_0_1_11": recreated}))
    assert found == [(Kind.PARTITION_MISSING, "10.0.1.10"), (Kind.PARTITION_SERIAL, "10.0.1.11")]


def test_a_zeroized_hsm() -> None:
    zeroized = state("10.0.1.10", zeroized=True, partitions={}, clients=(), registrations={})
    found = drift(views(**{"10_0_1_10": zeroized}))
    assert found[0] == (Kind.PARTITION_MISSING, "10.0.1.10")


def test_a_server_certificate_changed_is_named_once() -> None:
    appliances = views()
    appliances[1] = replace(appliances[1], server_cert="a regenerated certificate")
    desired = build_layout(
        PATH,
        document(),
        {HOSTS[0]: f"SERVER-PEM-{HOSTS[0]}", HOSTS[1]: "a regenerated certificate"},
        {"web": {GEN: ("CERT-VALUE", "KEY-VALUE")}},
    )
    assert drift(appliances, desired=desired) == [(Kind.SERVER_CERT, "10.0.1.11")]


def test_the_group_document_deleted() -> None:
    existing = layout()
    del existing[f"{PATH}/group"]
    assert drift(existing=existing) == [(Kind.PARAMETER_MISSING, f"{PATH}/group")]


def test_the_group_document_edited_names_the_keys_that_differ() -> None:
    existing = layout()
    edited = document(members=document().members[:1], kms_key_id="alias/other")
    existing[f"{PATH}/group"] = Parameter(f"{PATH}/group", edited.to_json())

    found = compare(EXPECTED, views(), existing, layout())

    assert [(d.kind, d.subject) for d in found] == [(Kind.PARAMETER_ALTERED, f"{PATH}/group")]
    assert "kms_key_id" in found[0].detail and "missing ['10.0.1.11']" in found[0].detail


def test_a_group_document_that_is_not_one() -> None:
    existing = layout()
    existing[f"{PATH}/group"] = Parameter(f"{PATH}/group", "{}")
    found = compare(EXPECTED, views(), existing, layout())
    assert [(d.kind, d.detail) for d in found] == [(Kind.PARAMETER_ALTERED, "not a readable group document")]


def test_a_current_pointer_moved_to_a_generation_no_appliance_knows() -> None:
    existing = layout()
    existing[f"{PATH}/clients/web/current"] = Parameter(f"{PATH}/clients/web/current", f"web-{TOKEN}-r9")

    found = compare(EXPECTED, views(), existing, layout())

    assert [(d.kind, d.subject) for d in found] == [
        (Kind.PARAMETER_ALTERED, f"{PATH}/clients/web/current"),
        (Kind.GENERATION_UNKNOWN, f"web-{TOKEN}-r9"),
    ]
    assert found[0].detail == f"points at web-{TOKEN}-r9, the group uses {GEN}"


def test_a_client_key_turned_into_a_string_and_an_extra_parameter() -> None:
    existing = layout()
    key = f"{PATH}/clients/web/{GEN}/key"
    existing[key] = Parameter(key, "KEY-VALUE", secure=False)
    existing[f"{PATH}/stray"] = Parameter(f"{PATH}/stray", "x")

    found = compare(EXPECTED, views(), existing, layout())

    assert [(d.kind, d.subject) for d in found] == [
        (Kind.PARAMETER_ALTERED, key),
        (Kind.PARAMETER_EXTRA, f"{PATH}/stray"),
    ]
    assert "is not a SecureString" in found[0].detail


def test_a_generation_the_group_document_publishes_that_no_appliance_knows() -> None:
    unknown = state("10.0.1.10", clients=("human-client",), registrations={})
    found = drift(views(**{"10_0_1_10": unknown, "10_0_1_11": unknown}))
    assert found[-1] == (Kind.GENERATION_UNKNOWN, GEN)


def test_unread_appliances_are_not_compared_and_the_parameters_only_for_the_document() -> None:
    unread = [ApplianceView(h, member=True, state=None) for h in HOSTS]
    existing = layout()
    assert compare(EXPECTED, unread, existing, None) == ()
    del existing[f"{PATH}/group"]
    assert [d.kind for d in compare(EXPECTED, unread, existing, None)] == [Kind.PARAMETER_MISSING]


def test_no_value_is_ever_in_a_difference() -> None:
    existing = {name: replace(p, value=p.value + " edited") for name, p in layout().items()}
    found = compare(EXPECTED, views(), existing, layout())
    assert found
    text = " ".join(str(d) for d in found)
    assert "KEY-VALUE" not in text and "CERT-VALUE" not in text and "SERVER-PEM" not in text


def test_document_differences_names_serials_and_clients() -> None:
    changed = document(
        members=(replace(document().members[0], serial="5"), document().members[1]),
        clients={"web": f"web-{TOKEN}-r1"},
    )
    differences = document_differences(document(), changed)
    assert differences == [
        "members[10.0.1.10].serial ('1001', expected '5')",
        f"clients (web: {GEN} -> web-{TOKEN}-r1)",
    ]


def test_spec_from_document_reaches_the_members_it_records() -> None:
    spec = spec_from_document(document(), PATH)
    assert [a.host for a in spec.appliances] == list(HOSTS)
    assert [(c.name, c.rotation) for c in spec.clients] == [("web", 0)]
    assert spec.parameter_path == PATH and spec.partition_name == "payments"


def test_spec_from_document_refuses_a_member_without_connection_or_a_foreign_generation() -> None:
    bare = document(members=(replace(document().members[0], connection={}),))
    with pytest.raises(LunaHAError, match="no connection properties"):
        spec_from_document(bare, PATH)
    with pytest.raises(LunaHAError, match="not one of"):
        spec_from_document(document(clients={"web": "web-000000-r0"}), PATH)


def test_str_of_a_drift() -> None:
    assert str(Drift(Kind.PARTITION_MISSING, "h", "payments")) == "h: partition missing: payments"


@pytest.mark.parametrize(
    ("roles", "detail"),
    [
        (PartitionRoles(initialized=False), "not initialized"),
        (PartitionRoles(initialized=True), "Crypto Officer is not initialized"),
        (PartitionRoles(True, co_initialized=True, co_password_expired=True), "still to be changed"),
        (PartitionRoles(True, co_initialized=True, co_locked_out=True), "locked out"),
    ],
)
def test_a_luna7_partition_that_members_cannot_use_yet(roles: PartitionRoles, detail: str) -> None:
    unready = state("10.0.1.10", roles={"payments": roles})
    found = compare(EXPECTED, views(**{"10_0_1_10": unready}), layout(), layout())
    assert [(d.kind, d.subject) for d in found] == [(Kind.PARTITION_NOT_READY, "10.0.1.10")]
    assert detail in found[0].detail


def test_a_ready_luna7_partition_is_in_sync() -> None:
    ready = state("10.0.1.10", roles={"payments": PartitionRoles(True, co_initialized=True)})
    assert drift(views(**{"10_0_1_10": ready})) == []
