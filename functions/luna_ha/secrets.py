"""Secrets Manager adapter: the credentials of DESIGN §2, read through powertools' SecretsProvider.

Passwords are never cached by the provider (``max_age=0``, ``force_fetch=True``): a rotated secret
is seen on the next run. Within one run each secret is fetched once, however many appliance threads
ask for it at the same moment (a per-instance memo, one fetch in flight per ARN; build a new
:class:`SecretReader` per run and drop it at the end). A failure is remembered as well: sixteen
appliances sharing one unreadable manager secret make one call and report the same error.

Each secret names the appliances it may be sent to: ``"appliances"``, a list of the SHA256 host key
fingerprints (``ssh-keygen -lf``) pinned for them. The engine sends nothing to an appliance its
secret does not name (:func:`check_destination`); ASG members ignore the list.

No secret value ever reaches a repr, a str or an exception message: the dataclasses hide their
secret fields, and :class:`~luna_ha.errors.SecretError` names only the ARN, the key and the problem.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
from botocore.exceptions import BotoCoreError, ClientError

from luna_ha.errors import ApplianceError, SecretError
from luna_ha.spec import FINGERPRINT_RE

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient


APPLIANCES_KEY = "appliances"
PARTITION_SO_KEY = "partitionSoPassword"


@dataclass(frozen=True)
class ManagerCredentials:
    """Appliance ``admin``-shell login: a password, or a private key (optionally with a passphrase).

    Both may be given; the SSH layer then tries the key first.
    """

    username: str
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
    appliances: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AdminSecret:
    """HSM Admin (SO) password and the cloning domain; for Luna 7 also the Partition SO password
    (each 7.x partition has its own SO; members never read this secret)."""

    password: str = field(repr=False)
    domain: str = field(repr=False)
    appliances: frozenset[str] = frozenset()
    partition_so_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PartitionSecret:
    """The partition password (the one secret ASG members may read): on Luna 7, the Crypto
    Officer's."""

    password: str = field(repr=False)
    appliances: frozenset[str] = frozenset()


def check_destination(arn: str, appliances: frozenset[str], host: str, fingerprint: str, step: str) -> None:
    """Raise unless secret ``arn`` names the appliance whose pinned host key has ``fingerprint``."""
    if fingerprint in appliances:
        return
    if not appliances:
        problem = f"key '{APPLIANCES_KEY}' is missing or empty"
    else:
        problem = f"its '{APPLIANCES_KEY}' list does not name {fingerprint}"
    raise ApplianceError(
        host,
        step,
        f"Secret {arn} may not be sent here: {problem}; add this appliance's host key fingerprint to "
        f"the secret's '{APPLIANCES_KEY}' list if it is meant to; nothing was sent",
    )


