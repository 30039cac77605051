"""Who owns what on an appliance: registration names carry a token derived from the physical id.

A registration is named ``<client>-<token>-r<generation>`` (``web-3f2a1c-r2``); the same string is
the certificate's CN, the ``-hostname`` it is registered with and the generation name in SSM. The
token is six hex digits of SHA-256 over the physical id, so Delete and replacement remove exactly
what this resource created and never a registration of another group or a human's.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_REGISTRATION = re.compile(
    r"^(?P<client>[A-Za-z][A-Za-z0-9_-]{0,15})-(?P<token>[0-9a-f]{6})-r(?P<generation>\d{1,7})$"
)


def ownership_token(physical_id: str) -> str:
    return hashlib.sha256(physical_id.encode()).hexdigest()[:6]


@dataclass(frozen=True, order=True)
class RegistrationName:
    client: str
    token: str
    generation: int

    def __str__(self) -> str:
        return f"{self.client}-{self.token}-r{self.generation}"


def registration_name(client: str, token: str, generation: int) -> RegistrationName:
    return RegistrationName(client, token, generation)


def parse_registration(name: str, token: str) -> RegistrationName | None:
    """The registration's parts when ``name`` belongs to the owner of ``token``, else None."""
    match = _REGISTRATION.match(name)
    if match is None or match.group("token") != token:
        return None
    return RegistrationName(match.group("client"), token, int(match.group("generation")))


def resource_identity(physical_id: str) -> str:
    """The resource behind a physical id, the same for every replacement of it: a
    ``luna-ha/<stack>/<logical id>/<PartitionName>/<stack hash>`` id without its PartitionName
    (which is what a replacement changes); any other id stands for itself."""
    parts = physical_id.split("/")
    if len(parts) == 5 and parts[0] == "luna-ha":
        return "/".join([*parts[:3], parts[4]])
    return physical_id
