"""A Luna 7 partition's roles over the appliance's REST service: read them, and carry out the steps
lunash cannot (all of them before 7.8.1; the Crypto Officer's first password change on every 7.x).

Every step re-reads the appliance right before it acts and does nothing when its effect is there
already: initializing an initialized partition would erase it, and a Crypto Officer initialized
twice would lose the password members use. Nothing is retried: a REST call that fails raises, and
the next run re-reads the state.
"""

from __future__ import annotations

from collections.abc import Mapping

from luna_ha.appliance import GroupSecrets
from luna_ha.errors import ApplianceError
from luna_ha.planner import ALL_LOGIN_ATTEMPTS, Action, PartitionRoles, Step
from luna_ha.rest import LunaRest


class PartitionOverRest:
    """The REST half of one 7.x appliance during one run (HSM ``hsm_serial``)."""

    def __init__(self, rest: LunaRest, host: str, hsm_serial: str) -> None:
        self.rest = rest
        self.host = host
        self.hsm = hsm_serial

    def roles(self, partition_serial: str) -> PartitionRoles:
        """What the appliance says of the partition's initialization and its Crypto Officer."""
        partition = self.rest.partition(self.hsm, partition_serial, step="observe: REST partition")
        if not partition.initialized:
            return PartitionRoles(initialized=False)
        co = self.rest.co_role(self.hsm, partition_serial, step="observe: REST Crypto Officer")
        return PartitionRoles(
            initialized=True,
            co_initialized=co.initialized,
            co_password_expired=co.initialized and co.pin_to_be_changed,
            co_locked_out=co.locked_out,
        )

    def run(self, step: Step, serials: Mapping[str, str], secrets: GroupSecrets) -> None:
        """Carry out one planned REST step on the partition ``step.target``."""
        name = step.target
        pid = serials.get(name)
        if not pid:
            raise ApplianceError(self.host, str(step), f"the serial of partition {name} is not known")
        if step.action is Action.PARTITION_INIT:
            self._init_partition(step, name, pid, secrets)
        elif step.action is Action.CO_INIT:
            self._init_co(step, name, pid, secrets)
        elif step.action is Action.CO_CHANGE:
            self._change_co(step, name, pid, secrets)
        else:
            raise ValueError(f"step '{step}' has no REST form")

    def _init_partition(self, step: Step, name: str, pid: str, secrets: GroupSecrets) -> None:
        where = str(step)
        if self.rest.partition(self.hsm, pid, step=f"{where}: check").initialized:
            return  # initialized since the observation (a duplicated run of this resource): never again
        so_left = self.rest.hsm(self.hsm, step=f"{where}: check HSM").so_logins_left
        if so_left != ALL_LOGIN_ATTEMPTS:
            raise ApplianceError(
                self.host,
                where,
                f"refusing to log in as HSM Admin over REST with {so_left} of {ALL_LOGIN_ATTEMPTS} attempts "
                "left (a failure could zeroize the HSM); log in once by hand with the right password, then "
                "re-run",
            )
        self.rest.hsm_login(self.hsm, secrets.admin_password, step=f"{where}: HSM Admin login")
        self.rest.init_partition(self.hsm, pid, name, secrets.partition_so(), secrets.domain, step=where)

    def _init_co(self, step: Step, name: str, pid: str, secrets: GroupSecrets) -> None:
        where = str(step)
        if self.rest.co_role(self.hsm, pid, step=f"{where}: check").initialized:
            return
        so_password = secrets.partition_so()
        self.rest.partition_so_login(self.hsm, pid, so_password, step=f"{where}: Partition SO login")
        self.rest.init_co(self.hsm, pid, secrets.first_co_password(name), step=where)

    def _change_co(self, step: Step, name: str, pid: str, secrets: GroupSecrets) -> None:
        where = str(step)
        co = self.rest.co_role(self.hsm, pid, step=f"{where}: check")
        if not co.pin_to_be_changed:
            return  # changed already (or the policy does not ask for it)
        self.rest.change_co_password(
            self.hsm, pid, secrets.first_co_password(name), secrets.partition_password, step=where
        )
