"""SecretReader against moto's Secrets Manager: the shapes of DESIGN §2, and no value ever leaks."""

from __future__ import annotations

import json
import re
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from luna_ha.errors import SecretError
from luna_ha.secrets import AdminSecret, ManagerCredentials, PartitionSecret, SecretReader

PASSWORD = "Pa55-w0rd-NEVER-SHOWN"
DOMAIN = "cloning-DOMAIN-NEVER-SHOWN"
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nKEY-NEVER-SHOWN\n-----END OPENSSH PRIVATE KEY-----\n"
PASSPHRASE = "passphrase-NEVER-SHOWN"
SECRET_VALUES = (PASSWORD, DOMAIN, "KEY-NEVER-SHOWN", PASSPHRASE)


@pytest.fixture
def client(aws: None) -> Any:
    return boto3.client("secretsmanager")


@pytest.fixture
def secret(client: Any) -> Callable[[object], str]:
    """Store a secret (a JSON-able value, or a raw string) and return its ARN."""
    counter = iter(range(1000))

    def make(value: object) -> str:
        text = value if isinstance(value, str) else json.dumps(value)
        return str(client.create_secret(Name=f"luna-ha/test-{next(counter)}", SecretString=text)["ARN"])

    return make


def assert_no_secret_in(text: str) -> None:
    for value in SECRET_VALUES:
        assert value not in text


# --- the shapes ----------------------------------------------------------------------------------


def test_manager_credentials_with_a_password(client: Any, secret: Callable[[object], str]) -> None:
    arn = secret({"username": "admin", "password": PASSWORD})

    creds = SecretReader(client).manager_credentials(arn)

    assert creds == ManagerCredentials(username="admin", password=PASSWORD)


def test_manager_credentials_with_a_private_key_and_passphrase(
    client: Any, secret: Callable[[object], str]
) -> None:
    arn = secret({"username": "admin", "private_key": PRIVATE_KEY, "passphrase": PASSPHRASE})

    creds = SecretReader(client).manager_credentials(arn)

    assert creds == ManagerCredentials(
        username="admin", password=None, private_key=PRIVATE_KEY, passphrase=PASSPHRASE
    )


def test_manager_credentials_with_a_private_key_only(client: Any, secret: Callable[[object], str]) -> None:
    arn = secret({"username": "admin", "private_key": PRIVATE_KEY})

    creds = SecretReader(client).manager_credentials(arn)

    assert creds.private_key == PRIVATE_KEY
    assert creds.password is None
    assert creds.passphrase is None


def test_admin_secret_has_password_and_cloning_domain(client: Any, secret: Callable[[object], str]) -> None:
    arn = secret({"password": PASSWORD, "domain": DOMAIN})

    assert SecretReader(client).admin_secret(arn) == AdminSecret(password=PASSWORD, domain=DOMAIN)


def test_partition_secret_has_a_password(client: Any, secret: Callable[[object], str]) -> None:
    arn = secret({"password": PASSWORD})

    assert SecretReader(client).partition_secret(arn) == PartitionSecret(password=PASSWORD)


# --- what is wrong, said precisely ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("read", "value", "problem"),
    [
        ("manager_credentials", {"password": PASSWORD}, "key 'username' is missing"),
        ("manager_credentials", {"username": "admin"}, "key 'password' (or 'private_key') is missing"),
        (
            "manager_credentials",
            {"username": "admin", "password": PASSWORD, "passphrase": PASSPHRASE},
            "key 'passphrase' given without 'private_key'",
        ),
        (
            "manager_credentials",
            {"username": 7, "password": PASSWORD},
            "key 'username' must be a string, not a number",
        ),
        ("admin_secret", {"password": PASSWORD}, "key 'domain' is missing"),
        ("admin_secret", {"password": PASSWORD, "domain": ""}, "key 'domain' is empty"),
        (
            "admin_secret",
            {"password": [PASSWORD], "domain": DOMAIN},
            "key 'password' must be a string, not a list",
        ),
        ("partition_secret", {"pin": PASSWORD}, "key 'password' is missing"),
        ("partition_secret", [PASSWORD], "must be a JSON object, not a list"),
        ("partition_secret", f"not json {PASSWORD}", "is not valid JSON"),
    ],
)
def test_a_secret_of_the_wrong_shape_names_the_arn_and_the_key(
    client: Any, secret: Callable[[object], str], read: str, value: object, problem: str
) -> None:
    arn = secret(value)

    with pytest.raises(SecretError) as caught:
        getattr(SecretReader(client), read)(arn)

    assert arn in str(caught.value)
    assert problem in str(caught.value)


