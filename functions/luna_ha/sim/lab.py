"""What the simulator shares with the lab (the ``luna-ha-lab`` distribution, :mod:`luna_ha_lab`):
the secrets of a simulated group, and the check that the lab and moto's server are installed.

The lab (local CloudFormation, its HTTPS response receiver, moto wiring) is not part of a plain
``luna-ha`` install; ``luna-ha demo`` and ``luna-ha simulate --aws`` need it, and the ``demo``
extra brings it. ``luna-ha simulate`` without ``--aws`` needs only this package.
"""

from __future__ import annotations

import importlib
import secrets
from dataclasses import dataclass, field

from luna_ha.errors import SetupError

DEMO_EXTRA = "pip install 'luna-ha[demo]'"


@dataclass(frozen=True)
class LabSecrets:
    """The shared secrets of a simulated group: every member has the same admin password and domain."""

    admin_password: str = field(repr=False)
    domain: str = field(repr=False)
    partition_password: str = field(repr=False)
    #: The Partition SO password of Luna 7 partitions (unused by 5.x/6.x appliances).
    partition_so_password: str = field(default="", repr=False)

    @classmethod
    def generate(cls) -> LabSecrets:
        # a letter first: lunash would read a value starting with '-' as an option
        return cls(*("s" + secrets.token_urlsafe(12) for _ in range(4)))


def require_local_aws(command: str) -> None:
    """Raise :class:`SetupError` naming the extra to install when the lab or moto's server is
    missing (neither is a dependency of a plain install)."""
    try:
        importlib.import_module("luna_ha_lab.localaws")
    except ModuleNotFoundError as exc:
        raise SetupError(
            f"luna-ha {command} runs its local AWS from the luna-ha-lab distribution, and the module "
            f"'{(exc.name or 'luna_ha_lab').split('.')[0]}' is not installed: {DEMO_EXTRA}"
        ) from None
    try:
        importlib.import_module("moto.server")
    except ModuleNotFoundError as exc:
        raise SetupError(
            f"luna-ha {command} runs moto's server as its local AWS, and the module "
            f"'{(exc.name or 'moto').split('.')[0]}' is not installed: {DEMO_EXTRA}"
        ) from None
