"""The deterministic Raft simulator (TESTING.md layers 3 and 4).

N `RaftCore`s, a simulated network and simulated disks, driven by one seeded
`random.Random` and a simulated clock: no wall time, no threads, no asyncio. A
run has two phases. In the fault phase (`steps` events) clients propose and read
while the nemesis crashes, pauses and partitions nodes. Then everything heals and
the cluster must, within a bound, elect a leader and apply every acknowledged
proposal on every live member. Every safety invariant is checked after every
event (`invariants.py`); the first violation ends the run.

Each node handles a Ready exactly as its docstring says: persist snapshot,
entries and hard state; send messages; install the snapshot and apply committed
entries; answer reads; `advance`. Nothing else touches a core in between.
"""

from __future__ import annotations

import functools
import heapq
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from agentflow.raft.codec import decode_conf_change
from agentflow.raft.core import RaftCore, bootstrap_entries
from agentflow.raft.guard import refusal
from agentflow.raft.testing import faults
from agentflow.raft.testing import invariants as inv
from agentflow.raft.testing.checks import SafetyChecks, check_ack_matches_leader, check_sent
from agentflow.raft.testing.invariants import InvariantViolation
from agentflow.raft.testing.plan import SimPlan, choose_plan
from agentflow.raft.testing.simnet import Network, copy_message
from agentflow.raft.testing.simnode import (
    AppliedState,
    CrashPoint,
    PendingRead,
    SimNode,
    Status,
    apply_conf_change,
)
from agentflow.raft.types import (
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NodeId,
    Ready,
    Role,
)

DEFAULT_STEPS = 30_000  # 300 three-node seeds take about a minute on 2 cores
HEAL_BOUND_MS = 60_000  # simulated time allowed for convergence after healing, ...
HEAL_CAP_MS = 600_000  # ... extended by half as long while it makes progress, up to this
FULL_CHECK_EVERY = 32  # steps between full pairwise Log Matching cross-checks


@dataclass(slots=True)
class SimResult:
    seed: int
    nodes: int
    steps: int
    ok: bool
    invariant: str = ""
    detail: str = ""
    plan: str = ""
    sim_time_ms: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    trace: list[str] = field(default_factory=list)


