#!/usr/bin/env python3
"""Raft benchmark on a 3-process loopback cluster (every entry fsynced on each node).

    python bench/raft_bench.py [--seconds 10] [--kills 20] [--out FILE]

Prints one JSON document:
- throughput: committed proposals/s, 100-byte commands, 64 concurrent proposers
  running inside the leader (so the number is Raft's, not the client RPC stack's);
- latency: commit latency p50/p99 with one proposer (low load), both in-leader and
  end to end through a gRPC client;
- failover: time from SIGKILL of the leader until a client write commits again,
  over --kills kills (the killed node restarts before the next kill).
A baseline measured in the same run is included: the same cluster's end-to-end
single-client put latency, so the numbers can be read as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from benchlib import emit, percentile

from agentflow._proto import kv_pb2
from agentflow.raft.testing.cluster import KvCluster
from agentflow.raft.testing.kvclient import KvClient


async def load(
    client: KvClient, cluster: KvCluster, proposers: int, seconds: float
) -> dict[str, float]:
    leader = await cluster.leader(client, timeout=30.0)
    resp = await client.stub(cluster.address(leader)).Load(
        kv_pb2.KvLoadRequest(proposers=proposers, seconds=seconds, value_size=100),
        timeout=seconds + 30,
    )
    return {
        "proposers": proposers,
        "committed": resp.committed,
        "seconds": round(resp.seconds, 3),
        "commits_per_s": round(resp.committed / resp.seconds, 1),
        "p50_ms": round(resp.p50_ms, 3),
        "p99_ms": round(resp.p99_ms, 3),
        "max_ms": round(resp.max_ms, 3),
    }


async def client_latency(client: KvClient, count: int) -> dict[str, float]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        await client.put(f"lat-{i}", b"y" * 100)
        samples.append((time.perf_counter() - started) * 1000)
    return {
        "count": count,
        "p50_ms": round(percentile(samples, 0.5), 3),
        "p99_ms": round(percentile(samples, 0.99), 3),
    }


async def failover(client: KvClient, cluster: KvCluster, kills: int) -> dict[str, object]:
    times = []
    for k in range(kills):
        leader = await cluster.leader(client, timeout=30.0)
        await client.put(f"pre-{k}", b"z")
        started = time.perf_counter()
        cluster.kill(leader)
        await client.put(f"post-{k}", b"z", deadline=60.0)
        times.append(time.perf_counter() - started)
        cluster.start(leader)
        await cluster.leader(client, timeout=30.0)
        await asyncio.sleep(0.5)  # let the restarted node catch up before the next kill
    return {
        "kills": kills,
        "p50_s": round(percentile(times, 0.5), 3),
        "p99_s": round(percentile(times, 0.99), 3),
        "max_s": round(max(times), 3),
        "mean_s": round(statistics.mean(times), 3),
    }


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    # With --data-dir the folders are kept, for reading the nodes' logs afterwards.
    keep = args.data_dir is not None
    with contextlib.ExitStack() as stack:
        if keep:
            tmp = tempfile.mkdtemp(prefix="raft-bench-", dir=args.data_dir)
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="raft-bench-"))
        cluster = KvCluster(Path(tmp), size=3, snapshot_every=50_000, snapshot_keep=5_000)
        cluster.start_all()
        client = KvClient(cluster.addresses(), call_timeout=5.0)
        try:
            await cluster.leader(client, timeout=30.0)
            await client.put("warmup", b"w")
            result: dict[str, object] = {
                "bench": "raft",
                "cluster": "3 processes on 127.0.0.1, SQLite WAL synchronous=FULL on each",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "throughput": await load(client, cluster, 64, args.seconds),
                "latency_low_load": await load(client, cluster, 1, min(args.seconds, 5.0)),
                "baseline_client_put": await client_latency(client, 300),
                "failover": await failover(client, cluster, args.kills),
            }
        finally:
            await client.close()
            cluster.stop_all()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--data-dir", type=Path, help="parent of the cluster's data folders")
    args = parser.parse_args()
    emit(asyncio.run(main_async(args)), args.out)


if __name__ == "__main__":
    main()
