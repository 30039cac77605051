"""Client generations as a specification: which a group wants, and which published pairs are usable."""

from __future__ import annotations

from datetime import UTC, datetime

from luna_ha.certs import generate_client_credential
from luna_ha.generations import token_parameters, wanted
from luna_ha.layout import Parameter
from luna_ha.spec import ClientSpec

PATH = "/luna-ha/payments"
TOKEN = "3f2a1c"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def published(
    name: str, *, cert: bool = True, key: bool = True, pointer: str | None = None
) -> dict[str, Parameter]:
    made = generate_client_credential(name, now=NOW)
    base = f"{PATH}/clients/web/{name}"
    found = {}
    if cert:
        found[f"{base}/cert"] = Parameter(f"{base}/cert", made.cert_pem)
    if key:
        found[f"{base}/key"] = Parameter(f"{base}/key", made.key_pem, secure=True)
    if pointer:
        found[f"{PATH}/clients/web/current"] = Parameter(f"{PATH}/clients/web/current", pointer)
    return found


def names(existing: dict[str, Parameter], rotation: int) -> list[str]:
    return [w.name for w in wanted([ClientSpec("web", rotation)], TOKEN, existing, PATH)]


def test_a_rotation_wants_the_new_generation_and_the_one_published_as_current() -> None:
    existing = {**published(f"web-{TOKEN}-r0"), **published(f"web-{TOKEN}-r1", pointer=f"web-{TOKEN}-r1")}
    assert names(existing, 2) == [f"web-{TOKEN}-r2", f"web-{TOKEN}-r1"]


def test_a_fresh_client_wants_only_its_current_generation() -> None:
    assert names({}, 0) == [f"web-{TOKEN}-r0"]


def test_a_published_pair_is_usable_and_a_half_or_a_mismatch_is_not() -> None:
    name = f"web-{TOKEN}-r0"
    whole = published(name)
    (found,) = wanted([ClientSpec("web", 0)], TOKEN, whole, PATH)
    assert found.usable and not found.broken

    (half,) = wanted([ClientSpec("web", 0)], TOKEN, published(name, cert=False), PATH)
    assert not half.usable and not half.broken  # a key alone: its certificate may still come

    other = published(name)
    mixed = {**whole, f"{PATH}/clients/web/{name}/key": other[f"{PATH}/clients/web/{name}/key"]}
    (mismatch,) = wanted([ClientSpec("web", 0)], TOKEN, mixed, PATH)
    assert mismatch.broken


def test_only_the_owners_generations_are_its_parameters() -> None:
    mine = published(f"web-{TOKEN}-r0")
    theirs = published("web-999999-r0")
    assert set(token_parameters({**mine, **theirs}, PATH, TOKEN)) == set(mine)
