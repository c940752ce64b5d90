"""`agentflow cluster status` text, pinned: the leader's view of every member."""

from __future__ import annotations

from datetime import UTC

from agentflow.cli.cluster_view import cluster_status
from agentflow.cli.render import Style
from agentflow.client.models import ClusterStatus, Member, TaskState

UTC_STYLE = Style(unicode=True, tz=UTC)


def _status(**kw: object) -> ClusterStatus:
    fields: dict[str, object] = {
        "node_id": "n2",
        "role": "follower",
        "leader_id": "n1",
        "leader_address": "h1:6767",
        "term": 4,
        "commit_index": 120,
        "applied_index": 119,
        "last_index": 121,
        "task_counts": {TaskState.READY: 3, TaskState.SUCCEEDED: 10},
    }
    fields.update(kw)
    return ClusterStatus(**fields)  # type: ignore[arg-type]


def _known(member_id: str, **kw: object) -> Member:
    base: dict[str, object] = {
        "id": member_id,
        "address": f"h{member_id[1:]}:6767",
        "voter": True,
        "progress_known": True,
        "reachable": True,
        "contacted": True,
        "replication": "replicate",
    }
    base.update(kw)
    return Member(**base)  # type: ignore[arg-type]


def test_leader_view_with_a_lost_member() -> None:
    status = _status(
        members_view="n1",
        members=(
            _known("n1", match_index=125),
            _known("n2", match_index=124, lag=1, last_contact_seconds=0.05),
            _known(
                "n3",
                match_index=100,
                lag=25,
                reachable=False,
                last_contact_seconds=41.349999,
                replication="probe",
            ),
            _known("n4", voter=False, match_index=125, last_contact_seconds=0.1),
        ),
    )
    assert cluster_status(status, UTC_STYLE) == (
        "cluster: 4 members, leader n1 (h1:6767), term 4\n"
        "   answered by: n2 (follower)\n"
        "   last index: 121\n"
        "   commit index: 120\n"
        "   applied index: 119\n"
        "   tasks: 3 ready, 10 succeeded\n"
        "   members as seen by: n1 (the leader)\n"
        "\n"
        "★ [n1] h1:6767\n"
        "   role: leader, voter\n"
        "   match index: 125\n"
        "\n"
        "● [n2] h2:6767\n"
        "   role: follower, voter\n"
        "   contact: reachable, last reply 50ms ago\n"
        "   match index: 124 (lag 1)\n"
        "\n"
        "✖ [n3] h3:6767\n"
        "   role: voter\n"
        "   contact: unreachable, no reply for 41.3s\n"
        "   match index: 100 (lag 25)\n"
        "   replication: probe\n"
        "\n"
        "● [n4] h4:6767\n"
        "   role: learner\n"
        "   contact: reachable, last reply 100ms ago\n"
        "   match index: 125"
    )


def test_never_heard_since_election() -> None:
    member = _known("n3", reachable=False, contacted=False, last_contact_seconds=2.0, lag=3)
    text = cluster_status(_status(members_view="n1", members=(member,)), UTC_STYLE)
    assert "   contact: unreachable, no reply since this leader took over (2s ago)\n" in text
    fresh = _known("n2", last_contact_seconds=0.0)
    text = cluster_status(_status(members_view="n1", members=(fresh,)), UTC_STYLE)
    assert "   contact: reachable, last reply just now\n" in text


def test_own_view_of_a_follower_says_why() -> None:
    status = _status(
        members_view="n2",
        members_view_note="leader n1 (h1:6767) did not answer: DEADLINE_EXCEEDED",
        members=(Member("n1", "h1:6767", True), Member("n2", "h2:6767", True)),
    )
    assert cluster_status(status, Style(unicode=False, tz=UTC)).endswith(
        "   members as seen by: n2 (its own view, without reachability or lag: "
        "leader n1 (h1:6767) did not answer: DEADLINE_EXCEEDED)\n"
        "\n"
        "* [n1] h1:6767\n"
        "   role: leader, voter\n"
        "\n"
        "o [n2] h2:6767\n"
        "   role: voter"
    )
