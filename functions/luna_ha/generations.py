"""Client certificate generations: which ones a group wants, and which published ones are usable.

Pure: it reads a path's parameters (as :meth:`~luna_ha.store.ParameterStore.read` returns them) and
names parameters with :mod:`luna_ha.layout`. A client ``web`` at ``Rotation: 2`` wants its current
generation ``web-<token>-r2`` and, while running members may still use it, the previous one: the
generation published as current before (or, when that is the current one already, the newest older
one still published). Older ones are let go.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from luna_ha.certs import credential_matches
from luna_ha.layout import Parameter, client_cert_name, client_current_name, client_key_name
from luna_ha.ownership import parse_registration, registration_name
from luna_ha.spec import ClientSpec


@dataclass(frozen=True)
class Generation:
    """One client certificate generation: its registration name, certificate and key."""

    client: str
    name: str
    cert_pem: str
    key_pem: str = field(repr=False)
    # What Parameter Store holds under this name is unusable (a key without its certificate, or a
    # pair that does not match: a run that died between its writes): overwrite both.
    replace: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class Published:
    """What ``existing`` holds of one wanted generation."""

    client: str
    name: str
    cert_pem: str | None
    key_pem: str | None = field(repr=False)

    @property
    def usable(self) -> bool:
        return (
            self.cert_pem is not None
            and self.key_pem is not None
            and credential_matches(self.cert_pem, self.key_pem)
        )

    @property
    def broken(self) -> bool:
        """Both halves are there, and they are not a pair."""
        return self.cert_pem is not None and self.key_pem is not None and not self.usable


def wanted(
    clients: Sequence[ClientSpec], token: str, existing: Mapping[str, Parameter], path: str
) -> Iterator[Published]:
    """Each client's current generation, then the previous one still in use, with what is published."""
    for client in clients:
        current = str(registration_name(client.name, token, client.rotation))
        published = published_generations(existing, path, client.name, token)
        previous = previous_generation(existing, path, client.name, current, published)
        for name in [current] + ([previous] if previous else []):
            cert = existing.get(client_cert_name(path, client.name, name))
            key = existing.get(client_key_name(path, client.name, name))
            yield Published(client.name, name, cert.value if cert else None, key.value if key else None)


def credential_parameters(path: str, generations: Sequence[Generation]) -> dict[str, Parameter]:
    """The key (SecureString) and certificate parameters of ``generations``, by name."""
    found: dict[str, Parameter] = {}
    for g in generations:
        key = client_key_name(path, g.client, g.name)
        cert = client_cert_name(path, g.client, g.name)
        found[key] = Parameter(key, g.key_pem, secure=True)
        found[cert] = Parameter(cert, g.cert_pem)
    return found


def token_parameters(existing: Mapping[str, Parameter], path: str, token: str) -> dict[str, Parameter]:
    """The client generation parameters under ``path`` that carry ``token`` (its owner's)."""
    prefix = f"{path.rstrip('/')}/clients/"
    mine = {}
    for name, parameter in existing.items():
        parts = name[len(prefix) :].split("/") if name.startswith(prefix) else []
        if len(parts) == 3 and parse_registration(parts[1], token) is not None:
            mine[name] = parameter
    return mine


def published_generations(existing: Mapping[str, Parameter], path: str, client: str, token: str) -> list[str]:
    """The generations of ``client`` owned by ``token`` that have a certificate, oldest first."""
    prefix = f"{path.rstrip('/')}/clients/{client}/"
    found = {}
    for name in existing:
        if name.startswith(prefix) and name.endswith("/cert"):
            generation = name[len(prefix) : -len("/cert")]
            parsed = parse_registration(generation, token) if "/" not in generation else None
            if parsed is not None and parsed.client == client:
                found[generation] = parsed.generation
    return sorted(found, key=found.__getitem__)


def previous_generation(
    existing: Mapping[str, Parameter], path: str, client: str, current: str, published: Sequence[str]
) -> str | None:
    """The generation running members may still use besides ``current`` (None: no such one)."""
    pointer = existing.get(client_current_name(path, client))
    if pointer is not None and pointer.value != current and pointer.value in published:
        return pointer.value

    def number(name: str) -> int:
        return int(name.rsplit("-r", 1)[1])

    older = [n for n in published if number(n) < number(current)]
    return older[-1] if older else None