def test_a_missing_secret_names_the_arn_and_the_aws_error_code(client: Any) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:luna-ha/absent-AbCdEf"

    with pytest.raises(SecretError, match="absent-AbCdEf cannot be read: ResourceNotFoundException"):
        SecretReader(client).partition_secret(arn)


def test_a_binary_secret_that_is_not_utf8_is_refused(client: Any) -> None:
    arn = client.create_secret(Name="luna-ha/binary", SecretBinary=b"\xff\xfe" + PASSWORD.encode())["ARN"]

    with pytest.raises(SecretError, match="not valid UTF-8 JSON"):
        SecretReader(client).partition_secret(arn)


# --- no leaks ------------------------------------------------------------------------------------


def test_no_secret_value_appears_in_repr_or_str(client: Any, secret: Callable[[object], str]) -> None:
    reader = SecretReader(client)
    values = [
        reader.manager_credentials(secret({"username": "admin", "password": PASSWORD})),
        reader.manager_credentials(
            secret({"username": "admin", "private_key": PRIVATE_KEY, "passphrase": PASSPHRASE})
        ),
        reader.admin_secret(secret({"password": PASSWORD, "domain": DOMAIN})),
        reader.partition_secret(secret({"password": PASSWORD})),
    ]

    for value in [*values, reader]:
        assert_no_secret_in(repr(value))
        assert_no_secret_in(str(value))
    assert repr(values[0]) == "ManagerCredentials(username='admin', appliances=frozenset())"


FINGERPRINT = "SHA256:" + "A" * 43


def test_a_secret_names_the_appliances_it_may_be_sent_to(
    client: Any, secret: Callable[[object], str]
) -> None:
    reader = SecretReader(client)
    named = {"password": PASSWORD, "domain": DOMAIN, "appliances": [FINGERPRINT]}
    assert reader.admin_secret(secret(named)).appliances == frozenset({FINGERPRINT})
    assert reader.partition_secret(secret({"password": PASSWORD})).appliances == frozenset()


@pytest.mark.parametrize(
    ("appliances", "problem"),
    [
        ("SHA256:x", "key 'appliances' must be a list, not a string"),
        ([FINGERPRINT, "10.0.1.10"], "key 'appliances[1]' must be a host key fingerprint"),
        ([7], "key 'appliances[0]' must be a host key fingerprint"),
    ],
)
def test_a_malformed_appliances_list_is_named(
    client: Any, secret: Callable[[object], str], appliances: object, problem: str
) -> None:
    arn = secret({"password": PASSWORD, "appliances": appliances})
    with pytest.raises(SecretError, match=re.escape(f"Secret {arn}: {problem}")):
        SecretReader(client).partition_secret(arn)


@pytest.mark.parametrize(
    "value",
    [
        f'{{"password": "{PASSWORD}", "domain": ',  # truncated JSON
        {"password": PASSWORD, "domain": 1},
        {"password": PASSWORD},
        [PASSWORD, DOMAIN],
    ],
)
def test_no_secret_value_appears_in_an_error_or_its_traceback(
    client: Any, secret: Callable[[object], str], value: object
) -> None:
    arn = secret(value)

    with pytest.raises(SecretError) as caught:
        SecretReader(client).admin_secret(arn)

    assert_no_secret_in(str(caught.value))
    assert_no_secret_in(repr(caught.value))
    assert_no_secret_in("".join(traceback.format_exception(caught.value)))
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None  # not even a hidden chained exception keeps the document


# --- reading once per run, never cached across runs ----------------------------------------------


def test_each_secret_is_read_once_per_run(client: Any, secret: Callable[[object], str]) -> None:
    arn = secret({"username": "admin", "password": PASSWORD})
    reader = SecretReader(client)

    for _ in range(3):
        reader.manager_credentials(arn)

    assert reader.calls == 1


