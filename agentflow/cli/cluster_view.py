"""Text for `agentflow cluster status`: the answering master's term and indexes, then
each member as the leader sees it (reachable or not, how far behind).

    cluster: 3 members, leader m1 (127.0.0.1:6767), term 2
       answered by: m2 (follower)
       ...
       members as seen by: m1 (the leader)

    ✖ [m3] 127.0.0.1:6787
       role: voter
       contact: unreachable, no reply for 41.3s
       match index: 1180 (lag 37)
       replication: probe

Pure functions of their arguments, so tests can pin the exact text.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentflow.cli.render import INDENT, Style, counts_text, plural
from agentflow.client.durations import format_duration
from agentflow.client.models import ClusterStatus, Member


def _block(head: str, lines: Iterable[tuple[str, str]]) -> str:
    return "\n".join([head, *(f"{INDENT}{key}: {value}" for key, value in lines if value)])


def age(seconds: float) -> str:
    # Tenths are all the leader's tick resolution (50 ms) can honestly give.
    return format_duration(round(seconds, 1) if seconds >= 1 else seconds)


def _view(status: ClusterStatus) -> str:
    view = status.members_view or status.node_id
    if view == status.leader_id:
        return f"{view} (the leader)"
    why = f": {status.members_view_note}" if status.members_view_note else ""
    return f"{view} (its own view, without reachability or lag{why})"


def role(member: Member, leader_id: str) -> str:
    if not member.voter:
        return "learner"
    if member.id == leader_id:
        return "leader, voter"
    # "Follower" only for a member the leader hears from: of a silent one nobody
    # knows what it does (it may be down, or campaigning on its own).
    return "follower, voter" if member.progress_known and member.reachable else "voter"


def contact(member: Member) -> str:
    if not member.progress_known:
        return ""
    seconds = member.last_contact_seconds
    since = age(seconds)
    if member.reachable:
        # 0: within the leader's last tick.
        return f"reachable, last reply {since + ' ago' if seconds else 'just now'}"
    if not member.contacted:
        return f"unreachable, no reply since this leader took over ({since} ago)"
    return f"unreachable, no reply for {since}"


def _match(member: Member) -> str:
    if not member.progress_known:
        return ""
    return f"{member.match_index} (lag {member.lag})" if member.lag else str(member.match_index)


def cluster_status(status: ClusterStatus, style: Style) -> str:
    leader = status.leader_id or "unknown"
    if status.leader_address:
        leader += f" ({status.leader_address})"
    head = f"cluster: {plural(len(status.members), 'member')}, leader {leader}, term {status.term}"
    lines = [
        ("answered by", f"{status.node_id} ({status.role})" if status.role else status.node_id),
        ("last index", str(status.last_index) if status.last_index else ""),
        ("commit index", str(status.commit_index)),
        ("applied index", str(status.applied_index)),
        ("tasks", counts_text(status.task_counts)),
        ("members as seen by", _view(status)),
    ]
    blocks = [_block(head, lines)]
    leader_icon, member_icon, lost_icon = ("★", "●", "✖") if style.unicode else ("*", "o", "x")
    for m in status.members:
        icon = member_icon
        if m.id == status.leader_id:
            icon = leader_icon
        elif m.progress_known and not m.reachable:
            icon = lost_icon
        leads = m.id == status.leader_id
        member_lines = [
            ("role", role(m, status.leader_id)),
            ("contact", "" if leads else contact(m)),
            ("match index", _match(m)),
            # Only worth a line when it is not streaming normally.
            ("replication", "" if leads or m.replication in ("", "replicate") else m.replication),
        ]
        blocks.append(_block(f"{icon} [{m.id}] {m.address}", member_lines))
    return "\n\n".join(blocks)
