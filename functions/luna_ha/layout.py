"""The SSM layout of DESIGN §4 as data, and the plan that converges Parameter Store to it (pure).

Under a group's ``ParameterPath`` (e.g. ``/luna-ha/payments``)::

    group                      String        GroupDocument.to_json()
    servers/<host>/cert        String        the appliance's server.pem
    clients/<name>/current     String        the client's current generation, e.g. web-3f2a1c-r2
    clients/<name>/<gen>/cert  String        client certificate (PEM)
    clients/<name>/<gen>/key   SecureString  client private key

**Host segments.** SSM parameter names may only contain ``a-zA-Z0-9_.-`` (and ``/`` between
segments), but ``Host`` is an IP address or a DNS name as given, and IPv6 addresses carry colons
(``fd00::10``, ``[fd00::10]``, ``fe80::1%eth0``). :func:`host_segment` keeps ``A-Za-z0-9.-``
unchanged and writes every other character, ``_`` included, as ``_`` followed by the two lowercase
hex digits of each of its UTF-8 bytes: ``fd00::10`` -> ``fd00_3a_3a10``, ``my_host`` ->
``my_5fhost``. IPv4 addresses and ordinary DNS names are therefore used as given; the encoding is
injective (two hosts never share a segment) and :func:`host_from_segment` reverses it. Readers never
need to compute it: the group document names each member's server certificate parameter.

**Deleting.** A plan deletes by exact name only, and only names below its own path: ``/luna-ha/orders``
is a string prefix of ``/luna-ha/orders2/group`` but that parameter is not below it and is never
touched. A Delete removes parameters only while :func:`owned_by` says the resource still owns them
(a replacement that keeps the ``ParameterPath`` has rewritten the group document's ``owner``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

GROUP = "group"
CURRENT = "current"

_T = TypeVar("_T")
_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")
_HOST_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
_ESCAPED = re.compile(r"_([0-9a-f]{2})")


class _HasHost(Protocol):
    @property
    def host(self) -> str: ...


@dataclass(frozen=True, repr=False)
class Parameter:
    """One SSM parameter: ``secure`` means SecureString, else String. A secure value never shows in repr."""

    name: str
    value: str
    secure: bool = False
    # When Parameter Store deletes it by itself (an Expiration policy; advanced tier): for the
    # engine's own short-lived names, which must not outlive what they guard by much, nor forever.
    expires: datetime | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        value = "'***'" if self.secure else repr(self.value)
        return f"Parameter(name={self.name!r}, value={value}, secure={self.secure})"


@dataclass(frozen=True)
class Member:
    """One HA group member, in ``Appliances`` order."""

    host: str
    serial: str
    server_cert_parameter: str
    # How the engine reaches this appliance: its non-secret properties (Host, Port, HostKey or
    # HostKeyFingerprint, ManagerSecretArn, LegacyAlgorithms). Lets a later run clean up an
    # appliance that was removed from the declaration. Never a secret value.
    connection: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def of(
        cls, appliance: _HasHost, serial: str, path: str, connection: Mapping[str, Any] | None = None
    ) -> Member:
        """The member for an appliance (anything with a ``host``), its cert parameter named by the layout."""
        return cls(
            host=appliance.host,
            serial=serial,
            server_cert_parameter=server_cert_name(path, appliance.host),
            connection=dict(connection or {}),
        )


@dataclass(frozen=True)
class GroupDocument:
    """The ``group`` parameter: what an ASG member needs to build its HA group.

    ``owner`` is the resource's physical id. It carries the partition secret's ARN, never a password.
    ``clients`` maps each client name to its current generation.
    """

    owner: str
    label: str
    partition: str
    members: tuple[Member, ...]
    ha_group_serial: str
    partition_secret_arn: str
    kms_key_id: str | None
    clients: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """Compact JSON with a stable key order (members in order, clients sorted by name)."""
        data: dict[str, Any] = {
            "owner": self.owner,
            "label": self.label,
            "partition": self.partition,
            "members": [
                {
                    "host": m.host,
                    "serial": m.serial,
                    "server_cert_parameter": m.server_cert_parameter,
                    **({"connection": dict(m.connection)} if m.connection else {}),
                }
                for m in self.members
            ],
            "ha_group_serial": self.ha_group_serial,
            "partition_secret_arn": self.partition_secret_arn,
            "kms_key_id": self.kms_key_id,
            "clients": {name: self.clients[name] for name in sorted(self.clients)},
        }
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> GroupDocument:
        """Parse :meth:`to_json` output; raises ``ValueError`` naming the first bad key."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"group document is not JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise ValueError("group document is not a JSON object")
        members_raw = data.get("members")
        if not isinstance(members_raw, list):
            raise ValueError("group document key 'members' must be a list")
        members = []
        for index, item in enumerate(members_raw):
            if not isinstance(item, dict):
                raise ValueError(f"group document key 'members[{index}]' must be an object")
            members.append(
                Member(
                    host=_str(item, "host", f"members[{index}]."),
                    serial=_str(item, "serial", f"members[{index}]."),
                    server_cert_parameter=_str(item, "server_cert_parameter", f"members[{index}]."),
                    connection=item["connection"] if isinstance(item.get("connection"), dict) else {},
                )
            )
        clients_raw = data.get("clients", {})
        if not isinstance(clients_raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in clients_raw.items()
        ):
            raise ValueError("group document key 'clients' must map names to generations")
        kms_key_id = data.get("kms_key_id")
        if kms_key_id is not None and not isinstance(kms_key_id, str):
            raise ValueError("group document key 'kms_key_id' must be a string or null")
        return cls(
            owner=_str(data, "owner"),
            label=_str(data, "label"),
            partition=_str(data, "partition"),
            members=tuple(members),
            ha_group_serial=_str(data, "ha_group_serial"),
            partition_secret_arn=_str(data, "partition_secret_arn"),
            kms_key_id=kms_key_id,
            clients=dict(clients_raw),
        )


