"""How long a lease lasts by this process's own clock, and when to renew it.

The cluster decides expiry on the leader's clock, from the moment it applies a grant
or a renewal, which is after this process sent the request. So `sent + ttl` by the
local monotonic clock ends no later than the lease does (clock rates aside): a
holder that trusts its lease only until then never holds it longer than the cluster
grants. No I/O here; both clients' lock leases use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RENEW_FRACTION", "LeaseClock"]

RENEW_FRACTION = 1 / 3  # renew when this much of the lease has passed


class LeaseClock:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._sent = 0.0
        self._valid_until = 0.0  # 0: no lease

    def now(self) -> float:
        return self._clock()

    def granted(self, sent: float) -> None:
        """A grant or renewal answered the request sent at `sent` (a `now()`)."""
        self._sent = sent
        self._valid_until = sent + self.ttl

    def ended(self) -> None:
        self._valid_until = 0.0

    @property
    def holding(self) -> bool:
        return self._valid_until > 0

    def remaining(self) -> float:
        """Seconds the lease surely lasts; 0 once it may have ended."""
        return max(0.0, self._valid_until - self._clock()) if self._valid_until else 0.0

    def expired(self) -> bool:
        return self.holding and self._clock() >= self._valid_until

    def until_renewal(self) -> float:
        """Seconds until the next renewal is due (0: now)."""
        due = self._sent + self.ttl * RENEW_FRACTION
        return max(0.0, due - self._clock())
