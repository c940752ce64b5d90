"""The asyncio driver: owns a RaftCore, its storage, its transport and the state machine.

One loop does everything that touches the core, so the core needs no locks:
drain every input that arrived (messages, ticks, proposals, requests) into the
core, then handle Readies in the documented order: persist (one fsynced
transaction), then send, then apply. Inputs that arrive while a Ready is being
persisted wait for the next turn, which is what batches proposals and appends
under load.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from agentflow.common.failpoints import Failpoints
from agentflow.raft import watermark
from agentflow.raft.config import RaftConfig
from agentflow.raft.core import RaftCore
from agentflow.raft.disk_full import is_disk_full
from agentflow.raft.fsm import StateMachine
from agentflow.raft.guard import RefusalLog, membership_refusal
from agentflow.raft.storage import RaftStorage
from agentflow.raft.types import (
    NONE,
    CommitUnknownError,
    ConfChange,
    ConfChangeBusyError,
    ConfChangeError,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Message,
    NodeId,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)

log = structlog.get_logger(__name__)


class Transport(Protocol):
    """Best-effort, non-blocking delivery. Raft tolerates loss, duplication and
    reordering, so `send` may drop; it must never block the driver's loop."""

    def send(self, messages: Sequence[Message]) -> None: ...

    def update_peers(self, addresses: Mapping[NodeId, str]) -> None: ...


@dataclass(frozen=True, slots=True)
class NodeConfig:
    raft: RaftConfig = field(default_factory=RaftConfig)
    tick_interval: float = 0.05  # seconds per core tick; RaftConfig counts in ticks
    snapshot_every: int = 10_000  # applied entries between local snapshots
    snapshot_keep_entries: int = 1_000  # log kept behind a snapshot for slow followers
    max_batch: int = 4096  # proposals per core.propose call

    def __post_init__(self) -> None:
        if self.tick_interval <= 0:
            raise ValueError(f"tick_interval must be > 0, got {self.tick_interval}")
        if self.snapshot_every < 1:
            raise ValueError(f"snapshot_every must be >= 1, got {self.snapshot_every}")
        if self.snapshot_keep_entries < 0:
            raise ValueError(
                f"snapshot_keep_entries must be >= 0, got {self.snapshot_keep_entries}"
            )


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node_id: NodeId
    role: Role
    leader: NodeId
    term: int
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...]
    addresses: dict[NodeId, str]
    snapshots_installed: int


@dataclass(frozen=True, slots=True)
class MemberProgress:
    """The leader's view of one member's log (from its replication progress), for
    operators. Contact is counted in the leader's ticks, so under a loop that drops
    ticks (see `_ticker`) `idle_seconds` is a lower bound."""

    node_id: NodeId
    match: int  # last index the member is known to hold
    lag: int  # the leader's last index minus `match`
    state: str  # probe | replicate | snapshot
    learner: bool
    heard: bool  # replied since this node became leader
    idle_seconds: float  # since its last reply, or since this node became leader
    reachable: bool  # replied within the last election timeout


@dataclass(slots=True)
class _Proposal:
    data: bytes
    future: asyncio.Future[object]
    index: int = 0
    term: int = 0