@dataclass(frozen=True)
class ParameterPlan:
    """What to write and what to delete, in the order to do it."""

    puts: tuple[Parameter, ...] = ()
    deletes: tuple[str, ...] = ()
    #: The KMS key the SecureString puts are encrypted under; None: the account's default key.
    kms_key_id: str | None = None

    @property
    def empty(self) -> bool:
        return not self.puts and not self.deletes

    def put_waves(self) -> tuple[tuple[Parameter, ...], ...]:
        """The puts cut where their rank changes (certificates and keys, ``current`` pointers, the
        group document): the puts of one wave may be written at the same time, a wave only after
        the one before it has been written entirely."""
        return _waves(self.puts, lambda p: _put_rank(p.name))

    def delete_waves(self) -> tuple[tuple[str, ...], ...]:
        """The deletes cut the same way (the group document, deleted last, in a wave of its own)."""
        return _waves(self.deletes, _put_rank)


def _waves(items: Sequence[_T], rank: Callable[[_T], int]) -> tuple[tuple[_T, ...], ...]:
    waves: list[list[_T]] = []
    previous: int | None = None
    for item in items:
        this = rank(item)
        if not waves or this != previous:
            waves.append([])
        waves[-1].append(item)
        previous = this
    return tuple(tuple(w) for w in waves)


def _str(data: Mapping[str, Any], key: str, where: str = "") -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"group document key '{where}{key}' must be a string")
    return value


# --- names ---------------------------------------------------------------------------------------


def check_path(path: str) -> str:
    """Return ``path`` if it is a valid parameter path (``/a/b``: leading ``/``, no trailing ``/``)."""
    segments = path.split("/")
    if not path.startswith("/") or len(segments) < 2 or not all(_SEGMENT.fullmatch(s) for s in segments[1:]):
        raise ValueError(f"invalid parameter path {path!r}: expected /segment[/segment...] of [A-Za-z0-9_.-]")
    return path


def _segment(value: str, what: str) -> str:
    if not _SEGMENT.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r} for a parameter name")
    return value


