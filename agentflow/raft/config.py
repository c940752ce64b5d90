"""Tunable parameters of a Raft node, in ticks and counts (the core has no clock)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Defaults, with a 50 ms tick: heartbeat 150 ms, election
    timeout randomized in [750 ms, 1500 ms)."""

    heartbeat_ticks: int = 3
    election_ticks: int = 15  # randomized per term in [election_ticks, 2 * election_ticks)
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_msg: int = 1024
    # Entry bytes per append (at least one entry always goes): a follower that missed
    # many big commands must be sent them in messages the transport can carry.
    max_bytes_per_msg: int = 8 << 20
    max_inflight_msgs: int = 256
    # A leader whose commit index moved tells followers on the appends it sends anyway
    # and otherwise at the next tick, instead of at once by an empty append (and its
    # reply) each. Followers then apply up to a tick later; nothing waits on that.
    lazy_commit_announce: bool = False

    def __post_init__(self) -> None:
        if self.heartbeat_ticks < 1:
            raise ValueError(f"heartbeat_ticks must be >= 1, got {self.heartbeat_ticks}")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ValueError(
                f"election_ticks ({self.election_ticks}) must exceed "
                f"heartbeat_ticks ({self.heartbeat_ticks})"
            )
        if self.max_entries_per_msg < 1:
            raise ValueError(f"max_entries_per_msg must be >= 1, got {self.max_entries_per_msg}")
        if self.max_bytes_per_msg < 1:
            raise ValueError(f"max_bytes_per_msg must be >= 1, got {self.max_bytes_per_msg}")
        if self.max_inflight_msgs < 1:
            raise ValueError(f"max_inflight_msgs must be >= 1, got {self.max_inflight_msgs}")
