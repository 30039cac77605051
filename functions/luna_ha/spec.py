"""Resource properties and CLI group files -> validated, typed, frozen values (pure).

The contract is DESIGN §2. Rules that hold for every property:

* CloudFormation stringifies every scalar, so each scalar may arrive as its real type or as a string:
  ``22`` or ``"22"``, ``true`` or ``"true"``. Nothing else is accepted: no floats, no lists where a
  scalar belongs, no booleans where a number belongs.
* An *optional* property given as ``null`` or as an empty string is treated as absent (a template
  passes ``""`` from a parameter whose default is empty). A required one is reported missing.
* ``ServiceToken`` and ``ServiceTimeout`` belong to CloudFormation and are ignored. Any other unknown
  property is rejected by name, at any depth (``Appliances[2].Hots``).
* Every error is a :class:`~luna_ha.errors.SpecError` naming the property path as the user wrote it
  and saying what is expected. A value shown in a message is cut to 40 characters and non-printable or
  non-ASCII characters are escaped.
* Identifiers (labels, names, hosts) are printable ASCII only and are checked against an allow-list,
  so nothing that reaches a lunash command line can carry ``;``, quotes, newlines or a leading ``-``.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import ipaddress
import json
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from luna_ha.errors import SpecError

DeletionPolicy = Literal["Retain", "Delete"]
ExistingPartitionPolicy = Literal["Fail", "Adopt"]

DEFAULT_PORT: Final = 22
#: The Luna 7 REST service's port (the appliance's `webserver`).
DEFAULT_REST_PORT: Final = 8443
DEFAULT_PARAMETER_ROOT: Final = "/luna-ha"
MAX_APPLIANCES: Final = 16
MAX_CLIENTS: Final = 20
MAX_ROTATION: Final = 1_000_000
HOST_KEY_ALGORITHMS: Final = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
)
IGNORED_PROPERTIES: Final = frozenset({"ServiceToken", "ServiceTimeout"})

_SHOW_LIMIT = 40
_MAX_GROUP_FILE_BYTES = 1 << 20

# --- allow-lists (re.ASCII: \d, \w and case folding never admit non-ASCII) ---------------------------

_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}", re.ASCII)
_CLIENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,15}", re.ASCII)
_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
_NUMERIC = re.compile(r"[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,9}", re.ASCII)
#: The textual form of every pin: SSH host keys, REST certificates (``ssh-keygen -lf``'s form).
FINGERPRINT_RE: Final = re.compile(r"SHA256:[A-Za-z0-9+/]{43}", re.ASCII)
_PARAMETER_PATH = re.compile(r"(?:/[A-Za-z0-9_.-]+)+", re.ASCII)

_ARN_HEAD = r"arn:aws(?:-[a-z]+)*:{service}:[a-z]{{2}}(?:-[a-z]+)+-[0-9]{{1,2}}:[0-9]{{12}}:"
_SM_NAME_CHARS = r"[A-Za-z0-9/_+=.@-]{1,512}"
_SECRET_NAME = re.compile(_SM_NAME_CHARS, re.ASCII)
_SECRET_ARN = re.compile(_ARN_HEAD.format(service="secretsmanager") + "secret:" + _SM_NAME_CHARS, re.ASCII)
_KMS_KEY = r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
_KMS_ALIAS = r"alias/[A-Za-z0-9/_-]{1,250}"
_KMS_KEY_ID = re.compile(
    rf"{_KMS_KEY}|{_KMS_ALIAS}|{_ARN_HEAD.format(service='kms')}(?:key/{_KMS_KEY}|{_KMS_ALIAS})", re.ASCII
)

_PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))


# --- values --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplianceSpec:
    """One entry of ``Appliances``. Exactly one of ``host_key`` / ``host_key_fingerprint`` is set.

    ``host_key`` is canonical ``<algorithm> <base64>`` (a comment the user wrote is dropped).
    """

    host: str
    _: KW_ONLY
    port: int = DEFAULT_PORT
    host_key: str | None = None
    host_key_fingerprint: str | None = None
    manager_secret_arn: str
    initialize: bool = False
    hsm_label: str | None = None
    legacy_algorithms: bool = False
    #: Luna 7: the REST service's port and the SHA256 fingerprint of its TLS certificate (None: no
    #: REST, which a Luna 7 appliance needs for its partition's Crypto Officer).
    rest_port: int = DEFAULT_REST_PORT
    rest_certificate_fingerprint: str | None = None

    @property
    def host_identity(self) -> str:
        """The host as compared for uniqueness: IP addresses normalised, DNS names lower-cased."""
        return _host_identity(self.host)

    @property
    def fingerprint(self) -> str:
        """The SHA256 fingerprint of the pinned host key (``ssh-keygen -lf`` form): the appliance's
        identity for secrets and coordination, whichever form of the pin was given."""
        if self.host_key_fingerprint is not None:
            return self.host_key_fingerprint
        return host_key_fingerprint(self.host_key or "")

    def to_properties(self) -> dict[str, object]:
        props: dict[str, object] = {"Host": self.host, "Port": self.port}
        if self.host_key is not None:
            props["HostKey"] = self.host_key
        if self.host_key_fingerprint is not None:
            props["HostKeyFingerprint"] = self.host_key_fingerprint
        props["ManagerSecretArn"] = self.manager_secret_arn
        props["Initialize"] = self.initialize
        if self.hsm_label is not None:
            props["HsmLabel"] = self.hsm_label
        props["LegacyAlgorithms"] = self.legacy_algorithms
        if self.rest_certificate_fingerprint is not None:
            props["RestPort"] = self.rest_port
            props["RestCertificateFingerprint"] = self.rest_certificate_fingerprint
        return props


@dataclass(frozen=True)
class ClientSpec:
    """One entry of ``Clients``: bump ``rotation`` to rotate the client's certificate."""

    name: str
    rotation: int = 0

    def to_properties(self) -> dict[str, object]:
        return {"Name": self.name, "Rotation": self.rotation}