def host_segment(host: str) -> str:
    """Encode a Host (IP or DNS name) as one SSM name segment; see the module docstring."""
    if not host:
        raise ValueError("empty host")
    out = []
    for char in host:
        if char in _HOST_SAFE:
            out.append(char)
        else:
            out.extend(f"_{byte:02x}" for byte in char.encode("utf-8"))
    return "".join(out)


def host_from_segment(segment: str) -> str:
    """Reverse :func:`host_segment`."""
    raw = bytearray()
    pos = 0
    for match in _ESCAPED.finditer(segment):
        raw += segment[pos : match.start()].encode("ascii")
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw += segment[pos:].encode("ascii")
    return raw.decode("utf-8")


def group_name(path: str) -> str:
    return f"{check_path(path)}/{GROUP}"


def server_cert_name(path: str, host: str) -> str:
    return f"{check_path(path)}/servers/{host_segment(host)}/cert"


def client_current_name(path: str, client: str) -> str:
    return f"{check_path(path)}/clients/{_segment(client, 'client name')}/{CURRENT}"


def client_cert_name(path: str, client: str, generation: str) -> str:
    return f"{_client_generation_prefix(path, client, generation)}/cert"


def client_key_name(path: str, client: str, generation: str) -> str:
    return f"{_client_generation_prefix(path, client, generation)}/key"


def _client_generation_prefix(path: str, client: str, generation: str) -> str:
    if generation == CURRENT:
        raise ValueError(f"generation name {CURRENT!r} is reserved")
    return (
        f"{check_path(path)}/clients/{_segment(client, 'client name')}/{_segment(generation, 'generation')}"
    )


def _below(name: str, path: str) -> bool:
    return name.startswith(path + "/")


# --- layout --------------------------------------------------------------------------------------


def build_layout(
    path: str,
    document: GroupDocument,
    server_certs: Mapping[str, str],
    client_generations: Mapping[str, Mapping[str, tuple[str, str]]],
) -> dict[str, Parameter]:
    """Every parameter the group should have under ``path``, by name.

    ``server_certs`` maps each member host to its server.pem; ``client_generations`` maps each client
    name to its published generations (``{generation: (cert_pem, key_pem)}``: the current one and,
    after a rotation, the previous one). Raises ``ValueError`` when the document and the inputs
    disagree (a member without a certificate, a member whose ``server_cert_parameter`` is not the
    layout's name, a client whose current generation is not among its generations).
    """
    layout: dict[str, Parameter] = {}

    def add(name: str, value: str, *, secure: bool = False) -> None:
        if name in layout:
            raise ValueError(f"parameter {name} would be written twice")
        layout[name] = Parameter(name, value, secure)

    add(group_name(path), document.to_json())
    for member in document.members:
        expected = server_cert_name(path, member.host)
        if member.server_cert_parameter != expected:
            raise ValueError(
                f"member {member.host}: server_cert_parameter is {member.server_cert_parameter!r}, "
                f"expected {expected!r}"
            )
        if member.host not in server_certs:
            raise ValueError(f"member {member.host}: no server certificate given")
        add(expected, server_certs[member.host])
    extra_hosts = set(server_certs) - {m.host for m in document.members}
    if extra_hosts:
        raise ValueError(f"server certificates for hosts that are not members: {sorted(extra_hosts)}")

    if set(document.clients) != set(client_generations):
        raise ValueError(
            f"clients in the document {sorted(document.clients)} differ from the generations "
            f"given {sorted(client_generations)}"
        )
    for client in sorted(client_generations):
        generations = client_generations[client]
        current = document.clients[client]
        if current not in generations:
            raise ValueError(f"client {client}: current generation {current} has no certificate")
        add(client_current_name(path, client), current)
        for generation in sorted(generations):
            cert_pem, key_pem = generations[generation]
            add(client_cert_name(path, client, generation), cert_pem)
            add(client_key_name(path, client, generation), key_pem, secure=True)
    return layout


