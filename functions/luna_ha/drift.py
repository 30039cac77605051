"""Drift: what differs between a group's declaration, its appliances and its parameters (pure).

CloudFormation cannot detect drift of a custom resource, so ``luna-ha status`` does: the engine reads
every appliance (the same read-only observation ``plan`` makes) and the parameters under the
group's path, and :func:`compare` names each difference as a :class:`Drift`:

- on an appliance of the group: its partition missing or with another serial than the published
  group document records, or (Luna 7) not initialized or with its Crypto Officer not ready; a
  registration of this group missing, extra (not a generation the group uses, or on an appliance
  that is no longer a member), registered with another certificate than the published one, or not
  assigned the partition; a server certificate that is not the published one;
- in Parameter Store: a parameter missing, altered or extra compared with what ``apply`` would
  publish now (the group document with the differing keys named, a ``current`` pointer, a server
  certificate), and a published client generation that no appliance has a registration of.

Only names, hosts, serials and generation names go into a :class:`Drift`: never a parameter value,
a certificate, a key or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from luna_ha.errors import LunaHAError
from luna_ha.layout import (
    CURRENT,
    GROUP,
    GroupDocument,
    Parameter,
    find_document,
    group_name,
    plan_parameters,
    server_cert_name,
)
from luna_ha.ownership import ownership_token, parse_registration
from luna_ha.planner import ApplianceState, PartitionRoles
from luna_ha.spec import ApplianceSpec, ClientSpec, GroupSpec, parse_appliance

# What a group document does not record (the admin secret's ARN): status never reads that secret.
_NOT_RECORDED = ""


class Kind(StrEnum):
    PARTITION_MISSING = "partition missing"
    PARTITION_SERIAL = "partition serial differs from the group document"
    REGISTRATION_MISSING = "registration missing"
    REGISTRATION_EXTRA = "extra registration"
    REGISTRATION_CERT = "registered certificate differs from the published one"
    PARTITION_UNASSIGNED = "partition not assigned"
    PARTITION_NOT_READY = "partition not ready (Luna 7)"
    SERVER_CERT = "server certificate changed"
    PARAMETER_MISSING = "parameter missing"
    PARAMETER_ALTERED = "parameter altered"
    PARAMETER_EXTRA = "extra parameter"
    GENERATION_UNKNOWN = "generation no appliance knows"


@dataclass(frozen=True)
class Drift:
    """One difference: its kind, what it is about (a host, a parameter name or a generation), and
    a sentence of detail (names only)."""

    kind: Kind
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.kind.value}: {self.detail}"


@dataclass(frozen=True)
class ApplianceView:
    """What reading one appliance found. ``member`` is False for an appliance the published group
    document records but the declaration no longer names. ``state`` is None when it was not read."""

    host: str
    member: bool
    state: ApplianceState | None
    server_cert: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Expected:
    """What the declaration wants: the group's path, partition and owner token, and each wanted
    registration name with its published certificate's Luna fingerprint (None: not published)."""

    path: str
    partition: str
    token: str
    registrations: Mapping[str, str | None]


def compare(
    expected: Expected,
    appliances: Sequence[ApplianceView],
    existing: Mapping[str, Parameter],
    desired: Mapping[str, Parameter] | None,
) -> tuple[Drift, ...]:
    """Every difference, appliances first (in the order given), then parameters by name, then
    unknown generations. ``desired`` is what ``apply`` would publish (None when it cannot be known,
    because an appliance could not be read: parameters are then only checked for a group document).
    """
    found: list[Drift] = []
    published = find_document(existing, expected.path)
    serials = {m.host: m.serial for m in published.members} if published is not None else {}
    covered: set[str] = set()
    for view in appliances:
        if view.state is None:
            continue
        found += _appliance_drift(expected, view, view.state, serials.get(view.host))
        cert_name = server_cert_name(expected.path, view.host)
        have = existing.get(cert_name)
        if (
            view.member
            and view.server_cert is not None
            and have is not None
            and have.value != view.server_cert
        ):
            found.append(
                Drift(Kind.SERVER_CERT, view.host, f"server.pem is not the one published as {cert_name}")
            )
            covered.add(cert_name)
    found += _parameter_drift(expected.path, existing, desired, published, covered)
    found += _unknown_generations(expected.path, appliances, existing, published)
    return tuple(found)