class RaftNode:
    def __init__(
        self,
        node_id: NodeId,
        storage: RaftStorage,
        transport: Transport,
        fsm: StateMachine,
        config: NodeConfig | None = None,
        rng: random.Random | None = None,
        failpoints: Failpoints | None = None,
    ) -> None:
        self.id = node_id
        self.storage = storage
        self.transport = transport
        self.fsm = fsm
        self.config = config or NodeConfig()
        self._rng = rng or random.Random()
        self._core: RaftCore | None = None
        self._inbox: list[Message] = []
        self._ticks = 0
        self._proposals: list[_Proposal] = []
        self._requests: list[Callable[[RaftCore], None]] = []
        self._wake = asyncio.Event()
        self._waiting: dict[int, _Proposal] = {}  # log index -> proposal awaiting apply
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._read_ids = itertools.count(1)
        self._apply_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._leader_changed = asyncio.Condition()
        self._snapshots_installed = 0
        self._snapshot_index = 0
        self._stopped = False
        self._addresses: dict[NodeId, str] = {}
        self._durable_hs = HardState()
        self._lazy_hs: HardState | None = None  # commit-only change not yet written
        self._failpoints = failpoints if failpoints is not None else Failpoints.from_env()
        # Messages the transport let through but membership refused (see guard.py).
        self.refusals = RefusalLog()
        self._watermark = 0  # last value written to the watermark file
        self._watermark_at = -watermark.WRITE_EVERY
        self._watermark_task: asyncio.Task[None] | None = None
        self._watermark_no_space = False
        self._was_lost = False

    # -- lifecycle ---------------------------------------------------------------

    async def run(self, bootstrap: Mapping[NodeId, str] | None = None) -> None:
        """Load state and run until cancelled. `bootstrap` founds a new cluster when
        storage is empty (ignored otherwise, so restarts may pass it again)."""
        if bootstrap and await self.storage.is_empty():
            await self.storage.bootstrap(dict(bootstrap))
        state = await self.storage.load()
        data_dir = self.storage.data_dir
        mark = await asyncio.to_thread(watermark.read, data_dir)
        core = RaftCore(
            self.id,
            self.config.raft,
            self._rng,
            hard_state=state.hard_state,
            snapshot=state.snapshot,
            entries=state.entries,
            catch_up_to=mark,
        )
        self._watermark = mark
        if core.catch_up_to:
            log.error(
                "raft.log_lost",
                node=self.id,
                log_ends_at=core.log.last_index(),
                had_committed_through=mark,
                action="not voting or campaigning until the leader has replicated "
                f"entries through {mark} again; if no leader can be elected because a "
                "majority lost entries, delete the watermark file on the nodes to let "
                "them vote (what they lost is then lost for good)",
                watermark_file=str(data_dir / watermark.FILE_NAME),
            )
        if state.snapshot is not None:
            self.fsm.restore(state.snapshot.data)
            self._snapshot_index = state.snapshot.meta.index
        self._core = core
        self._durable_hs = state.hard_state
        self._publish_addresses(core)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._ticker())
                tg.create_task(self._loop(core))
        finally:
            self._stopped = True
            self._fail_everything(f"node {self.id} stopped")

    async def _ticker(self) -> None:
        interval = self.config.tick_interval
        loop = asyncio.get_running_loop()
        next_at = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            # One tick per wake-up, and ticks missed while the loop was busy are
            # dropped (as Go's time.Ticker does): a node blocked by a long apply must
            # not see an election timeout pass in one burst and campaign against a
            # healthy leader.
            next_at = max(next_at + interval, loop.time() + interval)
            self._ticks += 1
            self._wake.set()

    # -- inputs (any task) ---------------------------------------------------------

    def receive(self, message: Message) -> None:
        """Called by the transport for every inbound message."""
        self._inbox.append(message)
        self._wake.set()

    def report_unreachable(self, node: NodeId) -> None:
        self._call_soon(lambda core: core.report_unreachable(node))

    async def propose(self, command: bytes) -> object:
        """Replicate `command`, apply it, and return the state machine's result.
        NotLeaderError: not accepted here (retry on the leader it names).
        ProposalDroppedError: definitely not applied (safe to retry)."""
        if not command:
            raise ValueError("command: must not be empty (empty entries are leader no-ops)")
        self._check_running()
        if self.storage.disk_full:
            # The loop is waiting for space to persist what it has; queueing more
            # only grows what the client will have to wait for, or retry anyway.
            raise ProposalDroppedError(
                f"node {self.id} cannot persist: its data directory {self.storage.data_dir} is full"
            )
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._proposals.append(_Proposal(command, fut))
        self._wake.set()
        return await fut

    async def read_barrier(self, timeout: float | None = None) -> int:
        """Linearizable read point (ReadIndex): returns once this node has applied
        everything committed before the call; local state may then be read."""
        self._check_running()
        core = self._core
        if (
            self.storage.disk_full
            and core is not None
            and core.role is Role.LEADER
            and core.conf.voters == (self.id,)
        ):
            # The loop is stuck persisting, so a ReadIndex would wait for the disk.
            # The only voter needs no quorum, and nothing can commit while it
            # cannot write: what it has applied is everything committed.
            return core.log.applied
        ctx = f"{self.id}:{next(self._read_ids)}".encode()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[ctx] = fut

        def request(core: RaftCore) -> None:
            try:
                core.request_read(ctx)
            except RaftError as exc:
                self._reads.pop(ctx, None)
                if not fut.done():
                    fut.set_exception(exc)

        self._call_soon(request)
        try:
            index = await asyncio.wait_for(fut, timeout)
        finally:
            self._reads.pop(ctx, None)
        await self.wait_applied(index)
        return index

    async def wait_applied(self, index: int) -> None:
        core = self._require_core()
        if core.log.applied >= index:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._apply_waiters.append((index, fut))
        await fut

    async def add_member(
        self, node_id: NodeId, address: str, catch_up_timeout: float = 30.0
    ) -> None:
        """Add a voter safely: as a learner first, promoted once its log has caught
        up with the leader's commit index (so it cannot stall commits).

        Resumable: a retry after a failure part-way (the member is already a
        learner) goes on from where it stopped, and waits out another member's
        change instead of failing on it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + catch_up_timeout
        core = self._require_core()
        if node_id in core.conf.members():
            known = core.conf.address_map().get(node_id, "")
            if known != address:
                raise ConfChangeError(f"node_id: {node_id!r} is already a member at {known}")
            if node_id in core.conf.voters:
                return
        else:
            await self._conf_change_when_idle(
                ConfChange(ConfChangeType.ADD_LEARNER, node_id, address), deadline
            )
        while True:
            core = self._require_core()
            pr = core.progress.get(node_id)
            if core.role is not Role.LEADER:
                raise NotLeaderError(core.lead, "leadership changed while adding a member")
            if pr is not None and pr.match >= core.log.committed:
                break
            if loop.time() > deadline:
                raise ConfChangeError(
                    f"node_id: {node_id!r} did not catch up within {catch_up_timeout} s; "
                    "it stays a learner"
                )
            await asyncio.sleep(self.config.tick_interval)
        await self._conf_change_when_idle(ConfChange(ConfChangeType.PROMOTE, node_id), deadline)

    async def _conf_change_when_idle(self, cc: ConfChange, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._conf_change(cc)
                return
            except ConfChangeBusyError:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(self.config.tick_interval)

    async def remove_member(self, node_id: NodeId) -> None:
        await self._conf_change(ConfChange(ConfChangeType.REMOVE, node_id))

    async def _conf_change(self, cc: ConfChange) -> None:
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        def request(core: RaftCore) -> None:
            try:
                index, term = core.propose_conf_change(cc)
            except RaftError as exc:
                fut.set_exception(exc)
                return
            self._waiting[index] = _Proposal(b"", fut, index, term)

        self._call_soon(request)
        await fut

    async def transfer_leadership(self, target: NodeId, timeout: float | None = None) -> None:
        """Ask the leader (this node) to hand over to `target`; returns when some
        other node leads, raises TimeoutError if none does in time."""
        accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def request(core: RaftCore) -> None:
            try:
                core.transfer_leadership(target)
            except RaftError as exc:
                accepted.set_exception(exc)
                return
            accepted.set_result(None)

        self._call_soon(request)
        await accepted
        limit = timeout or 2 * self.config.raft.election_ticks * self.config.tick_interval
        await self.wait_for_leader(lambda leader: leader not in (NONE, self.id), limit)

    async def step_down(self, timeout: float | None = None) -> bool:
        """On graceful shutdown: if this node leads, hand leadership to the most
        up-to-date other voter so the cluster does not wait out an election
        timeout. Returns whether leadership moved."""
        core = self._core
        if core is None or core.role is not Role.LEADER:
            return False
        others = [(pr.match, n) for n, pr in core.progress.items() if n != self.id]
        candidates = sorted((m, n) for m, n in others if n in core.conf.voters)
        if not candidates:
            return False
        try:
            await self.transfer_leadership(candidates[-1][1], timeout)
        except (RaftError, TimeoutError) as exc:
            log.warning("raft.step_down_failed", node=self.id, error=str(exc))
            return False
        log.info("raft.stepped_down", node=self.id, leader=self.leader())
        return True

    async def wait_for_leader(
        self, predicate: Callable[[NodeId], bool] | None = None, timeout: float | None = None
    ) -> NodeId:
        """Wait until the known leader satisfies `predicate` (default: any leader)."""
        check = predicate or (lambda leader: leader != NONE)
        async with self._leader_changed:
            await asyncio.wait_for(
                self._leader_changed.wait_for(lambda: check(self.leader())), timeout
            )
        return self.leader()

    # -- queries -------------------------------------------------------------------

    def leader(self) -> NodeId:
        return self._core.lead if self._core else NONE

    def is_leader(self) -> bool:
        return self._core is not None and self._core.role is Role.LEADER

    def leader_address(self) -> str:
        return self._addresses.get(self.leader(), "")

    def status(self) -> NodeStatus:
        core = self._require_core()
        return NodeStatus(
            node_id=self.id,
            role=core.role,
            leader=core.lead,
            term=core.term,
            commit_index=core.log.committed,
            applied_index=core.log.applied,
            last_index=core.log.last_index(),
            snapshot_index=self._snapshot_index,
            voters=core.conf.voters,
            learners=core.conf.learners,
            addresses=dict(self._addresses),
            snapshots_installed=self._snapshots_installed,
        )

    def member_progress(self) -> tuple[MemberProgress, ...]:
        """Every member as the leader tracks it, this node included; empty unless
        this node leads (only a leader hears from every member)."""
        core = self._core
        if core is None or core.role is not Role.LEADER:
            return ()
        last = core.log.last_index()
        tick = self.config.tick_interval
        timeout = core.cfg.election_ticks
        views = []
        for node, pr in sorted(core.progress.items()):
            me = node == self.id
            match = last if me else pr.match
            idle = 0 if me else pr.idle_ticks
            heard = me or pr.heard
            views.append(
                MemberProgress(
                    node_id=node,
                    match=match,
                    lag=max(0, last - match),
                    state=pr.state.value,
                    learner=pr.is_learner,
                    heard=heard,
                    idle_seconds=idle * tick,
                    reachable=heard and idle < timeout,
                )
            )
        return tuple(views)

    # -- the loop ------------------------------------------------------------------

    def _call_soon(self, fn: Callable[[RaftCore], None]) -> None:
        self._requests.append(fn)
        self._wake.set()

    def _check_running(self) -> None:
        if self._stopped:
            raise NotLeaderError(NONE, f"node {self.id} is stopped")

    def _require_core(self) -> RaftCore:
        if self._core is None:
            raise NotLeaderError(NONE, f"node {self.id} has not started")
        return self._core

    async def _loop(self, core: RaftCore) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._feed(core)
            while core.has_ready():
                await self._handle_ready(core, core.ready())
            self._after_turn(core)
            if core.log.applied - self._snapshot_index >= self.config.snapshot_every:
                await self._take_snapshot(core)

    def _after_turn(self, core: RaftCore) -> None:
        for peer, match, now_at in core.follower_losses:
            log.error(
                "raft.follower_lost_entries",
                node=self.id,
                peer=peer,
                had_acknowledged=match,
                log_ends_at=now_at,
                action="replicating the missing entries to it again",
            )
        core.follower_losses.clear()
        lost = core.lost_entries()
        if self._was_lost and not lost:
            log.info("raft.log_recovered", node=self.id, last_index=core.log.last_index())
        self._was_lost = lost
        # Committed and durable here: never legitimately removed from this log.
        mark = min(core.log.committed, core.log.unstable_from - 1)
        now = asyncio.get_running_loop().time()
        if (
            mark > self._watermark
            and now - self._watermark_at >= watermark.WRITE_EVERY
            and (self._watermark_task is None or self._watermark_task.done())
        ):
            self._watermark, self._watermark_at = mark, now
            # Off the loop: the write fsyncs twice. A failure only leaves it lower.
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(watermark.write, self.storage.data_dir, mark)
            )
            task.add_done_callback(self._watermark_written)
            self._watermark_task = task

    def _watermark_written(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is None:
            self._watermark_no_space = False
            return
        if is_disk_full(exc):
            # Said once until a write succeeds again (and not at all while the
            # storage is reporting the full disk itself).
            said, self._watermark_no_space = self._watermark_no_space, True
            if said or self.storage.disk_full:
                return
        # The file then lags: it only ever weakens the check, never breaks it.
        log.warning("raft.watermark_write_failed", node=self.id, error=str(exc))

    def _feed(self, core: RaftCore) -> None:
        ticks, self._ticks = self._ticks, 0
        for _ in range(ticks):
            core.tick()
        inbox, self._inbox = self._inbox, []
        for m in inbox:
            bad = membership_refusal(m, core.edge_view(m.frm))
            if bad is None:
                core.step(m)
                continue
            n = self.refusals.record(bad[0], asyncio.get_running_loop().time())
            if n:
                log.warning(
                    "raft.refused",
                    node=self.id,
                    reason=bad[0].value,
                    detail=bad[1],
                    type=m.type.name,
                    refused_since_last_line=n,
                )
        requests, self._requests = self._requests, []
        for fn in requests:
            fn(core)
        while self._proposals:
            batch = self._proposals[: self.config.max_batch]
            del self._proposals[: self.config.max_batch]
            self._propose_batch(core, batch)

    def _propose_batch(self, core: RaftCore, batch: list[_Proposal]) -> None:
        try:
            first, term = core.propose([p.data for p in batch])
        except RaftError as exc:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        for i, p in enumerate(batch):
            p.index, p.term = first + i, term
            self._waiting[p.index] = p

    async def _handle_ready(self, core: RaftCore, ready: Ready) -> None:
        """The Ready contract (persist, send, apply), with three refinements that
        keep the disk off the critical path without weakening it:

        - a change of only the commit index is not fsynced on its own: it need not
          be durable (a restarted node learns it again from the leader), so it is
          written with the next Ready that writes anyway;
        - a leader sends before it writes (Raft thesis 10.2.1) unless the Ready
          changes its term or vote: its own copy counts towards commitment only
          from the next turn of this loop, after the write below has finished;
        - committed entries already durable from earlier Readies are applied
          before this Ready's write, the rest after it.
        """
        rd = ready  # what we persist; the core is advanced with what it gave us
        hs, durable = rd.hard_state, self._durable_hs
        same_vote = hs is None or (hs.term, hs.vote) == (durable.term, durable.vote)
        if hs is not None and same_vote and not rd.entries and rd.snapshot is None:
            self._lazy_hs = hs
            rd = dataclasses.replace(rd, hard_state=None)
        elif hs is None and self._lazy_hs is not None and rd.must_sync():
            rd = dataclasses.replace(rd, hard_state=self._lazy_hs)
        early = core.role is Role.LEADER and same_vote
        fp = self._failpoints
        if early and rd.messages:
            if fp:
                await fp.hit("raft.before_send")
            self.transport.send(rd.messages)
        committed = rd.committed_entries
        split = 0
        if rd.snapshot is None:
            first_new = rd.entries[0].index if rd.entries else None
            split = len(committed)
            if first_new is not None:
                split = next((k for k, e in enumerate(committed) if e.index >= first_new), split)
            if fp and split:
                await fp.hit("raft.before_apply")
            self._apply(committed[:split])
        if rd.must_sync():
            if fp:
                await fp.hit("raft.before_persist")
            await self.storage.save(rd)
            if fp:
                await fp.hit("raft.after_persist")
            if rd.hard_state is not None:
                self._durable_hs, self._lazy_hs = rd.hard_state, None
        if not early and rd.messages:
            if fp:
                await fp.hit("raft.before_send")
            self.transport.send(rd.messages)
        if rd.snapshot is not None:
            if fp:
                await fp.hit("raft.before_snapshot_install")
            self.fsm.restore(rd.snapshot.data)
            self._snapshot_index = rd.snapshot.meta.index
            self._snapshots_installed += 1
            self._drop_waiting_through(rd.snapshot.meta.index)
        if fp and len(committed) > split:
            await fp.hit("raft.before_apply")
        self._apply(committed[split:])
        core.advance(ready)
        for rs in rd.read_states:
            fut = self._reads.pop(rs.context, None)
            if fut is not None and not fut.done():
                fut.set_result(rs.index)
        self._wake_apply_waiters(core.log.applied)
        if rd.soft_state is not None:
            await self._on_soft_state(core)
        if any(e.type is EntryType.CONF_CHANGE for e in committed):
            self._publish_addresses(core)

    def _apply(self, entries: list[Entry]) -> None:
        waiting = self._waiting
        for e in entries:
            result: object = None
            if e.type is EntryType.NORMAL and e.data:
                result = self.fsm.apply(e.index, e.data)
            p = waiting.pop(e.index, None) if waiting else None
            if p is None or p.future.done():
                continue
            if p.term == e.term:
                p.future.set_result(result)
            else:
                p.future.set_exception(
                    ProposalDroppedError(f"entry {e.index} was overwritten by term {e.term}")
                )

    def _drop_waiting_through(self, index: int) -> None:
        """A snapshot from a newer leader jumped over these indexes (we proposed them
        in an older term): whether they were committed is no longer knowable here."""
        for i in [i for i in self._waiting if i <= index]:
            p = self._waiting.pop(i)
            if not p.future.done():
                p.future.set_exception(
                    CommitUnknownError(f"outcome of entry {i} unknown after a snapshot install")
                )

    def _wake_apply_waiters(self, applied: int) -> None:
        if not self._apply_waiters:
            return
        still = []
        for index, fut in self._apply_waiters:
            if index <= applied:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((index, fut))
        self._apply_waiters = still

    async def _on_soft_state(self, core: RaftCore) -> None:
        if core.role is not Role.LEADER:
            # Reads waiting for this leader's confirmation will never get it.
            for ctx, fut in list(self._reads.items()):
                if not fut.done():
                    fut.set_exception(NotLeaderError(core.lead, "leadership changed during read"))
                self._reads.pop(ctx, None)
        log.info("raft.role", node=self.id, role=core.role.value, term=core.term, leader=core.lead)
        async with self._leader_changed:
            self._leader_changed.notify_all()

    def _publish_addresses(self, core: RaftCore) -> None:
        self._addresses = core.conf.address_map()
        self.transport.update_peers({n: a for n, a in self._addresses.items() if n != self.id})

    async def _take_snapshot(self, core: RaftCore) -> None:
        applied = core.log.applied
        term = core.log.term(applied)
        if term is None:
            return
        snap = Snapshot(SnapshotMeta(applied, term, core.conf), self.fsm.snapshot())
        base = core.compact(snap, self.config.snapshot_keep_entries)
        await self.storage.save_snapshot(snap, base)
        self._snapshot_index = applied
        log.info("raft.snapshot", node=self.id, index=applied, compacted_to=base)

    def _fail_everything(self, why: str) -> None:
        exc = NotLeaderError(NONE, why)
        for p in self._proposals:
            if not p.future.done():
                p.future.set_exception(ProposalDroppedError(why))
        for p in self._waiting.values():
            if not p.future.done():
                p.future.set_exception(CommitUnknownError(why))
        self._proposals.clear()
        self._waiting.clear()
        for fut in self._reads.values():
            if not fut.done():
                fut.set_exception(exc)
        self._reads.clear()
        for _, wfut in self._apply_waiters:
            if not wfut.done():
                wfut.set_exception(exc)
        self._apply_waiters.clear()
