"""Builders for every lunash line this project sends.

Each builder returns a frozen :class:`Command`: the exact ``text`` to send, a ``display`` with every
secret replaced by ``********``, and the traits from :data:`dialect.COMMANDS` (a line without
secrets is not sensitive, whatever another form of its command carries). Options are always
spelled in full (``-partition``, never the ambiguous ``-p``) and destructive commands carry
``-force``, so lunash never asks a question.

Values are checked before anything is built: a non-secret value is one ``[A-Za-z0-9._-]+`` token
not starting with ``-``; a secret is one token of printable ASCII without quotes or backslashes,
not starting with ``-``. Nothing else (spaces, ``;``, newlines, quotes, an extra `` -force``,
non-ASCII) can reach a command line. Errors name the argument and never echo a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from luna_ha.lunash import dialect
from luna_ha.lunash.errors import InvalidArgument

__all__ = [
    "Command",
    "build_client_assign",
    "build_client_delete",
    "build_client_fingerprint",
    "build_client_list",
    "build_client_register",
    "build_client_revoke",
    "build_client_show",
    "build_file_delete",
    "build_hsm_init",
    "build_hsm_login",
    "build_hsm_logout",
    "build_hsm_show",
    "build_ntls_bind",
    "build_partition_create",
    "build_partition_create_7",
    "build_partition_delete",
    "build_partition_init",
    "build_partition_init_co",
    "build_partition_list",
    "build_regen_cert",
    "build_service_restart",
]


@dataclass(frozen=True, repr=False)
class Command:
    """One lunash line.

    ``text`` (what is sent) and ``secrets`` hold secret values: send ``text``, log ``display``.
    ``repr``/``str`` show only ``display``; ``redact`` masks the secrets in any echoed output.
    """

    text: str
    display: str
    name: str
    mutating: bool
    sensitive: bool
    timeout: float
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if "\n" in self.text or "\r" in self.text:
            raise InvalidArgument("text", "a command is exactly one line")
        if self.secrets and not self.sensitive:
            raise InvalidArgument("sensitive", "a command carrying secrets must be marked sensitive")

    def __repr__(self) -> str:
        return (
            f"Command(name={self.name!r}, display={self.display!r}, mutating={self.mutating!r}, "
            f"sensitive={self.sensitive!r}, timeout={self.timeout!r})"
        )

    def __str__(self) -> str:
        return self.display

    def redact(self, output: str) -> str:
        """``output`` (e.g. the echoed line) with every secret this command carries masked."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            output = output.replace(secret, dialect.MASK)
        return output


@dataclass(frozen=True)
class _Secret:
    value: str = field(repr=False)


_Token = str | _Secret