class SecretReader:
    """Reads and checks the project's secrets. ``calls`` counts GetSecretValue calls."""

    BATCH = 20  # the most BatchGetSecretValue returns by id

    def __init__(self, client: SecretsManagerClient) -> None:
        self._client = client
        self._provider = SecretsProvider(boto3_client=client)
        self._memo: dict[str, dict[str, Any] | SecretError] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.calls = 0

    def __repr__(self) -> str:
        return f"SecretReader(read={len(self._memo)})"

    def manager_credentials(self, arn: str) -> ManagerCredentials:
        """``{"username", "password"}`` or ``{"username", "private_key"[, "passphrase"]}``."""
        data = self._read(arn)
        username = _required(data, arn, "username")
        password = _optional(data, arn, "password")
        private_key = _optional(data, arn, "private_key")
        passphrase = _optional(data, arn, "passphrase")
        if password is None and private_key is None:
            raise SecretError(f"Secret {arn}: key 'password' (or 'private_key') is missing")
        if passphrase is not None and private_key is None:
            raise SecretError(f"Secret {arn}: key 'passphrase' given without 'private_key'")
        return ManagerCredentials(
            username=username,
            password=password,
            private_key=private_key,
            passphrase=passphrase,
            appliances=_appliances(data, arn),
        )

    def admin_secret(self, arn: str) -> AdminSecret:
        """``{"password", "domain", "partitionSoPassword" (Luna 7 only), "appliances"}``."""
        data = self._read(arn)
        return AdminSecret(
            password=_required(data, arn, "password"),
            domain=_required(data, arn, "domain"),
            appliances=_appliances(data, arn),
            partition_so_password=_optional(data, arn, PARTITION_SO_KEY),
        )

    def partition_secret(self, arn: str) -> PartitionSecret:
        """``{"password"}``."""
        data = self._read(arn)
        return PartitionSecret(password=_required(data, arn, "password"), appliances=_appliances(data, arn))

    def prefetch(self, arns: Iterable[str]) -> None:
        """Read the secrets a run will need in one BatchGetSecretValue call per 20, before its
        appliance threads start: a group of 16 appliances then costs one call, not 16 at once.

        Only a JSON object answered under the very id asked for is kept. Everything else (a
        per-secret error, a binary secret, an id the service answers under another form, a role
        without ``secretsmanager:BatchGetSecretValue``) is left to the single read, which reports
        it the usual way; so prefetching never changes what a run reads or says.
        """
        with self._guard:
            wanted = [arn for arn in dict.fromkeys(arns) if arn not in self._memo]
        if len(wanted) < 2:
            return
        for start in range(0, len(wanted), self.BATCH):
            chunk = wanted[start : start + self.BATCH]
            with self._guard:
                self.calls += 1
            try:
                response = self._client.batch_get_secret_value(SecretIdList=chunk)
            except (ClientError, BotoCoreError):
                return
            for item in response.get("SecretValues", []):
                ids = {item.get("ARN"), item.get("Name")}
                value = _json_object(item.get("SecretString"))
                for arn in chunk:
                    if arn in ids and value is not None:
                        with self._guard:
                            self._memo.setdefault(arn, value)

    def _read(self, arn: str) -> dict[str, Any]:
        with self._guard:
            lock = self._locks.setdefault(arn, threading.Lock())
        with lock:
            if arn not in self._memo:
                self._memo[arn] = self._fetch(arn)
            found = self._memo[arn]
        if isinstance(found, SecretError):
            raise SecretError(str(found))  # a fresh exception per caller: no shared traceback
        return found

    def _fetch(self, arn: str) -> dict[str, Any] | SecretError:
        with self._guard:
            self.calls += 1
        # The SecretError is raised outside the handlers so that it carries no __context__ at all:
        # the JSON decoder's exception (chained inside powertools' one) keeps the whole document.
        problem = None
        value: object = None
        try:
            value = self._provider.get(arn, transform="json", max_age=0, force_fetch=True)
        except GetParameterError as exc:
            cause = exc.__cause__ or exc.__context__  # powertools raises it without `from`
            code = (
                str(cause.response.get("Error", {}).get("Code", "Unknown"))
                if isinstance(cause, ClientError)
                else type(cause or exc).__name__
            )
            problem = f"cannot be read: {code}"
        except TransformParameterError:
            problem = "is not valid JSON"
        except ValueError:  # UnicodeDecodeError of a SecretBinary, before powertools' transform
            problem = "is not valid UTF-8 JSON"
        if problem is not None:
            return SecretError(f"Secret {arn} {problem}")
        if not isinstance(value, dict):
            return SecretError(f"Secret {arn} must be a JSON object, not {_json_type(value)}")
        return value


def _json_object(text: str | None) -> dict[str, Any] | None:
    """``text`` parsed when it is a JSON object; None otherwise (never an exception that quotes it)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _optional(data: dict[str, Any], arn: str, key: str) -> str | None:
    """The string at ``key``; None when absent, null or empty."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SecretError(f"Secret {arn}: key '{key}' must be a string, not {_json_type(value)}")
    return value or None


def _required(data: dict[str, Any], arn: str, key: str) -> str:
    value = _optional(data, arn, key)
    if value is None:
        problem = "is empty" if key in data and data[key] is not None else "is missing"
        raise SecretError(f"Secret {arn}: key '{key}' {problem}")
    return value


def _appliances(data: dict[str, Any], arn: str) -> frozenset[str]:
    """The fingerprints under ``appliances`` (absent: none)."""
    value = data.get(APPLIANCES_KEY)
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise SecretError(f"Secret {arn}: key '{APPLIANCES_KEY}' must be a list, not {_json_type(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or FINGERPRINT_RE.fullmatch(item) is None:
            raise SecretError(
                f"Secret {arn}: key '{APPLIANCES_KEY}[{index}]' must be a host key fingerprint "
                "'SHA256:' + 43 base64 characters (ssh-keygen -lf)"
            )
    return frozenset(value)


def first_co_password(co_password: str, partition_serial: str) -> str:
    """The password a 7.x Crypto Officer is initialized with, changed right after (HSM policy 21).

    Derived from the final password and the partition, never stored: a run killed between the
    Crypto Officer's initialization and its password change computes it again and finishes the
    change. Letters, digits and punctuation, so that it meets the appliance's password rules.
    """
    digest = hmac.new(
        co_password.encode(), f"luna-ha first CO password {partition_serial}".encode(), "sha256"
    )
    body = base64.b64encode(digest.digest()[:18], altchars=b"-_").decode()
    return f"Co{body}7!"
