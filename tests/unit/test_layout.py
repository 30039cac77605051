"""The SSM layout of DESIGN §4 and the plan that converges Parameter Store to it."""

from __future__ import annotations

import dataclasses

import pytest

from luna_ha.layout import (
    GroupDocument,
    Member,
    Parameter,
    build_layout,
    client_cert_name,
    find_document,
    host_from_segment,
    host_segment,
    kms_key_changed,
    owned_by,
    plan_parameters,
    server_cert_name,
)

PATH = "/luna-ha/payments"
OWNER = "stack-Group-payments-1a2b3c"
KEY_PEM = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"


def document(
    path: str = PATH,
    hosts: tuple[str, ...] = ("10.0.1.10", "10.0.1.11"),
    clients: dict[str, str] | None = None,
    owner: str = OWNER,
    kms_key_id: str | None = "alias/luna-ha",
) -> GroupDocument:
    return GroupDocument(
        owner=owner,
        label="payments-ha",
        partition="payments",
        members=tuple(
            Member(host=h, serial=f"15{i}000", server_cert_parameter=server_cert_name(path, h))
            for i, h in enumerate(hosts)
        ),
        ha_group_serial="115000",
        partition_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:partition-AbCdEf",
        kms_key_id=kms_key_id,
        clients={"web": "web-3f2a1c-r0"} if clients is None else clients,
    )


def layout_for(doc: GroupDocument, path: str = PATH) -> dict[str, Parameter]:
    return build_layout(
        path,
        doc,
        {m.host: f"SERVER CERT {m.host}" for m in doc.members},
        {name: {gen: (f"CERT {gen}", KEY_PEM)} for name, gen in doc.clients.items()},
    )


# --- the layout ----------------------------------------------------------------------------------


def test_layout_has_every_parameter_of_design_section_4() -> None:
    layout = layout_for(document())

    assert sorted(layout) == [
        "/luna-ha/payments/clients/web/current",
        "/luna-ha/payments/clients/web/web-3f2a1c-r0/cert",
        "/luna-ha/payments/clients/web/web-3f2a1c-r0/key",
        "/luna-ha/payments/group",
        "/luna-ha/payments/servers/10.0.1.10/cert",
        "/luna-ha/payments/servers/10.0.1.11/cert",
    ]
    assert layout["/luna-ha/payments/clients/web/current"].value == "web-3f2a1c-r0"
    assert layout["/luna-ha/payments/servers/10.0.1.11/cert"].value == "SERVER CERT 10.0.1.11"
    assert layout["/luna-ha/payments/clients/web/web-3f2a1c-r0/cert"].value == "CERT web-3f2a1c-r0"


def test_only_client_private_keys_are_secure() -> None:
    layout = layout_for(document())

    assert [name for name, p in layout.items() if p.secure] == [
        "/luna-ha/payments/clients/web/web-3f2a1c-r0/key"
    ]


def test_layout_publishes_every_given_generation_of_a_client() -> None:
    doc = document(clients={"web": "web-3f2a1c-r2"})
    layout = build_layout(
        PATH,
        doc,
        {m.host: "PEM" for m in doc.members},
        {"web": {"web-3f2a1c-r1": ("C1", "K1"), "web-3f2a1c-r2": ("C2", "K2")}},
    )

    assert client_cert_name(PATH, "web", "web-3f2a1c-r1") in layout
    assert client_cert_name(PATH, "web", "web-3f2a1c-r2") in layout
    assert layout[f"{PATH}/clients/web/current"].value == "web-3f2a1c-r2"


def test_a_member_of_an_appliance_names_its_server_cert_parameter_by_the_layout() -> None:
    @dataclasses.dataclass(frozen=True)
    class Appliance:
        host: str

    member = Member.of(Appliance("fd00::10"), "150000", PATH)

    assert member == Member("fd00::10", "150000", "/luna-ha/payments/servers/fd00_3a_3a10/cert")


def test_group_document_round_trips_through_json() -> None:
    doc = document(clients={"web": "web-3f2a1c-r1", "batch": "batch-3f2a1c-r0"})

    assert GroupDocument.from_json(doc.to_json()) == doc