def slow_calls(client: Any, seconds: float = 0.05) -> None:
    """Every Secrets Manager call of ``client`` takes ``seconds`` longer, as over a real network."""
    client.meta.events.register("before-call.secrets-manager", lambda **_: time.sleep(seconds))


def test_appliances_asking_at_once_share_one_read(client: Any, secret: Callable[[object], str]) -> None:
    arn = secret({"username": "admin", "password": PASSWORD})
    slow_calls(client)
    reader = SecretReader(client)
    start = threading.Barrier(16)

    def ask(_: int) -> ManagerCredentials:
        start.wait()
        return reader.manager_credentials(arn)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(16)))

    assert reader.calls == 1
    assert {a.password for a in answers} == {PASSWORD}


def test_an_unreadable_secret_is_asked_for_once_and_every_asker_hears_why(client: Any) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:luna-ha/absent-AbCdEf"
    slow_calls(client)
    reader = SecretReader(client)
    start = threading.Barrier(8)

    def ask(_: int) -> str:
        start.wait()
        with pytest.raises(SecretError) as caught:
            reader.manager_credentials(arn)
        assert caught.value.__context__ is None
        return str(caught.value)

    with ThreadPoolExecutor(8) as pool:
        reasons = set(pool.map(ask, range(8)))

    assert reader.calls == 1
    assert reasons == {f"Secret {arn} cannot be read: ResourceNotFoundException"}


def test_prefetch_reads_many_secrets_in_one_call(client: Any, secret: Callable[[object], str]) -> None:
    arns = [secret({"username": "admin", "password": f"{PASSWORD}-{i}"}) for i in range(25)]
    reader = SecretReader(client)

    reader.prefetch(arns + arns[:3])  # asked twice: still read once

    assert reader.calls == 2  # 20 a call
    assert [reader.manager_credentials(arn).password for arn in arns] == [
        f"{PASSWORD}-{i}" for i in range(25)
    ]
    assert reader.calls == 2


def test_prefetch_leaves_what_it_cannot_read_to_the_single_read_and_its_usual_error(
    client: Any, secret: Callable[[object], str]
) -> None:
    good = secret({"username": "admin", "password": PASSWORD})
    not_json = secret("not json " + PASSWORD)
    absent = "arn:aws:secretsmanager:us-east-1:123456789012:secret:luna-ha/absent-AbCdEf"
    reader = SecretReader(client)

    reader.prefetch([good, not_json, absent])

    assert reader.calls == 1
    assert reader.manager_credentials(good).password == PASSWORD
    assert reader.calls == 1
    with pytest.raises(SecretError, match="is not valid JSON"):
        reader.manager_credentials(not_json)
    with pytest.raises(SecretError, match="cannot be read: ResourceNotFoundException"):
        reader.manager_credentials(absent)
    assert reader.calls == 3


def test_without_permission_to_batch_every_secret_is_read_alone(
    client: Any, secret: Callable[[object], str]
) -> None:
    arns = [secret({"password": f"{PASSWORD}-{i}"}) for i in range(3)]
    reader = SecretReader(client)

    with Stubber(client) as stub:  # a role deployed before the product used the batch call
        stub.add_client_error("batch_get_secret_value", service_error_code="AccessDeniedException")
        reader.prefetch(arns)
    passwords = [reader.partition_secret(arn).password for arn in arns]

    assert passwords == [f"{PASSWORD}-{i}" for i in range(3)]
    assert reader.calls == 1 + 3


def test_a_single_secret_is_not_batched(client: Any, secret: Callable[[object], str]) -> None:
    arn = secret({"password": PASSWORD})
    reader = SecretReader(client)

    reader.prefetch([arn, arn])

    assert reader.calls == 0


def test_a_new_run_sees_a_rotated_password(client: Any, secret: Callable[[object], str]) -> None:
    arn = secret({"password": PASSWORD})
    assert SecretReader(client).partition_secret(arn).password == PASSWORD

    client.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": "rotated"}))

    assert SecretReader(client).partition_secret(arn).password == "rotated"
