"""What an appliance's software version decides: its family and how each 7.x step is carried out.

Pure: the version comes from ``hsm show`` (``Software Version``). Luna SA 5.x and 6.x create a
partition initialized in one lunash command; Luna Network HSM 7.x creates it uninitialized, then
the partition is initialized and its Crypto Officer created. lunash can do those two steps from
7.8.1 on; earlier 7.x needs the appliance's REST service, and every 7.x needs REST for the Crypto
Officer's first password change (lunash has no command for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from luna_ha.lunash import dialect
from luna_ha.lunash.errors import ParseError


class Channel(StrEnum):
    """How a step reaches the appliance."""

    LUNASH = "lunash"
    REST = "REST"


@dataclass(frozen=True)
class Software:
    """An appliance software version, e.g. ``7.8.5-20`` -> (7, 8, 5, 20)."""

    version: tuple[int, ...]

    @classmethod
    def parse(cls, text: str | None) -> Software | None:
        """None when ``text`` is None (an ``hsm show`` without the line). A value that is not
        ``<major>.<minor>[.<patch>][-<build>]``, or of a generation this project does not speak,
        raises :class:`ParseError`."""
        if text is None:
            return None
        match = dialect.SOFTWARE_VERSION_RE.match(text.strip())
        if match is None:
            raise ParseError("hsm show", "'Software Version' is not <major>.<minor>[.<patch>][-<build>]")
        software = cls(tuple(int(part) for part in match.groups() if part is not None))
        if software.major not in dialect.SOFTWARE_FAMILIES:
            supported = ", ".join(f"{f}.x" for f in sorted(dialect.SOFTWARE_FAMILIES))
            raise ParseError(
                "hsm show", f"appliance software {software.major}.x is not supported (only {supported})"
            )
        return software

    @property
    def major(self) -> int:
        return self.version[0]

    @property
    def family(self) -> str:
        """``7.x`` for Luna Network HSM 7, ``5.x/6.x`` for Luna SA: one HA group holds one family."""
        return "7.x" if self.luna7 else "5.x/6.x"

    @property
    def luna7(self) -> bool:
        return self.major == dialect.LUNA7_FAMILY

    @property
    def partition_init_channel(self) -> Channel:
        """Where ``partition init`` and the Crypto Officer's initialization run on this version."""
        lunash = self.luna7 and self.version[:3] >= dialect.LUNASH_PARTITION_INIT_SINCE
        return Channel.LUNASH if lunash else Channel.REST

    def __str__(self) -> str:
        name = "Luna Network HSM" if self.luna7 else "Luna SA"
        return f"{name} {'.'.join(str(n) for n in self.version[:3])}"