def test_group_document_json_is_compact_with_a_stable_key_order() -> None:
    doc = document(clients={"web": "w", "batch": "b"})
    same = dataclasses.replace(doc, clients={"batch": "b", "web": "w"})

    text = doc.to_json()
    assert text == same.to_json()
    assert " " not in text
    assert text.startswith(
        '{"owner":"stack-Group-payments-1a2b3c","label":"payments-ha","partition":"payments",'
    )
    assert '"clients":{"batch":"b","web":"w"}' in text


def test_group_document_names_the_partition_secret_arn_and_each_server_cert_parameter() -> None:
    published = layout_for(document())[f"{PATH}/group"]

    assert not published.secure
    doc = GroupDocument.from_json(published.value)
    assert doc.partition_secret_arn.startswith("arn:aws:secretsmanager:")
    assert [m.server_cert_parameter for m in doc.members] == [
        "/luna-ha/payments/servers/10.0.1.10/cert",
        "/luna-ha/payments/servers/10.0.1.11/cert",
    ]


def test_group_document_from_json_names_the_bad_key() -> None:
    with pytest.raises(ValueError, match="'owner'"):
        GroupDocument.from_json('{"label":"x","members":[]}')
    with pytest.raises(ValueError, match="not JSON"):
        GroupDocument.from_json("{")


def test_layout_refuses_a_document_that_disagrees_with_its_inputs() -> None:
    doc = document()
    with pytest.raises(ValueError, match=r"10\.0\.1\.11: no server certificate"):
        build_layout(PATH, doc, {"10.0.1.10": "PEM"}, {"web": {"web-3f2a1c-r0": ("C", "K")}})
    with pytest.raises(ValueError, match="current generation"):
        build_layout(PATH, doc, {m.host: "PEM" for m in doc.members}, {"web": {"web-other-r9": ("C", "K")}})
    with pytest.raises(ValueError, match="server_cert_parameter"):
        build_layout("/luna-ha/other", doc, {m.host: "PEM" for m in doc.members}, {"web": {}})


@pytest.mark.parametrize("path", ["luna-ha/x", "/luna-ha/x/", "/luna ha", "/", "/a//b"])
def test_invalid_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="invalid parameter path"):
        server_cert_name(path, "10.0.1.10")


def test_secure_parameter_repr_hides_the_value() -> None:
    key = Parameter("/p/clients/web/g/key", KEY_PEM, secure=True)
    cert = Parameter("/p/clients/web/g/cert", "CERT", secure=False)

    assert "c2VjcmV0" not in repr(key)
    assert "c2VjcmV0" not in str(key)
    assert "CERT" in repr(cert)


# --- hosts as name segments ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["10.0.1.10", "hsm-a.example.com", "HSM-A.Example.COM"])
def test_ipv4_and_dns_hosts_are_used_as_given(host: str) -> None:
    assert server_cert_name(PATH, host) == f"{PATH}/servers/{host}/cert"


@pytest.mark.parametrize(
    ("host", "segment"),
    [
        ("fd00::10", "fd00_3a_3a10"),
        ("[fd00::10]", "_5bfd00_3a_3a10_5d"),
        ("fe80::1%eth0", "fe80_3a_3a1_25eth0"),
        ("my_host", "my_5fhost"),
    ],
)
def test_ipv6_colons_and_other_characters_are_encoded_reversibly(host: str, segment: str) -> None:
    assert host_segment(host) == segment
    assert host_from_segment(segment) == host


def test_host_encoding_never_maps_two_hosts_to_one_segment() -> None:
    assert host_segment("a_3ab") != host_segment("a:b")


def test_ipv6_members_get_valid_parameter_names() -> None:
    doc = document(hosts=("fd00::10", "fd00::11"))
    layout = layout_for(doc)

    servers = sorted(name for name in layout if "/servers/" in name)
    assert servers == [
        "/luna-ha/payments/servers/fd00_3a_3a10/cert",
        "/luna-ha/payments/servers/fd00_3a_3a11/cert",
    ]
    assert all(":" not in name for name in layout)
    assert GroupDocument.from_json(layout[f"{PATH}/group"].value).members[0].host == "fd00::10"


# --- the plan ------------------------------------------------------------------------------------


def test_first_publish_puts_everything_and_deletes_nothing() -> None:
    desired = layout_for(document())

    plan = plan_parameters(desired, {}, rewrite_secure=False)

    assert sorted(p.name for p in plan.puts) == sorted(desired)
    assert plan.deletes == ()


