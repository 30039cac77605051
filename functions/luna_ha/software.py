"""What an appliance's software version decides: its family and how each 7.x step is carried out.

Pure: the version comes from ``hsm show`` (``Software Version``). Luna SA 5.x and 6.x create a
partition initialized in one lunash command; Luna Network HSM 7.x creates it uninitialized, then
the partition is initialized and its Crypto Officer created. lunash can do those two steps from
7.8.1 on; earlier 7.x needs the appliance's REST service, and every 7.x needs REST for the Crypto
Officer's first password change (lunash has no command for it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
LUNASH_PARTITION_INIT_FROM = (7, 8, 1)


class Channel(StrEnum):
    """How a step reaches the appliance."""

    LUNASH = "lunash"
    REST = "REST"


@dataclass(frozen=True)
class Software:
    """An appliance software version, e.g. ``7.8.5-20`` -> (7, 8, 5)."""

    version: tuple[int, int, int]

    @classmethod
    def parse(cls, text: str | None) -> Software | None:
        """None when ``text`` holds no version (an ``hsm show`` without the line)."""
        match = _VERSION.search(text or "")
        if match is None:
            return None
        major, minor, patch = match.group(1), match.group(2), match.group(3) or "0"
        return cls((int(major), int(minor), int(patch)))

    @property
    def family(self) -> str:
        """``7.x`` for Luna Network HSM 7, ``5.x/6.x`` for Luna SA: one HA group holds one family."""
        return "7.x" if self.version[0] >= 7 else "5.x/6.x"

    @property
    def luna7(self) -> bool:
        return self.version[0] >= 7

    @property
    def partition_init_channel(self) -> Channel:
        """Where ``partition init`` and the Crypto Officer's initialization run on this version."""
        return Channel.LUNASH if self.version >= LUNASH_PARTITION_INIT_FROM else Channel.REST

    def __str__(self) -> str:
        name = "Luna Network HSM" if self.luna7 else "Luna SA"
        return f"{name} {'.'.join(str(n) for n in self.version)}"
