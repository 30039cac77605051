"""A lab for functional tests: simulated appliances + moto-backed secrets and parameters.

:func:`running_lab` uses moto in process (``mock_aws``, active around it); :func:`served_lab` starts
moto's server on 127.0.0.1, as the CLI and the Lambda handler reach it through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

from luna_ha.coordination import Coordinator, create_table
from luna_ha.engine import Engine
from luna_ha.secrets import SecretReader, first_co_password
from luna_ha.sim.server import SimulatedAppliance, start_appliances, stop_appliances
from luna_ha.spec import GroupSpec, parse_properties
from luna_ha.store import ParameterStore
from luna_ha_lab.localaws import TABLE, LabSecrets, local_aws, rest_properties, seed_secrets

REGION = "us-east-1"
#: Every partition name the functional tests give a group: on Luna 7, each has a Crypto Officer
#: whose temporary password (``first_co_password``) is a secret too.
PARTITION_NAMES = ("payments", "payments2", "orders", "team", "other", "loot")


def parameters(path: str = "/luna-ha/payments") -> dict[str, str]:
    """Every parameter below ``path`` (decrypted), name to value, as an ASG member would read them."""
    ssm = boto3.client("ssm", region_name=REGION)
    found: dict[str, str] = {}
    for page in ssm.get_paginator("get_parameters_by_path").paginate(
        Path=path, Recursive=True, WithDecryption=True
    ):
        found.update({p["Name"]: p["Value"] for p in page["Parameters"]})
    return found


@dataclass
class Lab:
    appliances: list[SimulatedAppliance]
    admin_password: str = field(repr=False)
    domain: str = field(repr=False)
    partition_password: str = field(repr=False)
    partition_so_password: str = field(default="", repr=False)
    progress: list[str] = field(default_factory=list)

    @property
    def secret_values(self) -> list[str]:
        """Every secret value in play: none may ever appear in output, errors or parameters.

        With the Partition SO password (Luna 7) and the Crypto Officer's temporary password of each
        partition name the tests use (the one a 7.x Crypto Officer is initialized with, then changed)."""
        values = [self.admin_password, self.domain, self.partition_password, self.partition_so_password]
        values += [first_co_password(self.partition_password, name) for name in PARTITION_NAMES]
        return [v for v in values if v] + [a.password for a in self.appliances]

    def appliance_props(self, appliance: SimulatedAppliance, **extra: Any) -> dict[str, Any]:
        props: dict[str, Any] = {
            "Host": appliance.host,
            "Port": str(appliance.port),
            "HostKey": appliance.host_key_line,
            "ManagerSecretArn": f"luna/manager/{appliance.hostname}",
            **rest_properties(appliance),
        }
        props.update(extra)
        return props

    def props(
        self, members: list[int] | None = None, clients: dict[str, int] | None = None, **extra: Any
    ) -> dict[str, Any]:
        members = members if members is not None else [0, 1]
        clients = clients if clients is not None else {"web": 0}
        props: dict[str, Any] = {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:luna-ha",
            "GroupLabel": "payments-ha",
            "PartitionName": "payments",
            "AdminSecretArn": "luna/admin",
            "PartitionSecretArn": "luna/partition",
            "Appliances": [self.appliance_props(self.appliances[i]) for i in members],
            "Clients": [{"Name": name, "Rotation": str(rotation)} for name, rotation in clients.items()],
        }
        props.update(extra)
        return props

    def spec(self, *args: Any, **kwargs: Any) -> GroupSpec:
        return parse_properties(self.props(*args, **kwargs))

    def engine(self, spec: GroupSpec | None = None) -> Engine:
        return Engine(
            secrets=SecretReader(boto3.client("secretsmanager", region_name=REGION)),
            store=ParameterStore(boto3.client("ssm", region_name=REGION)),
            coordinator=self.coordinator(),
            progress=lambda host, message: self.progress.append(f"[{host}] {message}"),
        )

    def coordinator(self) -> Coordinator:
        return Coordinator(boto3.client("dynamodb", region_name=REGION), TABLE)

    def parameters(self, path: str = "/luna-ha/payments") -> dict[str, str]:
        return parameters(path)

    def mutating_marks(self) -> list[int]:
        return [a.journal.mark() for a in self.appliances]

    def mutating_since(self, marks: list[int]) -> list[str]:
        return [
            f"{a.hostname}: {e.line}"
            for a, m in zip(self.appliances, marks, strict=True)
            for e in a.journal.since(m)
            if e.mutating
        ]


@contextmanager
def running_lab(n: int = 3, **options: Any) -> Iterator[Lab]:
    """``n`` initialized appliances sharing an admin password and cloning domain; moto must be active."""
    admin_password = "Adm1n-" + pysecrets.token_urlsafe(10)
    domain = "Dom-" + pysecrets.token_urlsafe(10)
    partition_password = "Part-" + pysecrets.token_urlsafe(10)
    partition_so_password = "Pso-" + pysecrets.token_urlsafe(10)
    defaults: dict[str, Any] = {"initialized": True, "admin_password": admin_password, "domain": domain}
    defaults.update(options)
    # distinct loopback addresses make distinct hosts: 127.0.0.1, 127.0.0.2, ...
    appliances = start_appliances(n, distinct_hosts=True, **defaults)
    try:
        lab_secrets = LabSecrets(admin_password, domain, partition_password, partition_so_password)
        seed_secrets(appliances, lab_secrets, boto3.client("secretsmanager", region_name=REGION))
        create_table(boto3.client("dynamodb", region_name=REGION), TABLE)
        yield Lab(appliances, admin_password, domain, partition_password, partition_so_password)
    finally:
        stop_appliances(appliances)


@contextmanager
def served_lab(n: int, **options: Any) -> Iterator[tuple[list[SimulatedAppliance], LabSecrets]]:
    """``n`` initialized appliances on distinct loopback hosts sharing one admin password and cloning
    domain, and moto's server on 127.0.0.1 (``AWS_ENDPOINT_URL`` set) holding their secrets;
    ``options`` go to ``start_appliances`` (``dialect="7.8"``: Luna 7 appliances with their REST API)."""
    lab = LabSecrets.generate()
    appliances = start_appliances(
        n,
        distinct_hosts=True,
        initialized=True,
        admin_password=lab.admin_password,
        domain=lab.domain,
        **options,
    )
    try:
        with local_aws():
            seed_secrets(appliances, lab)
            yield appliances, lab
    finally:
        stop_appliances(appliances)
