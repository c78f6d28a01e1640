"""Traffic between the two slots: HAProxy weights (a canary share, all to one slot), the standby
entry that answers when the active slot dies, and draining a slot's open connections."""

from __future__ import annotations

import time

from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.proxy import ProxyLayout

WEIGHT_SCALE = 256  # HAProxy weights run 0..256


def weights(shares: dict[str, float]) -> dict[str, int]:
    """HAProxy weights for traffic shares (0..1 per slot; a slot not named gets none)."""
    return {s: round(shares.get(s, 0.0) * WEIGHT_SCALE) for s in proxy.SLOTS}


class Traffic:
    """Routes one pipeline's requests through its proxy's admin socket."""

    def __init__(self, layout: ProxyLayout) -> None:
        self.layout = layout

    def route(self, shares: dict[str, float]) -> None:
        proxy.set_weights(self.layout, weights(shares))

    def canary(self, active: str, candidate: str, share: float) -> None:
        """`share` of requests to `candidate`, the rest to `active`."""
        self.route({active: 1 - share, candidate: share})

    def all_to(self, slot: str) -> None:
        """Every request to `slot`, which also becomes a standby: once it has served as the active
        slot, its backup entry takes traffic whenever no weighted slot is up."""
        self.route({slot: 1.0})
        proxy.set_standby(self.layout, slot, True)

    def no_standby(self, slot: str) -> None:
        """A new bento in `slot` is no standby until it has served as active."""
        if self.layout.socket.exists():
            proxy.set_standby(self.layout, slot, False)

    def drain(self, slot: str, timeout: float = 10) -> int:
        """Wait (up to `timeout` s) until `slot` has no request in flight; returns the requests
        still in flight when it stopped waiting (0: drained)."""
        deadline = time.monotonic() + timeout
        while True:
            in_flight = int(proxy.server_stats(self.layout).get(slot, {}).get("scur") or 0)
            if in_flight == 0 or time.monotonic() >= deadline:
                return in_flight
            time.sleep(0.1)
