"""The simulated network: per-message delay, drops, duplicates and partitions.

Everything is decided by the `random.Random` the simulator passes in, so a seed
fixes every delivery. Messages are copied when sent and again when delivered,
the way serialization would: neither side can see the other's later mutations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agentflow.raft.types import Entry, Message, NodeId


def copy_message(m: Message) -> Message:
    """A deep copy of `m` as the wire would produce (snapshots are immutable)."""
    return Message(
        m.type,
        m.to,
        m.frm,
        term=m.term,
        log_term=m.log_term,
        index=m.index,
        entries=[Entry(e.term, e.index, e.type, e.data) for e in m.entries],
        commit=m.commit,
        reject=m.reject,
        reject_hint=m.reject_hint,
        context=m.context,
        snapshot=m.snapshot,
    )


@dataclass(slots=True)
class NetConfig:
    """Per-seed network behaviour; delays are in simulated milliseconds."""

    drop_p: float = 0.0
    dup_p: float = 0.0
    min_delay: int = 1
    max_jitter: int = 0


class Network:
    """Decides, per message, whether and when each copy arrives.

    Partitions are a set of blocked directed links, checked both when a message is
    sent and when it would arrive (a partition that starts while a message is in
    flight loses it, as a broken TCP connection would).
    """

    def __init__(self, rng: random.Random, config: NetConfig) -> None:
        self.rng = rng
        self.cfg = config
        self._blocked: set[tuple[NodeId, NodeId]] = set()

    # -- partitions ------------------------------------------------------------

    def blocked(self, frm: NodeId, to: NodeId) -> bool:
        return (frm, to) in self._blocked

    def block(self, frm: NodeId, to: NodeId) -> None:
        self._blocked.add((frm, to))

    def split(self, side_a: list[NodeId], side_b: list[NodeId]) -> None:
        """A symmetric partition between two groups."""
        for a in side_a:
            for b in side_b:
                self._blocked.add((a, b))
                self._blocked.add((b, a))

    def isolate(self, node: NodeId, others: list[NodeId]) -> None:
        self.split([node], [o for o in others if o != node])

    def heal(self) -> None:
        self._blocked.clear()

    def has_partition(self) -> bool:
        return bool(self._blocked)

    def describe(self) -> str:
        return ",".join(f"{a}>{b}" for a, b in sorted(self._blocked)) or "none"

    # -- delivery --------------------------------------------------------------

    def delays(self, frm: NodeId, to: NodeId) -> list[int]:
        """Delays of the copies of one message that will arrive: [] if it is lost,
        two values if it is duplicated. Copies with different delays reorder."""
        if self.blocked(frm, to):
            return []
        cfg = self.cfg
        # Draw the same number of values whatever the outcome, so changing a
        # probability does not shift every later draw of the seed.
        r_drop, r_dup = self.rng.random(), self.rng.random()
        d1 = cfg.min_delay + (self.rng.randrange(cfg.max_jitter + 1) if cfg.max_jitter else 0)
        if r_drop < cfg.drop_p:
            return []
        out = [d1]
        if r_dup < cfg.dup_p:
            out.append(cfg.min_delay + self.rng.randrange(2 * cfg.max_jitter + 2))
        return out