def test_first_publish_writes_the_group_document_first_to_record_ownership() -> None:
    plan = plan_parameters(layout_for(document()), {}, rewrite_secure=False)

    assert plan.puts[0].name == f"{PATH}/group"


def test_no_change_plan_is_empty() -> None:
    desired = layout_for(document())

    plan = plan_parameters(desired, dict(desired), rewrite_secure=False)

    assert plan.puts == ()
    assert plan.deletes == ()
    assert plan.empty


def test_plan_puts_only_the_parameters_that_differ() -> None:
    existing = layout_for(document())
    desired = dict(existing)
    changed = f"{PATH}/servers/10.0.1.10/cert"
    desired[changed] = Parameter(changed, "NEW SERVER CERT")

    plan = plan_parameters(desired, existing, rewrite_secure=False)

    assert plan.puts == (desired[changed],)
    assert plan.deletes == ()


def test_a_type_change_alone_is_a_difference() -> None:
    name = f"{PATH}/clients/web/web-3f2a1c-r0/key"
    existing = {name: Parameter(name, KEY_PEM, secure=False)}
    desired = {name: Parameter(name, KEY_PEM, secure=True)}

    assert plan_parameters(desired, existing, rewrite_secure=False, path=PATH).puts == (desired[name],)


def test_kms_key_change_rewrites_every_secure_parameter_and_nothing_else() -> None:
    existing = layout_for(document(kms_key_id="alias/old"))
    new_doc = document(kms_key_id="alias/new")
    desired = layout_for(new_doc)

    assert kms_key_changed(existing, new_doc)
    plan = plan_parameters(desired, existing, rewrite_secure=kms_key_changed(existing, new_doc))

    assert [p.name for p in plan.puts] == [
        f"{PATH}/clients/web/web-3f2a1c-r0/key",
        f"{PATH}/group",  # the document records the new key id
    ]


def test_unchanged_kms_key_is_not_a_reason_to_rewrite() -> None:
    existing = layout_for(document())

    assert not kms_key_changed(existing, document())


def test_rotation_puts_new_generation_then_pointer_then_document_and_drops_the_oldest() -> None:
    doc_r1 = document(clients={"web": "web-3f2a1c-r1"})
    doc_r2 = document(clients={"web": "web-3f2a1c-r2"})
    pems = {m.host: "PEM" for m in doc_r1.members}
    existing = build_layout(PATH, doc_r1, pems, {"web": {"r0": ("C0", "K0"), "web-3f2a1c-r1": ("C1", "K1")}})
    desired = build_layout(
        PATH, doc_r2, pems, {"web": {"web-3f2a1c-r1": ("C1", "K1"), "web-3f2a1c-r2": ("C2", "K2")}}
    )

    plan = plan_parameters(desired, existing, rewrite_secure=False)

    assert [p.name for p in plan.puts] == [
        f"{PATH}/clients/web/web-3f2a1c-r2/cert",
        f"{PATH}/clients/web/web-3f2a1c-r2/key",
        f"{PATH}/clients/web/current",
        f"{PATH}/group",
    ]
    assert plan.deletes == (f"{PATH}/clients/web/r0/cert", f"{PATH}/clients/web/r0/key")


def test_puts_of_one_rank_form_a_wave_that_may_be_written_at_once() -> None:
    doc_r1 = document(clients={"web": "web-3f2a1c-r1"})
    doc_r2 = document(clients={"web": "web-3f2a1c-r2"}, hosts=("10.0.1.10", "10.0.1.11", "10.0.1.12"))
    existing = layout_for(doc_r1)
    desired = build_layout(
        PATH,
        doc_r2,
        {m.host: f"SERVER CERT {m.host}" for m in doc_r2.members},
        {"web": {"web-3f2a1c-r1": ("CERT web-3f2a1c-r1", KEY_PEM), "web-3f2a1c-r2": ("C2", "K2")}},
    )

    waves = plan_parameters(desired, existing, rewrite_secure=False).put_waves()

    assert [[p.name for p in wave] for wave in waves] == [
        [
            f"{PATH}/clients/web/web-3f2a1c-r2/cert",
            f"{PATH}/clients/web/web-3f2a1c-r2/key",
            f"{PATH}/servers/10.0.1.12/cert",
        ],
        [f"{PATH}/clients/web/current"],
        [f"{PATH}/group"],
    ]


