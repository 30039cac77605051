"""The shared client credentials of a group in Parameter Store: found, generated, published.

Which generations a group wants is pure (``generations.py``); this module reads and writes their
keys and certificates. A new generation's key is published before any appliance registers its
certificate, so a run that stops half-way leaves a key the next run reuses, never a registration
whose key is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from luna_ha.certs import credential_matches, generate_client_credential
from luna_ha.generations import Generation, credential_parameters, wanted
from luna_ha.layout import Parameter, ParameterPlan, client_cert_name, client_key_name
from luna_ha.spec import ClientSpec
from luna_ha.store import ParameterStore

log = logging.getLogger(__name__)


class ClientCredentials:
    """The client generations under one parameter path."""

    def __init__(self, store: ParameterStore, now: Callable[[], datetime]) -> None:
        self.store = store
        self.now = now

    def generations(
        self,
        clients: Sequence[ClientSpec],
        token: str,
        path: str,
        existing: Mapping[str, Parameter],
        *,
        create: bool,
    ) -> list[Generation]:
        """Each client's current generation and the previous one still in use, with their keys.

        The previous generation is the one published as current before this run (or, when that is
        the current one already, the newest older one still published): running members keep it
        until they re-bootstrap. Without ``create`` a generation not published yet comes back
        without certificate or key (a plan shows it as to be generated).
        """
        result: list[Generation] = []
        for found in wanted(clients, token, existing, path):
            if found.usable and found.cert_pem is not None and found.key_pem is not None:
                result.append(Generation(found.client, found.name, found.cert_pem, found.key_pem))
            elif create:
                credential = generate_client_credential(found.name, now=self.now())
                result.append(
                    Generation(
                        found.client,
                        found.name,
                        credential.cert_pem,
                        credential.key_pem,
                        replace=found.broken,
                    )
                )
            else:
                result.append(Generation(found.client, found.name, "", ""))
        return result

    def publish(
        self,
        path: str,
        generations: list[Generation],
        existing: Mapping[str, Parameter],
        kms_key_id: str | None,
    ) -> list[Parameter]:
        """Write each new generation's key and certificate once; if another run wrote them first
        (a duplicated event), adopt what it wrote (``generations`` is updated in place) so that
        every run registers the same certificate. What a run that died half-way left (a key without
        its certificate, a pair that does not match) is replaced, never a reason to fail. Returns
        the parameters written."""
        written: list[Parameter] = []
        for index, g in enumerate(generations):
            key, cert = credential_parameters(path, [g]).values()
            if key.name in existing and cert.name in existing and not g.replace:
                continue
            if g.replace or not self.store.create(key, kms_key_id=kms_key_id):
                adopted = None if g.replace else self._read_generation(path, g)
                if adopted is not None:
                    generations[index] = adopted
                    continue
                # Nobody is finishing it: this run's pair replaces it, the key first (as always).
                self.store.apply(ParameterPlan(puts=(key,), kms_key_id=kms_key_id))
            self.store.apply(ParameterPlan(puts=(cert,)))
            written += [key, cert]
        return written

    def _read_generation(self, path: str, g: Generation, attempts: int = 10) -> Generation | None:
        """The pair another run is writing under ``g``'s name, once both halves are there and match;
        None when its certificate does not come (that run died, or its write failed)."""
        for _ in range(attempts):
            latest = self.store.read(path)
            key = latest.get(client_key_name(path, g.client, g.name))
            cert = latest.get(client_cert_name(path, g.client, g.name))
            if key is not None and cert is not None and credential_matches(cert.value, key.value):
                return Generation(g.client, g.name, cert.value, key.value)
            time.sleep(0.2)  # the other writer puts the certificate right after the key
        log.warning("the certificate of %s did not come after its key: this run publishes its own", g.name)
        return None
