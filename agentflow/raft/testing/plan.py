"""What a seed simulates: Raft configuration, network behaviour and which faults
are enabled, all drawn from the seed's `random.Random` before the run starts."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from agentflow.raft.config import RaftConfig
from agentflow.raft.testing.simnet import NetConfig

TICK_MS = 50  # simulated milliseconds per tick at nominal clock rate (config doc)


@dataclass(frozen=True, slots=True)
class SimPlan:
    nodes: int
    config: RaftConfig
    net: NetConfig
    drift: bool  # nodes tick at different rates
    disk_latency: int  # max ms between a core having a Ready and the host taking it
    crash: bool
    crash_majority: bool  # may more than a minority be down at once
    pause: bool
    partition: bool
    transfer: bool
    membership: bool
    reads: bool
    compaction: bool
    snap_threshold: int  # applied entries between local snapshots
    keep_entries: int  # `keep_entries` passed to core.compact
    nemesis_ms: int  # mean interval between faults
    propose_ms: int  # mean interval between client proposals
    forge: bool = False  # a nemesis injects forged and malformed messages (faults.forge)

    def tick_period(self, rng: random.Random) -> int:
        """A node's clock: ms per tick. Without PreVote drift stays within 15 %: a
        clock more than twice as fast as another's always times out first (the
        timeout is randomized only in [T, 2T)), so a node that cannot win (its
        log is behind) would depose every other candidate forever."""
        if not self.drift:
            return TICK_MS
        spread = (0.6, 1.6) if self.config.pre_vote else (0.85, 1.15)
        return round(TICK_MS * rng.uniform(*spread))

    def describe(self) -> str:
        c, n = self.config, self.net
        faults = [
            name
            for name, on in (
                ("crash", self.crash),
                ("crash-majority", self.crash_majority),
                ("pause", self.pause),
                ("partition", self.partition),
                ("drift", self.drift),
                ("transfer", self.transfer),
                ("membership", self.membership),
                ("reads", self.reads),
                ("compaction", self.compaction),
                ("forge", self.forge),
            )
            if on
        ]
        return (
            f"nodes={self.nodes} hb={c.heartbeat_ticks} el={c.election_ticks} "
            f"batch={c.max_entries_per_msg} inflight={c.max_inflight_msgs} "
            f"prevote={c.pre_vote} cq={c.check_quorum} lazy={c.lazy_commit_announce} "
            f"drop={n.drop_p} dup={n.dup_p} "
            f"delay={n.min_delay}+{n.max_jitter} disk={self.disk_latency} "
            f"faults={','.join(faults) or 'none'}"
        )


def choose_plan(rng: random.Random, nodes: int) -> SimPlan:
    hb, el = rng.choice([(3, 15), (3, 15), (1, 3), (1, 5), (2, 10), (1, 10)])
    config = RaftConfig(
        heartbeat_ticks=hb,
        election_ticks=el,
        pre_vote=rng.random() < 0.85,
        check_quorum=rng.random() < 0.85,
        max_entries_per_msg=rng.choice([1024, 1024, 4, 1]),
        max_inflight_msgs=rng.choice([256, 256, 4, 1]),
    )
    net = NetConfig(
        drop_p=rng.choice([0.0, 0.0, 0.02, 0.05, 0.1, 0.2, 0.3]),
        dup_p=rng.choice([0.0, 0.0, 0.01, 0.05, 0.1]),
        min_delay=rng.randint(1, 5),
        # Raft needs broadcast time well under the election timeout (§5.6).
        max_jitter=rng.choice([j for j in (0, 2, 10, 40, 150, 400) if j <= el * TICK_MS * 0.55]),
    )
    plan = SimPlan(
        nodes=nodes,
        config=config,
        net=net,
        drift=rng.random() < 0.5,
        disk_latency=rng.choice([0, 1, 5, 20]),
        crash=rng.random() < 0.6,
        crash_majority=rng.random() < 0.2,
        pause=rng.random() < 0.4,
        partition=rng.random() < 0.6,
        transfer=rng.random() < 0.3,
        membership=rng.random() < 0.3,
        reads=rng.random() < 0.5,
        compaction=rng.random() < 0.8,
        snap_threshold=rng.choice([1, 3, 10, 30]),
        keep_entries=rng.choice([0, 1, 3, 10]),
        nemesis_ms=rng.choice([200, 500, 1500, 4000]),
        propose_ms=rng.choice([20, 60, 200]),
    )
    # Drawn last, so every other choice a seed made before this knob existed stays.
    lazy = dataclasses.replace(config, lazy_commit_announce=rng.random() < 0.7)
    # Drawn after that, for the same reason.
    return dataclasses.replace(plan, config=lazy, forge=rng.random() < 0.4)