@dataclass(frozen=True)
class GroupSpec:
    """A validated ``Custom::LunaHAGroup`` (or CLI group file). Hashable; equal when the desired state is.

    ``parameter_path`` left empty means the default ``/luna-ha/<PartitionName>``. ``warnings`` are
    advice for the user (e.g. a one-member "HA" group) and take no part in equality.
    """

    group_label: str
    partition_name: str
    admin_secret_arn: str
    partition_secret_arn: str
    appliances: tuple[ApplianceSpec, ...]
    clients: tuple[ClientSpec, ...] = ()
    parameter_path: str = ""
    kms_key_id: str | None = None
    partition_deletion_policy: DeletionPolicy = "Retain"
    existing_partition: ExistingPartitionPolicy = "Fail"
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        # Accept lists from hand-built specs (tests); store tuples so the value stays hashable.
        object.__setattr__(self, "appliances", tuple(self.appliances))
        object.__setattr__(self, "clients", tuple(self.clients))
        object.__setattr__(self, "warnings", tuple(self.warnings))
        if not self.parameter_path:
            object.__setattr__(self, "parameter_path", default_parameter_path(self.partition_name))

    def to_properties(self) -> dict[str, object]:
        """The canonical property form: every default spelled out, real types, no ``ServiceToken``.

        ``parse_properties(spec.to_properties()) == spec`` for every parsed spec.
        """
        props: dict[str, object] = {
            "GroupLabel": self.group_label,
            "PartitionName": self.partition_name,
            "AdminSecretArn": self.admin_secret_arn,
            "PartitionSecretArn": self.partition_secret_arn,
            "Appliances": [a.to_properties() for a in self.appliances],
            "Clients": [c.to_properties() for c in self.clients],
            "ParameterPath": self.parameter_path,
        }
        if self.kms_key_id is not None:
            props["KmsKeyId"] = self.kms_key_id
        props["PartitionDeletionPolicy"] = self.partition_deletion_policy
        props["ExistingPartition"] = self.existing_partition
        return props


def sha256_fingerprint(data: bytes) -> str:
    """``SHA256:`` + the unpadded base64 of the SHA-256 of ``data`` (a key blob, a certificate's DER)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def host_key_fingerprint(key_line: str) -> str:
    """``ssh-keygen -lf``'s SHA256 fingerprint of an OpenSSH public key line."""
    return sha256_fingerprint(base64.b64decode(key_line.split()[1]))


