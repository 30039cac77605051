"""Time as an adapter: a monotonic clock and the run's deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass
class Deadline:
    """A point in monotonic time after which no new step starts.

    ``Deadline.after(seconds)`` is the usual way to make one; ``Deadline.never()`` for tools
    that may take as long as they need.
    """

    expires_at: float
    clock: Clock = field(default=time.monotonic, repr=False)

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    @classmethod
    def never(cls) -> Deadline:
        return cls(float("inf"))

    def remaining(self) -> float:
        return max(0.0, self.expires_at - self.clock())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def allows(self, seconds: float) -> bool:
        """True when a step expected to take ``seconds`` can still finish in time."""
        return self.remaining() >= seconds

    def cap(self, timeout: float) -> float:
        """The smaller of ``timeout`` and what is left."""
        return min(timeout, self.remaining())
