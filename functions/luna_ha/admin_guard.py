"""The zeroization guard's run-time half: one HSM Admin at a time on an appliance, deciding on now.

Right before ``hsm login`` or ``hsm init`` on an appliance, the run takes that appliance's HSM Admin
lease in the coordination table (one holder across every group, stack and CLI run sharing the
table; atomic, see :mod:`luna_ha.coordination`) and reads ``hsm show`` again in its session, so that
the guard decides on the attempts left of now, not of the observation. A lease ends at its holder's
own deadline: a run that died stops blocking the appliance when its deadline has passed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from luna_ha import appliance as appl
from luna_ha.clock import Deadline
from luna_ha.coordination import CoordinationError, Coordinator
from luna_ha.errors import ApplianceError
from luna_ha.planner import Action, ApplianceState, Step, check_login_allowed
from luna_ha.shell import ApplianceShell
from luna_ha.software import Channel

log = logging.getLogger(__name__)

# A run without a deadline (the CLI's default) holds a lease this long at most.
UNBOUNDED_LEASE_SECONDS = 900.0
# How long a run waits for another run's lease on the same appliance before it gives up.
WAIT_SECONDS = 60.0


class AdminGuard:
    """The HSM Admin leases of one run, one per appliance entry (``holder`` is run and host)."""

    def __init__(
        self,
        coordinator: Coordinator,
        *,
        run_id: str,
        group: str,
        deadline: Deadline,
        sleep: Callable[[float], None] = time.sleep,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self.coordinator = coordinator
        self.run_id = run_id
        self.group = group
        self.deadline = deadline
        self.sleep = sleep
        self.wait_seconds = wait_seconds
        self._held: dict[str, str] = {}  # holder -> appliance fingerprint
        self._mutex = threading.Lock()

    def check(
        self, host: str, fingerprint: str, shell: ApplianceShell, step: Step, done: Sequence[Step]
    ) -> None:
        # A 7.x partition initialized over REST logs in as HSM Admin there: the same lease and check.
        rest_login = step.action is Action.PARTITION_INIT and step.via is Channel.REST
        if step.action not in (Action.HSM_LOGIN, Action.HSM_INIT) and not rest_login:
            return
        self.acquire(host, fingerprint, str(step))
        hsm = appl.read_hsm(shell, f"{step}: check hsm show")
        if step.action is Action.HSM_INIT and not hsm.zeroized:
            raise ApplianceError(
                host,
                str(step),
                "the HSM is no longer zeroized (another run initialized it?); hsm init was not sent",
            )
        initialized_here = any(s.action is Action.HSM_INIT for s in done)
        if (step.action is Action.HSM_LOGIN or rest_login) and not initialized_here:
            now = ApplianceState(None, None, zeroized=False, attempts_left=hsm.attempts_left)
            check_login_allowed(host, now)

    def acquire(self, host: str, fingerprint: str, step: str) -> None:
        holder = f"{self.run_id}/{host}"
        with self._mutex:
            if holder in self._held:
                return
        waited = 0.0
        pause = 0.25
        while True:
            until = self.coordinator.now() + min(self.deadline.remaining(), UNBOUNDED_LEASE_SECONDS)
            lease = self.coordinator.acquire_admin(fingerprint, holder=holder, until=until, group=self.group)
            if lease is None:
                with self._mutex:
                    self._held[holder] = fingerprint
                return
            if waited >= self.wait_seconds or not self.deadline.allows(pause + 30.0):
                ends = datetime.fromtimestamp(lease.expires, UTC).strftime("%H:%M:%S UTC")
                raise ApplianceError(
                    host,
                    step,
                    f"another run (group {lease.group or 'unknown'}) is working as HSM Admin on this "
                    f"appliance until {ends} at the latest; nothing was sent; re-run when it has finished",
                )
            self.sleep(pause)
            waited += pause
            pause = min(pause * 2, 2.0)

    def release(self, host: str) -> None:
        """Let this run's lease on ``host`` go. A failure does not fail a run whose work is done:
        the lease ends at this run's deadline anyway."""
        holder = f"{self.run_id}/{host}"
        with self._mutex:
            fingerprint = self._held.pop(holder, None)
        if fingerprint is None:
            return
        try:
            self.coordinator.release_admin(fingerprint, holder=holder)
        except CoordinationError as exc:
            log.warning("the HSM Admin lease stays until this run's deadline: %s", exc)