class Simulator:
    """One seed's run. Build it, call `run()` once."""

    def __init__(self, seed: int, nodes: int = 3, steps: int = DEFAULT_STEPS, trace: bool = False):
        if nodes < 1:
            raise ValueError(f"nodes must be >= 1, got {nodes}")
        self.seed, self.n, self.max_steps = seed, nodes, steps
        self.rng = random.Random(seed)
        self.plan: SimPlan = choose_plan(self.rng, nodes)
        self.plan_text = self.plan.describe()
        self.net = Network(self.rng, self.plan.net)
        self.now = 0
        self.step_count = 0
        self.healing = False
        self.healed_at = 0
        self.tracing = trace
        self.trace: list[str] = []
        self.stats: dict[str, int] = {}
        self._events: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self.nodes: dict[NodeId, SimNode] = {}
        self.checks = SafetyChecks()
        # Clients.
        self.cmd_seq = 0
        self.acked_max = 0
        self.reads: dict[bytes, PendingRead] = {}
        self.marker_index = 0
        self.marker_sent_at = -1
        self.spares: list[NodeId] = []
        self.part_gen = 0
        members = {f"n{i}": f"sim://n{i}" for i in range(1, nodes + 1)}
        boot = bootstrap_entries(members)
        for nid in members:
            node = self.add_node(nid)
            node.store.entries = [Entry(e.term, e.index, e.type, e.data) for e in boot]
            node.store.hard_state = HardState(term=1, commit=len(members))
        commits = self.checks.commits
        commits.entry_term += [1] * len(boot)
        commits.commit_term += [1] * len(boot)  # committed by construction
        for node in list(self.nodes.values()):
            self.boot(node)
        faults.start(self)

    # -- event loop ------------------------------------------------------------

    def at(self, delay: int, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (self.now + max(0, delay), self._seq, fn))

    def note(self, what: str) -> None:
        if self.tracing:
            self.trace.append(f"{self.now} {what}")

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def run(self) -> SimResult:
        try:
            while self.step_count < self.max_steps:
                self._step()
            faults.heal(self)
            self.healed_at = self.now
            cap = self.now + HEAL_CAP_MS
            deadline = self.now + HEAL_BOUND_MS
            mark = self.progress_mark()
            heal_steps = 0
            while not self.converged():
                if self.now > deadline:
                    # Slow configurations (one entry per message, one message in
                    # flight, long delays) get more time only while they advance.
                    if self.progress_mark() <= mark or self.now > cap:
                        raise InvariantViolation(inv.LIVENESS, self.liveness_detail())
                    mark, deadline = self.progress_mark(), self.now + HEAL_BOUND_MS // 2
                if heal_steps > 100 * self.max_steps + 1_000_000:
                    raise InvariantViolation(inv.LIVENESS, self.liveness_detail())
                self._step()
                heal_steps += 1
            self.checks.full(self.nodes.values())
            return self._result(True)
        except InvariantViolation as v:
            return self._result(False, v.invariant, v.detail)
        except Exception as e:  # a crash of the core (or the simulator) fails the seed
            frame = traceback.extract_tb(e.__traceback__)[-1]
            where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
            return self._result(False, inv.EXCEPTION, f"{type(e).__name__}: {e} at {where}")

    def _result(self, ok: bool, invariant: str = "", detail: str = "") -> SimResult:
        if not ok:
            detail = f"{detail} (step {self.step_count}, t={self.now}ms)"
        return SimResult(
            self.seed,
            self.n,
            self.max_steps,
            ok,
            invariant,
            detail,
            self.plan_text,
            self.now,
            dict(sorted(self.stats.items())),
            self.trace,
        )

    def _step(self) -> None:
        when, _, fn = heapq.heappop(self._events)
        self.now = when
        fn()
        self.step_count += 1
        for nid, term in self.checks.after_step(self.nodes.values()):
            self.count("leaders")
            self.note(f"leader {nid} t{term}")
        if self.step_count % FULL_CHECK_EVERY == 0:
            self.checks.full(self.nodes.values())

    # -- nodes -----------------------------------------------------------------

    def add_node(self, nid: NodeId) -> SimNode:
        node = SimNode(nid, self.plan.config, self.plan.tick_period(self.rng))
        self.nodes[nid] = node
        return node

    def boot(self, node: SimNode) -> None:
        node.start(self.rng)
        self.checks.forget(node.id)
        self.note(f"start {node.id} inc={node.incarnation} term={node.store.hard_state.term}")
        inc = node.incarnation
        self.at(self.rng.randrange(1, node.tick_period + 1), lambda: self.tick(node, inc))
        self.after_input(node)

    def crash(self, node: SimNode, how: str) -> None:
        self.note(f"crash {node.id} ({how})")
        self.count("crashes")
        node.stop(Status.DOWN)
        if not self.healing:
            self.at(self.rng.randrange(100, 5000), lambda: self.restart(node))

    def restart(self, node: SimNode) -> None:
        if node.status is Status.DOWN:
            self.count("restarts")
            self.boot(node)

    def decommission(self, nid: NodeId) -> None:
        node = self.nodes.get(nid)
        if node is not None and node.status is not Status.REMOVED:
            self.note(f"decommission {nid}")
            node.stop(Status.REMOVED)

    def tick(self, node: SimNode, inc: int) -> None:
        core = node.live_core()
        if core is None or node.incarnation != inc:
            return
        self.at(node.tick_period, lambda: self.tick(node, inc))
        if node.paused(self.now):
            return
        core.tick()
        self.after_input(node)

    def deliver(
        self, m: Message, peer: NodeId | None = None, forged: bool = False, dest: NodeId = ""
    ) -> None:
        """`peer` is the sender the connection declares (default: `m.frm`, an
        honest one); `forged` marks a message the nemesis made up, and `dest`
        where it goes when that is not `m.to`."""
        node = self.nodes.get(dest or m.to)
        if node is None:
            return
        core = node.live_core()
        sender = m.frm if peer is None else peer
        if core is None or self.net.blocked(sender, m.to):
            return
        if node.paused(self.now):
            delay = node.paused_until - self.now + self.rng.randrange(5)
            self.at(delay, functools.partial(self.deliver, m, peer, forged, dest))
            return
        view = core.edge_view(m.frm)
        bad = refusal(m, node.id, sender, view)
        if bad is not None:
            self.count(f"refused_{bad[0].value}" if forged else f"refused_honest_{bad[0].value}")
            self.note(f"refuse {m.type.name} {m.frm}->{m.to} t{m.term}: {bad[1]}")
            return
        if forged:
            if view.is_member:
                raise InvariantViolation(
                    inv.EXCEPTION, f"{node.id} stepped a forged {m.type.name} from {m.frm}"
                )
            self.count("forged_stepped_while_joining")
        if self.tracing:
            self.note(
                f"deliver {m.type.name} {m.frm}->{m.to} t{m.term} i{m.index} n{len(m.entries)}"
            )
        if m.type is MessageType.SNAPSHOT:
            self.count("snapshots_delivered")
        core.step(copy_message(m))
        self.after_input(node)

    def after_input(self, node: SimNode) -> None:
        core = node.live_core()
        if core is not None and not node.ready_scheduled and core.has_ready():
            node.ready_scheduled = True
            inc = node.incarnation
            delay = self.rng.randrange(self.plan.disk_latency + 1)
            self.at(delay, lambda: self.ready(node, inc))

    # -- the Ready contract -----------------------------------------------------

    def ready(self, node: SimNode, inc: int) -> None:
        core = node.live_core()
        if core is None or node.incarnation != inc:
            return
        node.ready_scheduled = False
        if node.paused(self.now):
            node.ready_scheduled = True
            self.at(node.paused_until - self.now, lambda: self.ready(node, inc))
            return
        if not core.has_ready():
            return
        rd = core.ready()
        if node.crash_point is CrashPoint.BEFORE_PERSIST:
            return self.crash(node, "lost an unsynced Ready")
        self.persist(node, rd)
        if node.crash_point is CrashPoint.AFTER_PERSIST:
            return self.crash(node, "after persist")
        self.send(node, rd.messages)
        if node.crash_point is CrashPoint.AFTER_SEND:
            return self.crash(node, "after send")
        self.apply(node, core, rd)
        core.advance(rd)
        if core.follower_losses:
            # Simulated disks lose nothing durable: these are stale rejections,
            # which the leader answers with a needless (harmless) probe.
            self.count("follower_losses_reported", len(core.follower_losses))
            core.follower_losses.clear()
        if core.log.pending_snapshot is None and core.conf != node.conf:
            raise InvariantViolation(
                inv.MEMBERSHIP,
                f"{node.id}: core membership {core.conf} but applied entries give {node.conf}",
            )
        if rd.soft_state is not None:
            self.note(f"{node.id} is {rd.soft_state.role.value} t{core.term}")
        self.after_input(node)

    def persist(self, node: SimNode, rd: Ready) -> None:
        st = node.store
        if rd.snapshot is not None:
            st.save_snapshot(rd.snapshot)
        if rd.entries:
            st.append(node.id, rd.entries)
        if rd.hard_state is not None:
            self.checks.durable.observe(node.id, rd.hard_state)
            st.hard_state = rd.hard_state
        if st.hard_state.commit > st.last_index():
            raise InvariantViolation(
                inv.PERSIST_BEFORE_SEND,
                f"{node.id}: durable commit {st.hard_state.commit} is beyond its durable log "
                f"(last {st.last_index()})",
            )

    def send(self, node: SimNode, msgs: list[Message]) -> None:
        for m in msgs:
            check_sent(node, m)
            check_ack_matches_leader(node, m, self.nodes.get(m.to))
            dest = self.nodes.get(m.to)
            if dest is None:
                raise InvariantViolation(inv.EXCEPTION, f"{node.id} sent {m.type.name} to {m.to!r}")
            wire = copy_message(m)
            delays = self.net.delays(m.frm, m.to)
            for d in delays:
                self.at(d, functools.partial(self.deliver, wire))
            if (not delays or dest.status is not Status.UP) and self.rng.random() < 0.2:
                self.at(self.rng.randrange(1, 50), functools.partial(self.unreachable, node, m.to))

    def unreachable(self, node: SimNode, peer: NodeId) -> None:
        core = node.live_core()
        if core is not None and not node.paused(self.now):
            core.report_unreachable(peer)
            self.after_input(node)

    def apply(self, node: SimNode, core: RaftCore, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.install_snapshot(node, rd)
        sm = node.sm
        for e in rd.committed_entries:
            self.checks.applying(node, e)
            sm.apply(e)
            self.checks.history.observe(node.id, e.index, e.term, e.data, sm.digest)
            self.count("applied")
            p = node.pending.pop(e.index, None)
            if p is not None and p.term == e.term:
                if p.data != e.data:
                    raise InvariantViolation(
                        inv.ACKNOWLEDGED_WRITE,
                        f"{node.id} proposed {p.data!r} at {e.index} term {e.term} "
                        f"but applied {e.data!r}",
                    )
                self.count("acked")
                self.acked_max = max(self.acked_max, e.index)
                if p.marker:
                    self.marker_index = e.index
            if e.type is EntryType.CONF_CHANGE:
                cc = decode_conf_change(e.data)
                node.conf = apply_conf_change(node.conf, cc)
                if cc.type is ConfChangeType.REMOVE and cc.node_id in self.nodes:
                    self.nodes[cc.node_id].retired = True
                    # The operator shuts the removed node down a little later; until
                    # then it may not know it was removed and keep campaigning.
                    delay = self.rng.randrange(3000)
                    self.at(delay, functools.partial(self.decommission, cc.node_id))
        for rs in rd.read_states:
            req = self.reads.get(rs.context)
            if req is None or req.node != node.id:
                raise InvariantViolation(
                    inv.LINEARIZABLE_READ, f"{node.id} got a read state for {rs.context!r}"
                )
            if rs.index < req.min_index:
                raise InvariantViolation(
                    inv.LINEARIZABLE_READ,
                    f"read {rs.context!r} on {node.id} got index {rs.index}, but "
                    f"{req.min_index} was committed before it was requested",
                )
            self.count("reads_checked")

    def install_snapshot(self, node: SimNode, rd: Ready) -> None:
        assert rd.snapshot is not None
        new = AppliedState.decode(rd.snapshot.data)
        if new.index != rd.snapshot.meta.index or new.term != rd.snapshot.meta.term:
            raise InvariantViolation(
                inv.STATE_MACHINE_SAFETY,
                f"{node.id} got snapshot meta ({rd.snapshot.meta.index}, "
                f"{rd.snapshot.meta.term}) for state at ({new.index}, {new.term})",
            )
        if new.index < node.sm.index:
            raise InvariantViolation(
                inv.STATE_MACHINE_SAFETY,
                f"{node.id} installs a snapshot at {new.index} over applied {node.sm.index}",
            )
        self.checks.history.check_snapshot(node.id, new.index, new.digest)
        node.sm = new
        node.conf = rd.snapshot.meta.conf_state
        node.pending = {i: p for i, p in node.pending.items() if i > new.index}
        self.count("snapshots_installed")

    # -- liveness --------------------------------------------------------------

    def leader(self) -> SimNode | None:
        best: SimNode | None = None
        for node in self.nodes.values():
            core = node.live_core()
            if (
                core is not None
                and core.role is Role.LEADER
                and (best is None or (best.core is not None and core.term > best.core.term))
            ):
                best = node
        return best

    def lagging(self) -> list[str]:
        """Live members (in the leader's view) that have not applied everything
        acknowledged, as "node@applied"."""
        lead = self.leader()
        if lead is None or lead.core is None:
            return []
        need = max(self.acked_max, self.marker_index)
        out = []
        for nid in lead.core.conf.members():
            node = self.nodes[nid]
            if node.status is Status.REMOVED:
                continue
            if node.status is not Status.UP or node.sm.index < need:
                out.append(f"{nid}@{node.sm.index}")
        return out

    def progress_mark(self) -> int:
        """Grows whenever any live node applies something."""
        return sum(n.sm.index for n in self.nodes.values() if n.status is Status.UP)

    def converged(self) -> bool:
        return self.marker_index > 0 and self.leader() is not None and not self.lagging()

    def liveness_detail(self) -> str:
        lead = self.leader()
        if lead is None or lead.core is None:
            roles = ", ".join(
                f"{n.id}:{n.core.role.value}/t{n.core.term}"
                if n.core
                else f"{n.id}:{n.status.value}"
                for n in self.nodes.values()
            )
            return f"no leader {self.now - self.healed_at} ms after healing ({roles})"
        since = f"{self.now - self.healed_at} ms after healing"
        if not self.marker_index:
            return f"leader {lead.id} t{lead.core.term} could not commit a new proposal {since}"
        return (
            f"acknowledged entries up to {max(self.acked_max, self.marker_index)} not applied "
            f"on {', '.join(self.lagging())} {since} (leader {lead.id} t{lead.core.term})"
        )


def run_seed(
    seed: int, nodes: int = 3, steps: int = DEFAULT_STEPS, trace: bool = False
) -> SimResult:
    """Simulate one seed; the result depends only on (seed, nodes, steps)."""
    return Simulator(seed, nodes, steps, trace).run()