def default_parameter_path(partition_name: str) -> str:
    return f"{DEFAULT_PARAMETER_ROOT}/{partition_name}"


class GroupFileError(SpecError):
    """A group file cannot be read or is not a YAML/JSON mapping (its content errors are SpecErrors)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        # a parser's message can quote the file's own characters: show them escaped, ASCII only
        problem = problem.encode("ascii", "backslashreplace").decode("ascii")
        super().__init__("(file)", problem)
        self.path = str(path)
        shown = self.path if self.path.isprintable() else ascii(self.path)
        self.args = (f"Group file {shown}: {problem}",)

    def __str__(self) -> str:
        return str(self.args[0])


# --- entry points --------------------------------------------------------------------------------------

_GROUP_KEYS: Final = (
    "GroupLabel",
    "PartitionName",
    "AdminSecretArn",
    "PartitionSecretArn",
    "Appliances",
    "Clients",
    "ParameterPath",
    "KmsKeyId",
    "PartitionDeletionPolicy",
    "ExistingPartition",
)
_APPLIANCE_KEYS: Final = (
    "Host",
    "Port",
    "HostKey",
    "HostKeyFingerprint",
    "ManagerSecretArn",
    "Initialize",
    "HsmLabel",
    "LegacyAlgorithms",
    "RestPort",
    "RestCertificateFingerprint",
)
_CLIENT_KEYS: Final = ("Name", "Rotation")


def parse_properties(props: Mapping[str, object]) -> GroupSpec:
    """Validate ``ResourceProperties`` (or a group file's top level) into a :class:`GroupSpec`."""
    if not isinstance(props, Mapping):
        raise SpecError("Properties", f"expected a mapping of properties, got {_kind(props)}")
    _check_keys(props, _GROUP_KEYS, "", ignored=IGNORED_PROPERTIES)

    group_label = _label(props, "GroupLabel")
    partition_name = _label(props, "PartitionName")
    admin_secret = _secret_ref(props, "AdminSecretArn")
    partition_secret = _secret_ref(props, "PartitionSecretArn")
    appliances = _appliances(props)
    clients = _clients(props)

    path_value = _optional(props, "ParameterPath")
    parameter_path = (
        default_parameter_path(partition_name)
        if path_value is None
        else _parameter_path("ParameterPath", path_value)
    )

    kms_value = _optional(props, "KmsKeyId")
    kms_key_id = None if kms_value is None else _kms_key_id("KmsKeyId", kms_value)

    policy: DeletionPolicy = (
        "Delete" if _choice(props, "PartitionDeletionPolicy", "Retain", "Delete") else "Retain"
    )
    existing: ExistingPartitionPolicy = (
        "Adopt" if _choice(props, "ExistingPartition", "Fail", "Adopt") else "Fail"
    )

    warnings: list[str] = []
    if len(appliances) == 1:
        warnings.append(
            "Appliances: only 1 appliance is listed; an HA group needs at least 2 members to fail over"
        )

    return GroupSpec(
        group_label=group_label,
        partition_name=partition_name,
        admin_secret_arn=admin_secret,
        partition_secret_arn=partition_secret,
        appliances=appliances,
        clients=clients,
        parameter_path=parameter_path,
        kms_key_id=kms_key_id,
        partition_deletion_policy=policy,
        existing_partition=existing,
        warnings=tuple(warnings),
    )


def load_group_file(path: str | Path) -> GroupSpec:
    """Read a CLI group file (YAML or JSON, told apart by content) and validate it.

    The file holds the resource properties at its top level. Duplicate keys are an error, and YAML is
    read with JSON-like scalars only: ``022`` stays the string ``"022"`` (not octal 18), ``no`` stays
    ``"no"`` (not false), dates stay strings.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_GROUP_FILE_BYTES + 1)
    except OSError as exc:
        raise GroupFileError(path, f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > _MAX_GROUP_FILE_BYTES:
        raise GroupFileError(path, f"is larger than {_MAX_GROUP_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise GroupFileError(path, "is not UTF-8 text") from None
    try:
        document = _load_document(text, path)
    except RecursionError:
        raise GroupFileError(path, "nests too deeply") from None
    return parse_properties(document)


def _load_document(text: str, path: str | Path) -> Mapping[str, object]:
    document: object
    if text.lstrip().startswith("{"):
        try:
            document = json.loads(text, object_pairs_hook=_json_object)
        except _DuplicateKey as exc:
            raise GroupFileError(path, str(exc)) from None
        except json.JSONDecodeError as exc:
            json_error = f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            try:  # a YAML flow mapping also starts with "{"
                document = yaml.load(text, Loader=_GroupFileLoader)  # noqa: S506 - safe loader subclass
            except (yaml.YAMLError, _DuplicateKey):
                raise GroupFileError(path, json_error) from None
    else:
        try:
            document = yaml.load(text, Loader=_GroupFileLoader)  # noqa: S506 - safe loader subclass
        except _DuplicateKey as exc:
            raise GroupFileError(path, str(exc)) from None
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" at line {where.line + 1} column {where.column + 1}" if where is not None else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise GroupFileError(path, f"is not valid YAML: {problem}{at}") from None
    if not isinstance(document, Mapping):
        raise GroupFileError(
            path, f"must hold a mapping of properties at the top level, got {_kind(document)}"
        )
    return document


# --- YAML/JSON loading ---------------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    pass


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"repeats the key {_show(key)}")
        result[key] = value
    return result


class _GroupFileLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars and duplicate keys rejected."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # PyYAML's class-level registry, emptied

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable key: the base class reports it
            if duplicate:
                line = key_node.start_mark.line + 1
                raise _DuplicateKey(f"repeats the key {_show(str(key))} at line {line}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_GroupFileLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_GroupFileLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
_GroupFileLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*|[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+)$"),
    list("-+.0123456789"),
)
_GroupFileLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


# --- appliances and clients ----------------------------------------------------------------------------


def _appliances(props: Mapping[str, object]) -> tuple[ApplianceSpec, ...]:
    items = _list(props, "Appliances", minimum=1, maximum=MAX_APPLIANCES, noun="appliance")
    appliances: list[ApplianceSpec] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        path = f"Appliances[{index}]"
        appliance = _appliance(path, item)
        identity = appliance.host_identity
        if identity in seen:
            raise SpecError(
                f"{path}.Host",
                f"{_show(appliance.host)} is already Appliances[{seen[identity]}].Host; "
                "each appliance may appear only once (whatever its Port)",
            )
        seen[identity] = index
        appliances.append(appliance)
    return tuple(appliances)


def _appliance(path: str, item: object) -> ApplianceSpec:
    if not isinstance(item, Mapping):
        raise SpecError(
            path, f"expected a mapping with Host, HostKey and ManagerSecretArn, got {_kind(item)}"
        )
    _check_keys(item, _APPLIANCE_KEYS, path)

    host = _host(f"{path}.Host", _required(item, "Host", path))
    port_value = _optional(item, "Port")
    port = DEFAULT_PORT if port_value is None else _integer(f"{path}.Port", port_value, 1, 65535)

    key_value = _optional(item, "HostKey")
    fingerprint_value = _optional(item, "HostKeyFingerprint")
    if key_value is not None and fingerprint_value is not None:
        raise SpecError(
            f"{path}.HostKeyFingerprint", "cannot be given together with HostKey; give exactly one of them"
        )
    if key_value is None and fingerprint_value is None:
        raise SpecError(
            f"{path}.HostKey",
            "is required (or HostKeyFingerprint): the appliance's SSH host key is always verified",
        )
    host_key = None if key_value is None else _host_key(f"{path}.HostKey", key_value)
    fingerprint = (
        None if fingerprint_value is None else _fingerprint(f"{path}.HostKeyFingerprint", fingerprint_value)
    )

    manager_secret = _secret_ref(item, "ManagerSecretArn", path)

    init_value = _optional(item, "Initialize")
    initialize = False if init_value is None else _boolean(f"{path}.Initialize", init_value)
    label_value = _optional(item, "HsmLabel")
    hsm_label = None if label_value is None else _match_label(f"{path}.HsmLabel", label_value, _LABEL)
    if initialize and hsm_label is None:
        raise SpecError(f"{path}.HsmLabel", "is required when Initialize is true")
    legacy_value = _optional(item, "LegacyAlgorithms")
    legacy = False if legacy_value is None else _boolean(f"{path}.LegacyAlgorithms", legacy_value)
    rest_port_value = _optional(item, "RestPort")
    rest_port = (
        DEFAULT_REST_PORT
        if rest_port_value is None
        else _integer(f"{path}.RestPort", rest_port_value, 1, 65535)
    )
    rest_pin_value = _optional(item, "RestCertificateFingerprint")
    rest_pin = (
        None
        if rest_pin_value is None
        else _fingerprint(
            f"{path}.RestCertificateFingerprint",
            rest_pin_value,
            "of the DER certificate; the README shows how",
        )
    )
    if rest_port_value is not None and rest_pin is None:
        raise SpecError(
            f"{path}.RestCertificateFingerprint",
            "is required with RestPort: the REST service's certificate is always verified",
        )

    return ApplianceSpec(
        host,
        port=port,
        host_key=host_key,
        host_key_fingerprint=fingerprint,
        manager_secret_arn=manager_secret,
        initialize=initialize,
        hsm_label=hsm_label,
        legacy_algorithms=legacy,
        rest_port=rest_port,
        rest_certificate_fingerprint=rest_pin,
    )


def _clients(props: Mapping[str, object]) -> tuple[ClientSpec, ...]:
    if _optional(props, "Clients") is None:
        return ()
    items = _list(props, "Clients", minimum=0, maximum=MAX_CLIENTS, noun="client")
    clients: list[ClientSpec] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        path = f"Clients[{index}]"
        if not isinstance(item, Mapping):
            raise SpecError(path, f"expected a mapping with Name and optional Rotation, got {_kind(item)}")
        _check_keys(item, _CLIENT_KEYS, path)
        name = _match_label(f"{path}.Name", _required(item, "Name", path), _CLIENT_NAME)
        rotation_value = _optional(item, "Rotation")
        rotation = (
            0 if rotation_value is None else _integer(f"{path}.Rotation", rotation_value, 0, MAX_ROTATION)
        )
        folded = name.lower()
        if folded in seen:
            raise SpecError(
                f"{path}.Name",
                f"{_show(name)} is already Clients[{seen[folded]}].Name (names are compared ignoring case)",
            )
        seen[folded] = index
        clients.append(ClientSpec(name, rotation))
    return tuple(clients)


# --- individual properties -----------------------------------------------------------------------------


def _label(props: Mapping[str, object], key: str) -> str:
    return _match_label(key, _required(props, key, ""), _LABEL)


def _match_label(path: str, value: object, pattern: re.Pattern[str]) -> str:
    text = _string(path, value)
    if pattern.fullmatch(text) is None:
        if pattern is _CLIENT_NAME:
            rule = "a letter, then up to 15 letters, digits, '_' or '-'"
        else:
            rule = "a letter, then up to 31 letters, digits, '_', '.' or '-'"
        raise SpecError(path, f"expected {rule}; got {_show(text)}{_ascii_hint(text)}")
    return text


def _host(path: str, value: object) -> str:
    text = _string(path, value)
    expected = "an IPv4/IPv6 address or a DNS host name (RFC 1123, at most 253 characters)"
    if not text.isascii() or not text.isprintable():
        raise SpecError(path, f"expected {expected}; got {_show(text)}{_ascii_hint(text)}")
    if ":" in text:
        try:
            if "%" in text:
                raise ValueError("zone id")
            ipaddress.IPv6Address(text)
        except ValueError:
            raise SpecError(
                path, f"expected {expected}; got {_show(text)} (no brackets or zone ids)"
            ) from None
        return text
    try:
        ipaddress.IPv4Address(text)
        return text
    except ValueError:
        pass
    labels = text.split(".")
    if (
        len(text) > 253
        or not all(_DNS_LABEL.fullmatch(label) for label in labels)
        or _NUMERIC.fullmatch(labels[-1])  # 10.0.1.300 is a bad address, not a host name
    ):
        raise SpecError(path, f"expected {expected}; got {_show(text)}")
    return text


def _host_identity(host: str) -> str:
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.lower()


def _host_key(path: str, value: object) -> str:
    text = _string(path, value)
    expected = f"'<algorithm> <base64>' with the algorithm one of {', '.join(HOST_KEY_ALGORITHMS)}"
    if len(text) > 8192 or not set(text) <= _PRINTABLE_ASCII:
        raise SpecError(path, f"expected {expected}; got {_show(text)}{_ascii_hint(text)}")
    parts = text.split(maxsplit=2)  # a third part is the comment
    if len(parts) < 2 or parts[0] not in HOST_KEY_ALGORITHMS:
        raise SpecError(path, f"expected {expected}; got {_show(text)}")
    algorithm, encoded = parts[0], parts[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SpecError(path, f"the key after {algorithm} is not valid base64: {_show(encoded)}") from None
    embedded = _ssh_string(blob)
    if embedded != algorithm.encode():
        named = "nothing readable" if embedded is None else _show(embedded.decode("latin-1"))
        raise SpecError(path, f"says {algorithm} but the key blob names {named}; copy the whole key line")
    try:
        load_ssh_public_key(f"{algorithm} {encoded}".encode())
    except (ValueError, UnsupportedAlgorithm):
        raise SpecError(path, f"the {algorithm} key blob is malformed or truncated") from None
    return f"{algorithm} {encoded}"


def _ssh_string(blob: bytes) -> bytes | None:
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    if length > len(blob) - 4:
        return None
    return blob[4 : 4 + length]


def _fingerprint(path: str, value: object, source: str = "ssh-keygen -lf") -> str:
    text = _string(path, value)
    expected = f"'SHA256:' and 43 base64 characters without padding ({source})"
    if FINGERPRINT_RE.fullmatch(text) is None:
        raise SpecError(path, f"expected {expected}; got {_show(text)}{_ascii_hint(text)}")
    digest = base64.b64decode(text[7:] + "=")
    if base64.b64encode(digest).decode().rstrip("=") != text[7:]:
        raise SpecError(path, f"is not a canonical SHA-256 fingerprint: {_show(text)}")
    return text


def _secret_ref(props: Mapping[str, object], key: str, parent: str = "") -> str:
    path = _join(parent, key)
    text = _string(path, _required(props, key, parent))
    if text.startswith("arn:"):
        if _SECRET_ARN.fullmatch(text) is None:
            raise SpecError(
                path,
                "expected a Secrets Manager ARN "
                f"(arn:<partition>:secretsmanager:<region>:<account>:secret:<name>); got {_show(text)}",
            )
        return text
    if _SECRET_NAME.fullmatch(text) is None:
        raise SpecError(
            path,
            "expected a Secrets Manager ARN or a secret name (1-512 of A-Z a-z 0-9 / _ + = . @ -); "
            f"got {_show(text)}{_ascii_hint(text)}",
        )
    return text


def _parameter_path(path: str, value: object) -> str:
    text = _string(path, value)
    if len(text) > 900 or _PARAMETER_PATH.fullmatch(text) is None:
        raise SpecError(
            path,
            "expected an SSM path like /luna-ha/payments: '/'-separated segments of A-Z a-z 0-9 _ . -, "
            f"no trailing '/', at most 900 characters; got {_show(text)}{_ascii_hint(text)}",
        )
    segments = text.split("/")[1:]
    if len(segments) > 8:
        raise SpecError(path, f"has {len(segments)} levels; at most 8 are allowed (SSM allows 15 in all)")
    if any(segment in (".", "..") for segment in segments):
        raise SpecError(path, f"must not contain '.' or '..' segments; got {_show(text)}")
    if segments[0].lower().startswith(("aws", "ssm")):
        raise SpecError(path, f"must not start with /aws or /ssm (reserved by AWS); got {_show(text)}")
    return text


def _kms_key_id(path: str, value: object) -> str:
    text = _string(path, value)
    if len(text) > 2048 or _KMS_KEY_ID.fullmatch(text) is None:
        raise SpecError(
            path,
            "expected a KMS key id, mrk- id, key ARN, alias/<name> or alias ARN; "
            f"got {_show(text)}{_ascii_hint(text)}",
        )
    return text


# --- typed scalars -------------------------------------------------------------------------------------


def _string(path: str, value: object) -> str:
    if not isinstance(value, str):
        raise SpecError(path, f"expected a string, got {_kind(value)}")
    return value


def _choice(props: Mapping[str, object], key: str, default: str, other: str) -> bool:
    """Whether the optional two-valued property ``key`` is ``other`` (absent: ``default``)."""
    value = _optional(props, key)
    text = default if value is None else _string(key, value)
    if text not in (default, other):
        raise SpecError(key, f"expected {default} or {other}, got {_show(text)}")
    return text == other


def _integer(path: str, value: object, low: int, high: int) -> int:
    expected = f"expected an integer from {low} to {high}"
    number: int
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpecError(path, f"{expected}, got {_kind(value)}")
    if isinstance(value, str):
        if _DECIMAL.fullmatch(value) is None:
            raise SpecError(
                path, f"{expected} (decimal digits, no sign or leading zeros), got {_show(value)}"
            )
        number = int(value)
    else:
        number = value
    if not low <= number <= high:
        shown = str(number) if -(10**12) < number < 10**12 else "a number that large"
        raise SpecError(path, f"{expected}, got {shown}")
    return number


def _boolean(path: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    shown = _show(value) if isinstance(value, str) else _kind(value)
    raise SpecError(path, f"expected true or false, got {shown}")


def _list(
    props: Mapping[str, object], key: str, *, minimum: int, maximum: int, noun: str
) -> Sequence[object]:
    value = _required(props, key, "")
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise SpecError(key, f"expected a list of {noun}s, got {_kind(value)}")
    if len(value) < minimum:
        raise SpecError(key, f"needs at least {minimum} {noun}")
    if len(value) > maximum:
        raise SpecError(key, f"has {len(value)} entries; at most {maximum} {noun}s are allowed")
    return value


# --- mapping helpers -----------------------------------------------------------------------------------


def _required(props: Mapping[str, object], key: str, parent: str) -> object:
    value = props.get(key)
    if value is None or value == "":
        raise SpecError(_join(parent, key), "is required")
    return value


def _optional(props: Mapping[str, object], key: str) -> object | None:
    value = props.get(key)
    if value is None or value == "":
        return None
    return value


def _check_keys(
    props: Mapping[str, object], allowed: tuple[str, ...], parent: str, ignored: frozenset[str] = frozenset()
) -> None:
    for key in props:
        if not isinstance(key, str):
            raise SpecError(parent or "Properties", f"property names must be strings, got {_kind(key)}")
        if key in allowed or key in ignored:
            continue
        hint = ""
        by_case = {name.lower(): name for name in allowed}
        if key.lower() in by_case:
            hint = f" (did you mean {by_case[key.lower()]}? names are case-sensitive)"
        else:
            close = difflib.get_close_matches(key[:64], allowed, n=1)
            if close:
                hint = f" (did you mean {close[0]}?)"
        raise SpecError(
            _join(parent, _show_key(key)), f"unknown property{hint}; expected one of {', '.join(allowed)}"
        )


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


# --- showing values safely -----------------------------------------------------------------------------


def _show(value: str) -> str:
    """A value fit for an error message: at most 40 characters of it, quoted, non-printables escaped."""
    if len(value) <= _SHOW_LIMIT:
        return ascii(value)
    return f"{value[:_SHOW_LIMIT]!a}... ({len(value)} characters)"


def _show_key(key: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_]{1,64}", key, re.ASCII):
        return key
    return _show(key)


def _ascii_hint(text: str) -> str:
    if set(text) <= _PRINTABLE_ASCII:
        return ""
    return " (it contains a non-ASCII or control character)"


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def parse_appliance(item: object, path: str = "Appliances[]") -> ApplianceSpec:
    """One ``Appliances`` entry on its own (e.g. the connection a group document kept for a member)."""
    return _appliance(path, item)