def _appliance_drift(
    expected: Expected, view: ApplianceView, state: ApplianceState, published_serial: str | None
) -> list[Drift]:
    host, partition = view.host, expected.partition
    found: list[Drift] = []
    owned = sorted(name for name in state.clients if parse_registration(name, expected.token) is not None)
    if not view.member:
        for name in owned:
            found.append(Drift(Kind.REGISTRATION_EXTRA, host, f"{name} on an appliance that is not a member"))
        return found
    if state.zeroized:
        return [Drift(Kind.PARTITION_MISSING, host, f"{partition}: the HSM is zeroized")]
    serial = state.partitions.get(partition)
    if serial is None:
        found.append(Drift(Kind.PARTITION_MISSING, host, partition))
    elif (roles := state.roles.get(partition)) is not None and (problem := _not_ready(roles)):
        found.append(Drift(Kind.PARTITION_NOT_READY, host, f"{partition}: {problem}"))
    if serial is not None and published_serial and serial != published_serial:
        found.append(
            Drift(
                Kind.PARTITION_SERIAL,
                host,
                f"{partition} has serial {serial}, the group document records {published_serial}",
            )
        )
    for name, fingerprint in sorted(expected.registrations.items()):
        if name not in state.clients:
            found.append(Drift(Kind.REGISTRATION_MISSING, host, name))
            continue
        registration = state.registrations.get(name)
        if registration is None:
            continue  # listed but not shown (it vanished while observed): the next read tells
        if fingerprint is not None and registration.fingerprint not in (None, fingerprint):
            found.append(Drift(Kind.REGISTRATION_CERT, host, name))
        if serial is not None and partition not in registration.partitions:
            found.append(Drift(Kind.PARTITION_UNASSIGNED, host, f"{name} is not assigned {partition}"))
    for name in owned:
        if name not in expected.registrations:
            found.append(Drift(Kind.REGISTRATION_EXTRA, host, f"{name} is not a generation the group uses"))
    return found


def _not_ready(roles: PartitionRoles) -> str | None:
    """What a 7.x partition still lacks before members can log in (None: nothing)."""
    if not roles.initialized:
        return "not initialized"
    if not roles.co_initialized:
        return "its Crypto Officer is not initialized"
    if roles.co_locked_out:
        return "its Crypto Officer is locked out"
    if roles.co_password_expired:
        return "its Crypto Officer's first password is still to be changed"
    return None


def _parameter_drift(
    path: str,
    existing: Mapping[str, Parameter],
    desired: Mapping[str, Parameter] | None,
    published: GroupDocument | None,
    covered: set[str],
) -> list[Drift]:
    group = group_name(path)
    if desired is None:
        if group not in existing:
            return [Drift(Kind.PARAMETER_MISSING, group, "the group document")]
        return []
    plan = plan_parameters(desired, existing, rewrite_secure=False, path=path)
    found: list[Drift] = []
    for parameter in sorted(plan.puts, key=lambda p: p.name):
        name = parameter.name
        if name in covered:
            continue
        have = existing.get(name)
        if have is None:
            found.append(Drift(Kind.PARAMETER_MISSING, name, _what(path, name)))
        elif name == group:
            found.append(Drift(Kind.PARAMETER_ALTERED, name, _document_detail(published, parameter.value)))
        elif have.secure != parameter.secure:
            kind = "SecureString" if parameter.secure else "String"
            found.append(Drift(Kind.PARAMETER_ALTERED, name, f"{_what(path, name)} is not a {kind}"))
        elif name.endswith("/" + CURRENT):
            found.append(
                Drift(
                    Kind.PARAMETER_ALTERED, name, f"points at {have.value}, the group uses {parameter.value}"
                )
            )
        else:
            found.append(Drift(Kind.PARAMETER_ALTERED, name, f"{_what(path, name)} differs"))
    for name in sorted(plan.deletes):
        found.append(Drift(Kind.PARAMETER_EXTRA, name, "not a parameter the group publishes"))
    return found


def _what(path: str, name: str) -> str:
    rest = name[len(path) + 1 :].split("/")
    if rest == [GROUP]:
        return "the group document"
    if rest[0] == "servers":
        return "a member's server certificate"
    if rest[-1] == CURRENT:
        return f"client {rest[1]}'s current generation"
    if rest[-1] == "key":
        return f"client key of {rest[-2]}"
    if rest[-1] == "cert":
        return f"client certificate of {rest[-2]}"
    return "a parameter"


