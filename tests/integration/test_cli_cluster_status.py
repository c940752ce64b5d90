"""`agentflow cluster status` (the installed command) against three real masters, one
of them SIGSTOPped: the leader's view shows it unreachable, silent for longer and
longer and falling behind, while the live follower keeps up; a follower asked for
the status answers with the leader's view, or says why it cannot."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agentflow.master.testing import MasterCluster

AGENTFLOW = Path(sys.executable).parent / "agentflow"


def agentflow(master: str, *args: str) -> str:
    command = [str(AGENTFLOW)] if AGENTFLOW.exists() else [sys.executable, "-m", "agentflow.cli"]
    env = dict(os.environ, MASTER_URL=master)
    result = subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def status(master: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(agentflow(master, "--output", "json", "cluster", "status"))
    return data


def members(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in data["members"]}


def submit(master: str, count: int) -> None:
    for i in range(count):
        agentflow(master, "add", f"job {i}", "--desc", "shell:true", "-g", "nobody")


def test_status_shows_a_stopped_follower_unreachable_and_behind(tmp_path: Path) -> None:
    cluster = MasterCluster(tmp_path / "masters", size=3)
    try:
        asyncio.run(cluster.start_all())
        leader = asyncio.run(cluster.leader())
        dead, live = (n for n in cluster.ids if n != leader)
        at_leader, at_live = cluster.address(leader), cluster.address(live)
        submit(at_leader, 2)

        before = status(at_leader)
        assert before["members_view"] == leader
        for m in members(before).values():
            assert m["progress_known"] and m["reachable"], m

        cluster.group.pause(dead)  # SIGSTOP, by pid
        paused_at = time.monotonic()
        time.sleep(3.0)  # two to four election timeouts
        submit(at_leader, 3)

        # Asked of the live follower: it forwards the question to the leader.
        first = status(at_live)
        assert (first["node_id"], first["role"]) == (live, "follower")
        assert first["members_view"] == leader and first["members_view_note"] == ""
        seen = members(first)
        leader_last = seen[leader]["match_index"]
        stopped = seen[dead]
        assert stopped["progress_known"] and not stopped["reachable"], stopped
        assert 2.5 <= stopped["last_contact_seconds"] <= time.monotonic() - paused_at + 0.5
        assert stopped["lag"] == leader_last - stopped["match_index"] >= 3
        follower = seen[live]
        assert follower["reachable"] and follower["last_contact_seconds"] < 1.0
        assert follower["lag"] <= 2 and follower["match_index"] >= leader_last - 2

        time.sleep(1.0)
        submit(at_leader, 1)
        second = members(status(at_leader))
        assert second[dead]["last_contact_seconds"] >= stopped["last_contact_seconds"] + 0.8
        assert second[dead]["lag"] > stopped["lag"]
        assert second[dead]["match_index"] == stopped["match_index"]

        text = agentflow(at_live, "cluster", "status")
        assert f"members as seen by: {leader} (the leader)\n" in text
        assert f"✖ [{dead}] {cluster.address(dead)}\n   role: voter\n" in text
        assert "   contact: unreachable, no reply for " in text
        assert f"● [{live}] {at_live}\n   role: follower, voter\n" in text

        # own_view: the follower answers from what it knows, without asking.
        own = asyncio.run(cluster.status(live, own_view=True))
        assert own.members_view == live and not any(m.progress_known for m in own.members)
        asked = asyncio.run(cluster.status(live, own_view=False))
        assert asked.members_view == leader and all(m.progress_known for m in asked.members)

        # With the leader stopped too, the follower can only offer its own view.
        cluster.group.pause(leader)
        alone = status(at_live)
        assert alone["members_view"] == live
        assert alone["members_view_note"] in (
            f"leader {leader} ({at_leader}) did not answer: DEADLINE_EXCEEDED",
            "no leader known to this master",
        ), alone["members_view_note"]
        assert not any(m["progress_known"] for m in alone["members"])
        text = agentflow(at_live, "cluster", "status")
        assert f"members as seen by: {live} (its own view, without reachability or lag: " in text
    finally:
        cluster.stop_all()