def find_document(existing: Mapping[str, Parameter], path: str | None = None) -> GroupDocument | None:
    """The group document among ``existing`` (``<path>/group``), or None if absent or unreadable.

    Without ``path`` the shallowest name whose last segment is ``group`` is taken.
    """
    if path is not None:
        parameter = existing.get(group_name(path))
    else:
        candidates = sorted(
            (name for name in existing if name.rsplit("/", 1)[-1] == GROUP),
            key=lambda name: (name.count("/"), name),
        )
        parameter = existing[candidates[0]] if candidates else None
    if parameter is None or parameter.secure:
        return None
    try:
        return GroupDocument.from_json(parameter.value)
    except ValueError:
        return None


def owned_by(existing: Mapping[str, Parameter], owner: str, path: str | None = None) -> bool:
    """True when the group document among ``existing`` names ``owner``.

    Absent or unreadable document means "not owned": a Delete then removes nothing, because the
    parameters may belong to another resource (or to nobody this provider knows).
    """
    document = find_document(existing, path)
    return document is not None and document.owner == owner


def kms_key_changed(
    existing: Mapping[str, Parameter], document: GroupDocument, path: str | None = None
) -> bool:
    """Whether secure parameters must be rewritten because the KMS key differs from the published one.

    Parameter Store does not return a SecureString's key on read, so the published group document's
    ``kms_key_id`` is the record of it. No (readable) published document: False. A secure parameter
    without one was written by a run that had not published its document yet (client credentials
    are published first, under that run's key); the fresh credentials of this very run are among
    them and must not be written twice. If the key changed between two such runs, those keys stay
    under the earlier one until they are rewritten (a rotation).
    """
    published = find_document(existing, path)
    return published is not None and published.kms_key_id != document.kms_key_id


# --- plan ----------------------------------------------------------------------------------------


def _put_rank(name: str) -> int:
    last = name.rsplit("/", 1)[-1]
    if last == GROUP:
        return 2
    if last == CURRENT:
        return 1
    return 0


def plan_parameters(
    desired: Mapping[str, Parameter],
    existing: Mapping[str, Parameter],
    *,
    rewrite_secure: bool,
    path: str | None = None,
    kms_key_id: str | None = None,
) -> ParameterPlan:
    """The puts and deletes that turn ``existing`` into ``desired``; empty when nothing differs.

    - A desired parameter is put when it is missing, or its value or type differs; with
      ``rewrite_secure`` (the KMS key changed) every desired SecureString is put as well.
    - An existing name that is not desired is deleted, by exact name, and only when it lies below
      the path (``path`` if given, else the path of the desired group document; with neither, every
      existing name is taken to be below it, as :meth:`ParameterStore.read` returns only such names).
    - Order: certificates and keys, then ``clients/*/current`` pointers, then the group document,
      so a reader never sees a pointer to a parameter not yet written. Exception: when ``existing``
      has no group document, the group document goes first, so that a run failing half-way on a
      fresh path has already recorded its ownership and its Delete cleans up. Deletes go the other
      way round: the group document last, so ownership is the last thing to go.
    """
    if path is None:
        groups = [name for name in desired if name.rsplit("/", 1)[-1] == GROUP]
        if len(groups) == 1:
            path = groups[0].rsplit("/", 1)[0]
    if path is not None:
        check_path(path)
        outside = sorted(name for name in desired if not _below(name, path))
        if outside:
            raise ValueError(f"desired parameters outside {path}: {outside}")

    puts = []
    for name, want in desired.items():
        have = existing.get(name)
        if (
            have is None
            or have.value != want.value
            or have.secure != want.secure
            or (rewrite_secure and want.secure)
        ):
            puts.append(want)

    group_first = path is None or group_name(path) not in existing

    def put_order(parameter: Parameter) -> tuple[int, str]:
        rank = _put_rank(parameter.name)
        return (-1 if group_first and rank == 2 else rank, parameter.name)

    puts.sort(key=put_order)

    deletes = [name for name in existing if name not in desired and (path is None or _below(name, path))]
    deletes.sort(key=lambda name: (_put_rank(name), name))
    return ParameterPlan(puts=tuple(puts), deletes=tuple(deletes), kms_key_id=kms_key_id)
