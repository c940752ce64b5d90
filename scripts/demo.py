#!/usr/bin/env python3
"""`make demo`: a local 3-master Raft cluster on 127.0.0.1 doing real work.

Until the scheduler lands, the demo exercises the consensus layer everything else
stands on: three key/value server processes (gRPC, SQLite WAL, fsync per commit)
take writes, lose their leader to SIGKILL, elect a new one, and prove that every
acknowledged write survived on every node. Ctrl-C stops everything cleanly.
Data lives under ./data/demo (removed at start).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from agentflow.raft.testing.cluster import KvCluster
from agentflow.raft.testing.kvclient import KvClient

DATA = Path("data/demo")
WRITES = 2000


def show(title: str) -> None:
    print(f"\n== {title}", flush=True)


async def table(cluster: KvCluster, client: KvClient) -> None:
    print(f"{'node':<5} {'role':<14} {'term':>4} {'commit':>7} {'applied':>7} {'snapshot':>8}")
    for node in cluster.ids:
        if node not in cluster.procs:
            print(f"{node:<5} {'(down)':<14}")
            continue
        st = await client.status(cluster.address(node))
        print(
            f"{node:<5} {st.role:<14} {st.term:>4} {st.commit_index:>7} "
            f"{st.applied_index:>7} {st.snapshot_index:>8}"
        )


async def write(client: KvClient, start: int, count: int, acked: dict[str, bytes]) -> float:
    began = time.perf_counter()

    async def one(i: int) -> None:
        key, value = f"key-{i}", f"value-{i}".encode()
        await client.put(key, value)
        acked[key] = value

    for chunk in range(start, start + count, 64):
        await asyncio.gather(*(one(i) for i in range(chunk, min(chunk + 64, start + count))))
    return time.perf_counter() - began


async def main() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
    cluster = KvCluster(DATA, size=3, snapshot_every=1000, snapshot_keep=100)
    show(f"starting 3 masters on {', '.join(cluster.addresses())} (data in {DATA})")
    cluster.start_all()
    client = KvClient(cluster.addresses())
    acked: dict[str, bytes] = {}
    try:
        leader = await cluster.leader(client, timeout=30.0)
        print(f"leader elected: {leader}")
        show(f"writing {WRITES} keys, 64 at a time, each committed on a majority")
        took = await write(client, 0, WRITES, acked)
        print(f"{WRITES} writes acknowledged in {took:.2f} s ({WRITES / took:.0f}/s)")
        await table(cluster, client)

        show(f"SIGKILL the leader {leader}")
        began = time.perf_counter()
        cluster.kill(leader)
        await client.put("after-failover", b"ok", deadline=30.0)
        new_leader = await cluster.leader(client, timeout=30.0)
        took = time.perf_counter() - began
        print(f"{new_leader} leads; writes accepted again {took:.2f} s after the kill")
        await write(client, WRITES, 500, acked)
        await table(cluster, client)

        show(f"restarting {leader}: it catches up from its disk and the new leader")
        cluster.start(leader)
        await asyncio.sleep(3.0)
        await table(cluster, client)

        show("checking every acknowledged write on every node (linearizable reads)")
        for node in cluster.ids:
            missing = await client.lost_writes(cluster.address(node), acked)
            verdict = "all present" if not missing else f"MISSING {len(missing)}"
            print(f"{node}: {len(acked)} acknowledged writes, {verdict}")
            if missing:
                raise SystemExit(1)
        show("done: no acknowledged write was lost")
    finally:
        await client.close()
        cluster.stop_all()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("\ninterrupted: all demo processes stopped")