def _check_value(argument: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(argument, f"must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidArgument(argument, "must not be empty")
    if len(value) > dialect.MAX_VALUE_LENGTH:
        raise InvalidArgument(argument, f"must be at most {dialect.MAX_VALUE_LENGTH} characters")
    if dialect.VALUE_RE.fullmatch(value) is None:
        shown = repr(value[:40]) + ("…" if len(value) > 40 else "")
        raise InvalidArgument(argument, f"{shown} may only contain letters, digits, '.', '_' and '-' (ASCII)")
    if value.startswith("-"):
        raise InvalidArgument(argument, f"{value[:40]!r} must not start with '-'")
    return value


def check_secret(argument: str, value: object) -> None:
    """Raise ``InvalidArgument`` (naming ``argument``, never the value) if ``value`` cannot be sent."""
    _check_secret(argument, value)


def _check_secret(argument: str, value: object) -> _Secret:
    # Messages are fixed per rule: nothing derived from the value (not even a length or position).
    if not isinstance(value, str):
        raise InvalidArgument(argument, f"must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidArgument(argument, "must not be empty")
    if len(value) > dialect.MAX_SECRET_LENGTH:
        raise InvalidArgument(argument, f"must be at most {dialect.MAX_SECRET_LENGTH} characters")
    if not set(value) <= dialect.SECRET_CHARS:
        raise InvalidArgument(
            argument,
            "may only contain printable ASCII characters other than spaces, quotes and backslashes",
        )
    if value.startswith("-"):
        raise InvalidArgument(argument, "must not start with '-' (lunash would read it as an option)")
    return _Secret(value)


def _build(name: str, *arguments: _Token) -> Command:
    spec = dialect.COMMANDS[name]
    tokens: list[_Token] = [*name.split(), *arguments]
    if spec.force:
        tokens.append(dialect.FORCE_OPTION)
    text = " ".join(t.value if isinstance(t, _Secret) else t for t in tokens)
    display = " ".join(dialect.MASK if isinstance(t, _Secret) else t for t in tokens)
    secrets = tuple(dict.fromkeys(t.value for t in tokens if isinstance(t, _Secret)))
    return Command(
        text=text,
        display=display,
        name=spec.name,
        mutating=spec.mutating,
        # A form without secrets (7.x `partition create`) is not sensitive.
        sensitive=spec.sensitive and bool(secrets),
        timeout=spec.timeout,
        secrets=secrets,
    )


def _password_and_domain(password: str, domain: str) -> tuple[_Token, ...]:
    """``-password <p> -domain <d>``: how ``hsm init`` and ``partition create`` initialise what they make."""
    return "-password", _check_secret("password", password), "-domain", _check_secret("domain", domain)


# --- HSM -------------------------------------------------------------------------------------


def build_hsm_show() -> Command:
    return _build("hsm show")


def build_hsm_init(label: str, password: str, domain: str) -> Command:
    """`hsm init -label <l> -password <p> -domain <d> -force` (only ever for a zeroized HSM)."""
    checked_label = _check_value("label", label)
    return _build("hsm init", "-label", checked_label, *_password_and_domain(password, domain))


def build_hsm_login(password: str) -> Command:
    return _build("hsm login", "-password", _check_secret("password", password))


def build_hsm_logout() -> Command:
    return _build("hsm logout")


def build_regen_cert() -> Command:
    return _build("sysconf regenCert")


def build_service_restart(service: str = "ntls") -> Command:
    """`service restart ntls`: on 7.x, NTLS serves a regenerated certificate or a new binding only
    after it."""
    checked = _check_value("service", service)
    if checked not in dialect.RESTARTABLE_SERVICES:
        raise InvalidArgument("service", f"must be one of {', '.join(sorted(dialect.RESTARTABLE_SERVICES))}")
    return _build("service restart", checked)


def build_ntls_bind(device: str = "eth0") -> Command:
    checked = _check_value("device", device)
    if checked not in dialect.NTLS_DEVICES:
        raise InvalidArgument("device", f"must be one of {', '.join(sorted(dialect.NTLS_DEVICES))}")
    return _build("ntls bind", checked)


# --- partitions ------------------------------------------------------------------------------


def build_partition_create(name: str, password: str, domain: str) -> Command:
    """5.x/6.x form: the partition is created initialised with its password and cloning domain."""
    checked_name = _check_value("name", name)
    return _build("partition create", "-partition", checked_name, *_password_and_domain(password, domain))


def build_partition_create_7(name: str) -> Command:
    """7.x form: `partition create -partition <n> -force`; the partition is created uninitialized
    (no label, Partition SO, domain or Crypto Officer). Needs `hsm login` in the same session."""
    return _build("partition create", "-partition", _check_value("name", name))


def build_partition_init(name: str, label: str, so_password: str, domain: str) -> Command:
    """7.8.1 on: `partition init -partition <n> -label <l> -password <PSO> -domain <d> -force`.

    Needs `hsm login` in the same session. lunash initializes a partition only once (an initialized
    one is refused, :attr:`dialect.Outcome.ALREADY_INITIALIZED`); never send it for a partition
    whose `Partition Version` is not 0."""
    checked_name = _check_value("name", name)
    checked_label = _check_value("label", label)
    return _build(
        "partition init",
        "-partition",
        checked_name,
        "-label",
        checked_label,
        "-password",
        _check_secret("so_password", so_password),
        "-domain",
        _check_secret("domain", domain),
    )


def build_partition_init_co(name: str, so_password: str, co_password: str) -> Command:
    """7.8.1 on: `partition init co -partition <n> -psopin <PSO> -copin <CO> -force`: the Crypto
    Officer's first password (to be changed at first use under HSM policy 21, which lunash cannot
    do). A wrong Partition SO password uses one of its attempts: never retry one."""
    checked_name = _check_value("name", name)
    return _build(
        "partition init co",
        "-partition",
        checked_name,
        "-psopin",
        _check_secret("so_password", so_password),
        "-copin",
        _check_secret("co_password", co_password),
    )


def build_partition_list() -> Command:
    return _build("partition list")


def build_partition_delete(name: str) -> Command:
    return _build("partition delete", "-partition", _check_value("name", name))


# --- clients ---------------------------------------------------------------------------------


def build_client_register(client: str, hostname: str) -> Command:
    """The certificate must already be in the home directory as ``<hostname>.pem``."""
    checked_client = _check_value("client", client)
    checked_hostname = _check_value("hostname", hostname)
    return _build("client register", "-client", checked_client, "-hostname", checked_hostname)


def build_client_assign(client: str, partition: str) -> Command:
    checked_client = _check_value("client", client)
    checked_partition = _check_value("partition", partition)
    return _build("client assignPartition", "-client", checked_client, "-partition", checked_partition)


def build_client_revoke(client: str, partition: str) -> Command:
    checked_client = _check_value("client", client)
    checked_partition = _check_value("partition", partition)
    return _build("client revokePartition", "-client", checked_client, "-partition", checked_partition)


def build_client_list() -> Command:
    return _build("client list")


def build_client_show(client: str) -> Command:
    return _build("client show", "-client", _check_value("client", client))


def build_client_delete(client: str) -> Command:
    return _build("client delete", "-client", _check_value("client", client))


def build_client_fingerprint(client: str) -> Command:
    return _build("client fingerprint", "-client", _check_value("client", client))


def build_file_delete(name: str) -> Command:
    """Delete ``name`` from the manager's home directory (an uploaded client certificate)."""
    return _build("my file delete", "-file", _check_value("file", name))