def _document_detail(published: GroupDocument | None, wanted_json: str) -> str:
    if published is None:
        return "not a readable group document"
    wanted = GroupDocument.from_json(wanted_json)
    differing = document_differences(published, wanted)
    return "differs in " + "; ".join(differing) if differing else "differs in its formatting"


def document_differences(published: GroupDocument, wanted: GroupDocument) -> list[str]:
    """The keys in which two group documents differ, each with the names or serials involved (the
    values of these keys are names, ARNs and serials: none is a secret)."""
    differing: list[str] = []
    for key in ("owner", "label", "partition", "ha_group_serial", "partition_secret_arn", "kms_key_id"):
        have, want = getattr(published, key), getattr(wanted, key)
        if have != want:
            differing.append(f"{key} ({have!r}, expected {want!r})")
    have_members = {m.host: m for m in published.members}
    want_members = {m.host: m for m in wanted.members}
    added = [h for h in want_members if h not in have_members]
    removed = [h for h in have_members if h not in want_members]
    if added or removed:
        differing.append(f"members (missing {added}, not members {removed})")
    elif list(have_members) != list(want_members):
        differing.append("members' order")
    for host in (h for h in want_members if h in have_members):
        have, want = have_members[host], want_members[host]
        if have.serial != want.serial:
            differing.append(f"members[{host}].serial ({have.serial!r}, expected {want.serial!r})")
        if have.server_cert_parameter != want.server_cert_parameter:
            differing.append(f"members[{host}].server_cert_parameter")
        if dict(have.connection) != dict(want.connection):
            keys = sorted(
                k
                for k in set(have.connection) | set(want.connection)
                if have.connection.get(k) != want.connection.get(k)
            )
            differing.append(f"members[{host}].connection ({', '.join(keys)})")
    if published.clients != wanted.clients:
        names = sorted(
            c
            for c in set(published.clients) | set(wanted.clients)
            if published.clients.get(c) != wanted.clients.get(c)
        )
        shown = ", ".join(f"{c}: {published.clients.get(c)} -> {wanted.clients.get(c)}" for c in names)
        differing.append(f"clients ({shown})")
    return differing


def _unknown_generations(
    path: str,
    appliances: Sequence[ApplianceView],
    existing: Mapping[str, Parameter],
    published: GroupDocument | None,
) -> list[Drift]:
    read = [v.state for v in appliances if v.member and v.state is not None]
    if not read:
        return []
    known = {name for state in read for name in state.clients}
    named: dict[str, str] = {}  # generation -> where it is published
    if published is not None:
        for client, generation in published.clients.items():
            named.setdefault(generation, f"the group document's current generation of {client}")
    prefix = f"{path}/clients/"
    for name, parameter in existing.items():
        if name.startswith(prefix) and name.endswith("/" + CURRENT) and not parameter.secure:
            named.setdefault(parameter.value, f"{name}")
    return [
        Drift(Kind.GENERATION_UNKNOWN, generation, f"published in {where}; no appliance has it registered")
        for generation, where in sorted(named.items())
        if generation not in known
    ]


def spec_from_document(document: GroupDocument, path: str) -> GroupSpec:
    """The declaration a published group document stands for (``luna-ha status --parameter-path``):
    its members, reached with the connection properties recorded for them, and its clients at their
    current generations. Raises :class:`LunaHAError` when a member has no usable connection
    recorded (a document written by an older version, or edited) or a client's generation is not
    one of the owner's."""
    appliances: list[ApplianceSpec] = []
    for member in document.members:
        if not member.connection:
            raise LunaHAError(
                f"{group_name(path)}: member {member.host} has no connection properties recorded; "
                "use luna-ha status -c with the group file"
            )
        appliances.append(
            parse_appliance(dict(member.connection), f"{group_name(path)} member {member.host}")
        )
    token = ownership_token(document.owner)
    clients: list[ClientSpec] = []
    for name, generation in sorted(document.clients.items()):
        parsed = parse_registration(generation, token)
        if parsed is None or parsed.client != name:
            raise LunaHAError(
                f"{group_name(path)}: client {name}'s generation {generation!r} is not one of "
                f"{document.owner}'s registrations"
            )
        clients.append(ClientSpec(name, parsed.generation))
    return GroupSpec(
        group_label=document.label,
        partition_name=document.partition,
        admin_secret_arn=_NOT_RECORDED,
        partition_secret_arn=document.partition_secret_arn,
        appliances=tuple(appliances),
        clients=tuple(clients),
        parameter_path=path,
        kms_key_id=document.kms_key_id,
    )