def test_on_a_fresh_path_the_group_document_is_a_wave_of_its_own_before_the_rest() -> None:
    waves = plan_parameters(layout_for(document()), {}, rewrite_secure=False).put_waves()

    assert [p.name for p in waves[0]] == [f"{PATH}/group"]
    assert [p.name for p in waves[-1]] == [f"{PATH}/clients/web/current"]
    assert sum(len(w) for w in waves) == len(layout_for(document()))


def test_deletes_come_in_waves_with_the_group_document_alone_and_last() -> None:
    existing = layout_for(document(hosts=("10.0.1.10", "10.0.1.11", "10.0.1.12")))

    waves = plan_parameters({}, existing, rewrite_secure=False, path=PATH).delete_waves()

    assert waves[-1] == (f"{PATH}/group",)
    assert waves[-2] == (f"{PATH}/clients/web/current",)
    assert len(waves[0]) == len(existing) - 2


def test_an_empty_plan_has_no_waves() -> None:
    plan = plan_parameters({}, {}, rewrite_secure=False, path=PATH)

    assert plan.put_waves() == () and plan.delete_waves() == ()


def test_removed_client_and_appliance_parameters_are_deleted_by_exact_name() -> None:
    existing = layout_for(document(clients={"web": "web-3f2a1c-r0", "batch": "batch-3f2a1c-r0"}))
    desired = layout_for(document(hosts=("10.0.1.10",)))

    plan = plan_parameters(desired, existing, rewrite_secure=False)

    assert plan.deletes == (
        f"{PATH}/clients/batch/batch-3f2a1c-r0/cert",
        f"{PATH}/clients/batch/batch-3f2a1c-r0/key",
        f"{PATH}/servers/10.0.1.11/cert",
        f"{PATH}/clients/batch/current",
    )


def test_a_path_that_is_a_string_prefix_of_another_never_touches_the_other() -> None:
    orders = "/luna-ha/orders"
    orders2 = layout_for(document(path="/luna-ha/orders2"), path="/luna-ha/orders2")
    existing = {**layout_for(document(path=orders), path=orders), **orders2}
    desired = layout_for(document(path=orders, clients={}), path=orders)

    plan = plan_parameters(desired, existing, rewrite_secure=False)

    assert plan.deletes == (
        "/luna-ha/orders/clients/web/web-3f2a1c-r0/cert",
        "/luna-ha/orders/clients/web/web-3f2a1c-r0/key",
        "/luna-ha/orders/clients/web/current",
    )
    assert not any(name.startswith("/luna-ha/orders2") for name in plan.deletes)
    assert not any(p.name.startswith("/luna-ha/orders2") for p in plan.puts)


def test_removing_everything_with_an_explicit_path_spares_a_prefix_sibling() -> None:
    orders = layout_for(document(path="/luna-ha/orders"), path="/luna-ha/orders")
    orders2 = layout_for(document(path="/luna-ha/orders2"), path="/luna-ha/orders2")

    plan = plan_parameters({}, {**orders, **orders2}, rewrite_secure=False, path="/luna-ha/orders")

    assert set(plan.deletes) == set(orders)
    assert plan.deletes[-1] == "/luna-ha/orders/group"  # ownership is the last thing to go


def test_desired_parameters_outside_the_path_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        plan_parameters({"/elsewhere/x": Parameter("/elsewhere/x", "v")}, {}, rewrite_secure=False, path=PATH)


# --- ownership -----------------------------------------------------------------------------------


def test_the_resource_owns_parameters_whose_group_document_names_it() -> None:
    existing = layout_for(document())

    assert owned_by(existing, OWNER)
    assert owned_by(existing, OWNER, path=PATH)
    assert find_document(existing) == document()


def test_a_replacement_on_the_same_path_takes_ownership_from_the_old_id() -> None:
    existing = layout_for(document(owner="stack-Group-payments-NEW"))

    assert not owned_by(existing, OWNER)


def test_nothing_is_owned_without_a_readable_group_document() -> None:
    cert = f"{PATH}/servers/10.0.1.10/cert"
    group = f"{PATH}/group"

    assert not owned_by({}, OWNER)
    assert not owned_by({cert: Parameter(cert, "PEM")}, OWNER)
    assert not owned_by({group: Parameter(group, "not json")}, OWNER)
