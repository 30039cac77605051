"""Local AWS for the demo and ``luna-ha simulate --aws``: moto's server on 127.0.0.1, seeded secrets.

The engine is not told it talks to moto: it reads ``AWS_ENDPOINT_URL`` like any boto3 program.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from luna_ha.coordination import TABLE_ENV, create_table
from luna_ha.sim.lab import LabSecrets as LabSecrets  # re-exported: the lab's users take it from here
from luna_ha.sim.server import SimulatedAppliance
from luna_ha.spec import host_key_fingerprint

ADMIN_SECRET = "luna/admin"  # noqa: S105 - a secret name, not a value
PARTITION_SECRET = "luna/partition"  # noqa: S105 - a secret name
TABLE = "luna-ha-coordination"
_AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    TABLE_ENV,
)


def manager_secret_name(appliance: SimulatedAppliance) -> str:
    return f"luna/manager/{appliance.hostname}"


@contextmanager
def local_aws(*, set_environment: bool = True) -> Iterator[str]:
    """moto's server on 127.0.0.1; yields its endpoint URL.

    With ``set_environment`` the process's ``AWS_ENDPOINT_URL``, dummy credentials and region point
    at it for the duration (and are restored afterwards), so ordinary boto3 clients reach it.
    """
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto keeps its state per process: start from empty, as a fresh account would
    reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310 - loopback
    urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310 - our own loopback URL
    saved = {k: os.environ.get(k) for k in (*_AWS_ENV, "AWS_PROFILE")}
    if set_environment:
        os.environ.update(environment(endpoint))
        os.environ.pop("AWS_PROFILE", None)
    try:
        import boto3

        settings = environment(endpoint)
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name=settings["AWS_REGION"],
            aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        )
        create_table(dynamodb, TABLE)  # the provider template's coordination table
        yield endpoint
    finally:
        server.stop()
        if set_environment:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def environment(endpoint: str) -> dict[str, str]:
    """The variables that point boto3 at a local endpoint with dummy credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        TABLE_ENV: TABLE,
    }


def fingerprints(appliances: Sequence[SimulatedAppliance]) -> list[str]:
    """The host key fingerprints of ``appliances`` (each of their keys): what a secret lists to be
    sent to them."""
    return [host_key_fingerprint(line) for a in appliances for line in a.host_key_lines]


def seed_secrets(appliances: Sequence[SimulatedAppliance], lab: LabSecrets, client: Any = None) -> None:
    """Create the admin, partition and per-appliance manager secrets in (local) Secrets Manager,
    each naming the appliances it may be sent to: the group secrets every appliance, a manager
    secret its own."""
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    every = fingerprints(appliances)
    admin = {"password": lab.admin_password, "domain": lab.domain, "appliances": every}
    if lab.partition_so_password:
        admin["partitionSoPassword"] = lab.partition_so_password
    client.create_secret(Name=ADMIN_SECRET, SecretString=json.dumps(admin))
    partition = {"password": lab.partition_password, "appliances": every}
    client.create_secret(Name=PARTITION_SECRET, SecretString=json.dumps(partition))
    for a in appliances:
        manager = {"username": a.username, "password": a.password, "appliances": fingerprints([a])}
        client.create_secret(Name=manager_secret_name(a), SecretString=json.dumps(manager))


def appliance_properties(appliance: SimulatedAppliance, **extra: Any) -> dict[str, Any]:
    """One ``Appliances`` entry for a simulated appliance."""
    return {
        "Host": appliance.host,
        "Port": appliance.port,
        "HostKey": appliance.host_key_line,
        "ManagerSecretArn": manager_secret_name(appliance),
        **rest_properties(appliance),
        **extra,
    }


def rest_properties(appliance: SimulatedAppliance) -> dict[str, Any]:
    """A Luna 7 appliance's REST port and certificate pin (nothing for 5.x/6.x)."""
    if appliance.rest_service is None:
        return {}
    return {
        "RestPort": appliance.rest_port,
        "RestCertificateFingerprint": appliance.rest_certificate_fingerprint,
    }


def group_properties(
    appliances: Sequence[SimulatedAppliance], *, clients: dict[str, int] | None = None, **extra: Any
) -> dict[str, Any]:
    """A group over ``appliances``: zeroized ones get ``Initialize: true`` and their hostname as label."""
    members = []
    for a in appliances:
        init = {"Initialize": True, "HsmLabel": a.hostname} if a.state.zeroized else {}
        members.append(appliance_properties(a, **init))
    props: dict[str, Any] = {
        "GroupLabel": "payments-ha",
        "PartitionName": "payments",
        "AdminSecretArn": ADMIN_SECRET,
        "PartitionSecretArn": PARTITION_SECRET,
        "Appliances": members,
        "Clients": [
            {"Name": name, "Rotation": rotation} for name, rotation in (clients or {"web": 0}).items()
        ],
    }
    props.update(extra)
    return props
