"""The simulator's workload and nemesis: clients proposing and reading, operators
transferring leadership, changing membership and compacting, and the faults.

Each activity is a process that reschedules itself at random intervals drawn
from the seed, for as long as the fault phase lasts (compaction keeps going
while the cluster converges). Nothing here depends on the step budget, so a
seed's first K steps are the same whatever budget it runs with.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentflow.raft.guard import LIMIT
from agentflow.raft.testing import invariants as inv
from agentflow.raft.testing.invariants import InvariantViolation
from agentflow.raft.testing.simnode import CrashPoint, PendingRead, Proposal, SimNode, Status
from agentflow.raft.types import (
    ConfChange,
    ConfChangeError,
    ConfChangeType,
    Entry,
    Message,
    MessageType,
    NotLeaderError,
    ProposalDroppedError,
    Role,
    Snapshot,
    SnapshotMeta,
)

if TYPE_CHECKING:
    from agentflow.raft.testing.sim import Simulator

MAX_SPARES = 2  # nodes that may join during a run
MAX_PENDING = 32  # unanswered proposals a node accepts from clients before they back off


def _interval(rng: random.Random, mean: int) -> int:
    return rng.randrange(max(1, mean // 2), mean * 3 // 2 + 2)


def _every(
    sim: Simulator, mean: int, fn: Callable[[Simulator], None], in_heal: bool = False
) -> None:
    def loop() -> None:
        if sim.healing and not in_heal:
            return
        fn(sim)
        sim.at(_interval(sim.rng, mean), loop)

    sim.at(_interval(sim.rng, mean), loop)


def start(sim: Simulator) -> None:
    plan = sim.plan
    _every(sim, plan.propose_ms, propose)
    if plan.reads:
        _every(sim, 150, read)
    if plan.transfer:
        _every(sim, 3000, transfer)
    if plan.membership:
        _every(sim, 1500, change_membership)
    if plan.compaction:
        _every(sim, 400, compact, in_heal=True)
    if plan.crash or plan.pause or plan.partition:
        _every(sim, plan.nemesis_ms, nemesis)
    if plan.forge:
        _every(sim, 300, forge)


def heal(sim: Simulator) -> None:
    """End the fault phase: everything up, no partitions, no drops."""
    sim.healing = True
    sim.note("heal")
    sim.net.heal()
    sim.net.cfg.drop_p = 0.0
    for node in list(sim.nodes.values()):
        node.paused_until = min(node.paused_until, sim.now)
        node.crash_point = None
        sim.restart(node)
    _every(sim, 100, _propose_marker, in_heal=True)


# -- clients -----------------------------------------------------------------------


def _available(sim: Simulator) -> list[SimNode]:
    return [n for n in sim.nodes.values() if n.status is Status.UP and not n.paused(sim.now)]


def _client_target(sim: Simulator, p_leader: float) -> SimNode | None:
    nodes = _available(sim)
    if not nodes:
        return None
    leaders = [n for n in nodes if n.core is not None and n.core.role is Role.LEADER]
    if leaders and sim.rng.random() < p_leader:
        return sim.rng.choice(leaders)
    return sim.rng.choice(nodes)


def _submit(sim: Simulator, node: SimNode, cmds: list[bytes], marker: bool = False) -> bool:
    assert node.core is not None
    try:
        first, term = node.core.propose(cmds)
    except (NotLeaderError, ProposalDroppedError):
        sim.count("proposals_refused")
        return False
    for i, c in enumerate(cmds):
        node.pending[first + i] = Proposal(term, c, marker)
    sim.count("proposals", len(cmds))
    sim.note(f"propose {node.id} {first}..{first + len(cmds) - 1} t{term}")
    sim.after_input(node)
    return True


def propose(sim: Simulator) -> None:
    node = _client_target(sim, 0.85)
    if node is None or len(node.pending) >= MAX_PENDING:
        return  # clients wait for answers: backlog stays bounded, as with a real driver
    cmds = []
    for _ in range(sim.rng.randint(1, 3)):
        sim.cmd_seq += 1
        cmds.append(b"c%d" % sim.cmd_seq)
    _submit(sim, node, cmds)


def _propose_marker(sim: Simulator) -> None:
    """After healing: a fresh proposal must commit (the cluster makes progress)."""
    if sim.marker_index:
        return
    lead = sim.leader()
    if lead is None or (sim.marker_sent_at >= 0 and sim.now - sim.marker_sent_at < 2000):
        return
    sim.cmd_seq += 1
    if _submit(sim, lead, [b"marker%d" % sim.cmd_seq], marker=True):
        sim.marker_sent_at = sim.now


def read(sim: Simulator) -> None:
    node = _client_target(sim, 0.5)
    if node is None or node.core is None:
        return
    sim.cmd_seq += 1
    ctx = b"read%d" % sim.cmd_seq
    sim.reads[ctx] = PendingRead(node.id, sim.checks.commits.max_index)
    try:
        node.core.request_read(ctx)
    except NotLeaderError:
        del sim.reads[ctx]
        return
    sim.count("reads")
    sim.after_input(node)


# -- operators ---------------------------------------------------------------------


def transfer(sim: Simulator) -> None:
    lead = sim.leader()
    if lead is None or lead.core is None or lead.paused(sim.now):
        return
    voters = [v for v in lead.core.conf.voters if v != lead.id]
    if not voters:
        return
    target = sim.rng.choice(voters)
    try:
        lead.core.transfer_leadership(target)
    except (ConfChangeError, NotLeaderError):
        return
    sim.count("transfers")
    sim.note(f"transfer {lead.id} -> {target}")
    sim.after_input(lead)


def change_membership(sim: Simulator) -> None:
    """Grow by a learner, promote it once caught up, shrink back by removing a voter
    (possibly the leader). Each joining node gets a fresh id."""
    lead = sim.leader()
    if lead is None or lead.core is None or lead.paused(sim.now):
        return
    core = lead.core
    conf = core.conf
    if conf.learners:
        learner = conf.learners[0]
        pr = core.progress.get(learner)
        if pr is None or pr.match < core.log.committed:
            return
        cc = ConfChange(ConfChangeType.PROMOTE, learner)
    elif len(conf.voters) > sim.n or (
        len(conf.voters) >= sim.n and len(conf.voters) > 1 and sim.rng.random() < 0.2
    ):
        cc = ConfChange(ConfChangeType.REMOVE, sim.rng.choice(conf.voters))
    else:
        waiting = [
            nid
            for nid in sim.spares
            if nid not in conf.members()
            and sim.nodes[nid].status is Status.UP
            and not sim.nodes[nid].retired
        ]
        if waiting:
            nid = waiting[0]
        elif len(sim.spares) < MAX_SPARES:
            nid = f"n{len(sim.nodes) + 1}"
            sim.spares.append(nid)
            sim.boot(sim.add_node(nid))
        else:
            return
        cc = ConfChange(ConfChangeType.ADD_LEARNER, nid, f"sim://{nid}")
    try:
        core.propose_conf_change(cc)
    except (ConfChangeError, ProposalDroppedError, NotLeaderError):
        sim.count("conf_changes_refused")
        return
    sim.count("conf_changes")
    sim.note(f"conf change {cc.type.name} {cc.node_id} via {lead.id}")
    sim.after_input(lead)


def compact(sim: Simulator) -> None:
    """Each node snapshots its state machine once it applied enough since the last."""
    for node in _available(sim):
        core, sm = node.core, node.sm
        assert core is not None
        if sm.index - node.store.snapshot_index() < sim.plan.snap_threshold:
            continue
        if core.log.applied != sm.index:
            raise InvariantViolation(
                inv.EXCEPTION, f"{node.id}: core applied {core.log.applied}, host {sm.index}"
            )
        snap = Snapshot(SnapshotMeta(sm.index, sm.term, node.conf), sm.encode())
        point = core.compact(snap, sim.plan.keep_entries)
        node.store.compact(node.id, snap, point)
        sim.count("compactions")
        sim.note(f"compact {node.id} at {sm.index} -> {point}")


# -- nemesis -----------------------------------------------------------------------


def nemesis(sim: Simulator) -> None:
    plan = sim.plan
    kinds = [
        k
        for k, on in (("crash", plan.crash), ("pause", plan.pause), ("partition", plan.partition))
        if on
    ]
    kind = sim.rng.choice(kinds)
    if kind == "crash":
        _crash_one(sim)
    elif kind == "pause":
        nodes = _available(sim)
        if nodes:
            node = sim.rng.choice(nodes)
            node.paused_until = sim.now + sim.rng.randrange(200, 4000)
            sim.count("pauses")
            sim.note(f"pause {node.id} until {node.paused_until}")
    else:
        _partition(sim)


def _crash_one(sim: Simulator) -> None:
    alive = [n for n in sim.nodes.values() if n.status is not Status.REMOVED]
    down = sum(1 for n in alive if n.status is Status.DOWN)
    if not sim.plan.crash_majority and down + 1 > (len(alive) - 1) // 2:
        return
    up = [n for n in alive if n.status is Status.UP and n.crash_point is None]
    if not up:
        return
    node = sim.rng.choice(up)
    point = sim.rng.choice([None, None, *CrashPoint])
    if point is None:
        sim.crash(node, "idle")
    else:
        node.crash_point = point  # happens while handling its next Ready
        sim.note(f"{node.id} will crash {point.value}")


def _partition(sim: Simulator) -> None:
    net = sim.net
    if net.has_partition():
        net.heal()
        sim.note("partition healed")
        return
    names = [n.id for n in sim.nodes.values() if n.status is not Status.REMOVED]
    if len(names) < 2:
        return
    style = sim.rng.choice(["split", "asymmetric", "isolate-leader"])
    if style == "split":
        shuffled = list(names)
        sim.rng.shuffle(shuffled)
        k = sim.rng.randint(1, len(shuffled) // 2)
        net.split(shuffled[:k], shuffled[k:])
    elif style == "asymmetric":
        for _ in range(sim.rng.randint(1, len(names))):
            a, b = sim.rng.sample(names, 2)
            net.block(a, b)
    else:
        lead = sim.leader()
        net.isolate(lead.id if lead else sim.rng.choice(names), names)
    sim.count("partitions")
    sim.note(f"partition {style}: {net.describe()}")
    sim.part_gen += 1
    sim.at(sim.rng.randrange(500, 6000), functools.partial(_end_partition, sim, sim.part_gen))


def _end_partition(sim: Simulator, gen: int) -> None:
    if gen == sim.part_gen and not sim.healing:
        sim.net.heal()
        sim.note("partition healed")


# -- forged messages ----------------------------------------------------------------

FORGERIES = (
    "non-member",
    "misaddressed",
    "sender-mismatch",
    "huge-term",
    "huge-index",
    "second-leader",
    "bad-entries",
)


def forge(sim: Simulator) -> None:
    """Inject one message no honest node would send, straight into a live node's
    inbox. Every kind must be refused at the edge (`guard.refusal`); the run
    counts refusals and any forged message that got through (`forged_stepped`,
    which the simulator's liveness and safety checks then judge)."""
    nodes = _available(sim)
    if not nodes:
        return
    target = sim.rng.choice(nodes)
    core = target.core
    assert core is not None
    if target.id not in core.conf.members():
        # A joining node accepts any sender until it applies its own addition
        # (guard.py documents that window); forging there proves nothing.
        return
    members = [n for n in core.conf.members() if n != target.id]
    kind = sim.rng.choice(FORGERIES)
    last = core.log.last_index()
    term = core.term
    frm = sim.rng.choice(members) if members else "intruder"
    peer = frm
    m = Message(MessageType.APPEND, target.id, frm, term=term + 1, index=last, log_term=term)
    m.entries = [Entry(term + 1, last + 1, data=b"forged")]
    m.commit = last + 1
    if kind == "non-member":
        m.frm = peer = "intruder"
    elif kind == "misaddressed":
        m.to = "nobody"
    elif kind == "sender-mismatch":
        peer = "intruder"
    elif kind == "huge-term":
        m = Message(MessageType.HEARTBEAT, target.id, frm, term=(1 << 64) - 1)
    elif kind == "huge-index":
        m = Message(MessageType.VOTE, target.id, frm, term=term, index=LIMIT, log_term=term)
    elif kind == "second-leader":
        if core.lead in ("", frm) or not members:
            return
        m.term = term
        m.entries = [Entry(term, last + 1, data=b"forged")]
    else:
        m.entries = [Entry(term + 1, last + 3, data=b"forged")]
    sim.count("forged")
    sim.note(f"forge {kind}: {m.type.name} {m.frm}->{m.to} (as {peer}) t{m.term}")
    sim.deliver(m, peer=peer, forged=True, dest=target.id)
    sim.after_input(target)
