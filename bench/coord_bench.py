#!/usr/bin/env python3
"""Coordination benchmark: AgentFlow's locks and messages against a 3-member etcd.

    python bench/coord_bench.py [--quick] [--repeat 3] [--only etcd,agentflow]
                                [--out FILE] [--readme]

Both sides are 3-member clusters on 127.0.0.1 with their default durability: 3
`agentflow-master` (each change committed on a majority, fsynced) and 3 etcd members
(Debian's `etcd-server`, apt-get installed when missing; WAL fsynced before a write is
acknowledged), each member with its own data dir in a temp dir, stopped by pid. Both
are driven from this process through raw gRPC: AgentFlow's LockService and
MessageService stubs, and for etcd a small client of our own (bench/etcd_v3.py,
messages built at run time with etcd's field numbers). Clients talk to the leader on
both sides.

- (a) uncontended acquire+release round trip, p50/p99. AgentFlow: LockService.Acquire
  (try once) + Release. etcd: v3lock Lock + Unlock under a lease granted once per
  client and reused, as `etcdctl lock` and clientv3's concurrency.Session do (the
  lease is the session, not the lock: AgentFlow's lease is created by the Acquire
  itself). Reported as well: the same with a LeaseGrant inside every round trip.
- (b) contended handoffs/s: 16 clients (one channel each) loop acquire (waiting) +
  release on one lock for `--seconds`; handoffs = acquisitions completed.
- (c) messages/s (AgentFlow only; etcd has no mailbox): 8 senders, 8 receivers,
  1 KiB payloads; each receiver Subscribes and Acks every Delivery; the rate is
  messages / (first Send -> last Ack answered), each message counted once by id.
  With `--batch` messages per Send call (and with 1 per call, reported apart).
- (d) request/response p50/p99 (AgentFlow MessageService.Request to a mailbox whose
  subscriber answers with Send and Acks).

Each side starts its own cluster for each of `--repeat` rounds, alternating, so each
ratio is taken between neighbouring measurements of one run; the CPU use seen just
before each round is recorded under `conditions`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from statistics import median
from typing import Any

import grpc
import psutil  # type: ignore[import-untyped]
from benchlib import emit, percentile, run_in
from etcd_v3 import EtcdClient, EtcdCluster, ensure_etcd, etcd_version

from agentflow._proto import coord_pb2, coord_pb2_grpc
from agentflow.master.testing import MasterCluster

README = Path(__file__).resolve().parent / "README.md"
CONTENDERS = 16
SENDERS = 8
RECEIVERS = 8
PAYLOAD = b"x" * 1024
LEASE_TTL_S = 60


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def latency_summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": ms(percentile(samples, 0.5)),
        "p99_ms": ms(percentile(samples, 0.99)),
        "mean_ms": ms(sum(samples) / len(samples)),
    }


async def timed(rounds: int, warmup: int, one: Callable[[], Awaitable[None]]) -> list[float]:
    for _ in range(warmup):
        await one()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await one()
        samples.append(time.perf_counter() - t0)
    return samples


async def handoffs(seconds: float, loops: list[Callable[[], Awaitable[None]]]) -> dict[str, float]:
    """Run every `loops[i]` (one acquire + release) until `seconds` pass; count them."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def run(one: Callable[[], Awaitable[None]]) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await one()
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(run(one) for one in loops))
    elapsed = time.perf_counter() - t0
    return {"clients": len(loops), "handoffs": done, "seconds": round(elapsed, 3),
            "handoffs_per_s": round(done / elapsed, 1)}  # fmt: skip


def cpu_busy_percent() -> float:
    """System-wide CPU busy over the next second (everything else on the machine)."""
    return float(psutil.cpu_percent(interval=1.0))


# ---- etcd ------------------------------------------------------------------------


async def etcd_round(root: Path, binary: str, sizes: dict[str, Any]) -> dict[str, Any]:
    cluster = EtcdCluster(root, binary)
    try:
        leader = await cluster.start()
        client = EtcdClient(leader)
        try:
            lease = await client.grant(LEASE_TTL_S)

            async def session_round_trip() -> None:
                await client.unlock(await client.lock(b"bench-a", lease))

            async def grant_round_trip() -> None:
                own = await client.grant(LEASE_TTL_S)
                await client.unlock(await client.lock(b"bench-a2", own))
                await client.revoke(own)

            a = latency_summary(await timed(sizes["rounds"], 20, session_round_trip))
            a_grant = latency_summary(await timed(sizes["rounds"] // 2, 10, grant_round_trip))
        finally:
            await client.close()
        contenders = [EtcdClient(leader) for _ in range(CONTENDERS)]
        try:
            leases = [await c.grant(LEASE_TTL_S) for c in contenders]

            def loop(c: EtcdClient, lease: int) -> Callable[[], Awaitable[None]]:
                async def one() -> None:
                    await c.unlock(await c.lock(b"bench-b", lease))

                return one

            b = await handoffs(
                sizes["seconds"], [loop(c, le) for c, le in zip(contenders, leases, strict=True)]
            )
        finally:
            for c in contenders:
                await c.close()
        d = await etcd_request_response(leader, sizes["requests"])
        return {
            "uncontended": {**a, "lease": "granted once per client, reused (a session)"},
            "uncontended_with_lease_grant": {**a_grant, "ops": "LeaseGrant+Lock+Unlock+Revoke"},
            "contended": b,
            "request_response": d,
        }
    finally:
        cluster.stop()


async def etcd_request_response(address: str, rounds: int) -> dict[str, Any]:
    """The nearest etcd has to a request/response: the requester puts bench/req/<n>
    and waits on its watch of bench/resp/ for <n>; the responder, watching bench/req/,
    puts bench/resp/<n> and deletes the request (its ack). The requester's delete of
    the reply comes after the timed part."""
    responder, requester = EtcdClient(address), EtcdClient(address)
    inbox = await responder.watch_prefix(b"bench/req/")
    replies = await requester.watch_prefix(b"bench/resp/")

    async def answer() -> None:
        while True:
            for ev in (await inbox.read()).events:
                if ev.type == 0:  # PUT
                    n = bytes(ev.kv.key).rsplit(b"/", 1)[1]
                    await responder.put(b"bench/resp/" + n, bytes(ev.kv.value))
                    await responder.delete(bytes(ev.kv.key))

    answering = asyncio.ensure_future(answer())
    counter = 0
    samples: list[float] = []
    try:
        for i in range(rounds + 10):
            counter += 1
            key = b"bench/resp/%d" % counter
            t0 = time.perf_counter()
            await requester.put(b"bench/req/%d" % counter, PAYLOAD)
            while not any(
                ev.type == 0 and bytes(ev.kv.key) == key for ev in (await replies.read()).events
            ):
                pass
            if i >= 10:
                samples.append(time.perf_counter() - t0)
            await requester.delete(key)
        return {**latency_summary(samples), "ops": "Put + Watch event; responder Put + Delete"}
    finally:
        answering.cancel()
        inbox.cancel()
        replies.cancel()
        await responder.close()
        await requester.close()


# ---- AgentFlow -------------------------------------------------------------------


class AgentFlowLocks:
    def __init__(self, address: str, owner: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = coord_pb2_grpc.LockServiceStub(self.channel)
        self.owner = owner

    async def acquire_release(self, name: str, wait_ms: int = 0) -> None:
        got = await self.stub.Acquire(
            coord_pb2.AcquireLockRequest(
                name=name, owner=self.owner, ttl_ms=LEASE_TTL_S * 1000, wait_ms=wait_ms
            )
        )
        await self.stub.Release(
            coord_pb2.ReleaseLockRequest(name=name, owner=self.owner, token=got.lock.token)
        )

    async def close(self) -> None:
        await self.channel.close()


async def subscribed(
    stub: coord_pb2_grpc.MessageServiceStub, mailbox: str
) -> tuple[Any, asyncio.Queue[coord_pb2.AgentMessage]]:
    """A Subscribe stream on `mailbox` feeding a queue, once a probe message sent to
    the mailbox came back through it (so the mailbox exists and the stream is live)."""
    call = stub.Subscribe(coord_pb2.SubscribeRequest(mailbox=mailbox, ack_timeout_ms=600_000))
    queue: asyncio.Queue[coord_pb2.AgentMessage] = asyncio.Queue()

    async def pump() -> None:
        async for delivery in call:
            for m in delivery.messages:
                queue.put_nowait(m)

    task = asyncio.ensure_future(pump())
    deadline = time.monotonic() + 15
    probe = coord_pb2.OutgoingMessage(to=mailbox, type="bench.probe")
    while True:
        try:
            await stub.Send(coord_pb2.SendMessagesRequest(messages=[probe]))
            break
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    while True:
        m = await asyncio.wait_for(queue.get(), 15)
        await stub.Ack(coord_pb2.AckMessagesRequest(mailbox=mailbox, ids=[m.id]))
        if m.type == "bench.probe":
            break
    return (call, task), queue


async def message_throughput(
    address: str, total: int, batch: int, tag: str
) -> dict[str, float | int]:
    channels = [grpc.aio.insecure_channel(address) for _ in range(SENDERS + RECEIVERS)]
    stubs = [coord_pb2_grpc.MessageServiceStub(c) for c in channels]
    mailboxes = [f"client:bench-{tag}-r{i}" for i in range(RECEIVERS)]
    streams = []
    try:
        queues = []
        for i, mailbox in enumerate(mailboxes):
            stream, queue = await subscribed(stubs[SENDERS + i], mailbox)
            streams.append(stream)
            queues.append(queue)
        acked: set[str] = set()
        all_acked = asyncio.Event()
        last_ack = 0.0

        async def receive(i: int) -> None:
            nonlocal last_ack
            stub, queue, mailbox = stubs[SENDERS + i], queues[i], mailboxes[i]
            while True:
                ids = [(await queue.get()).id]
                while not queue.empty():
                    ids.append(queue.get_nowait().id)
                await stub.Ack(coord_pb2.AckMessagesRequest(mailbox=mailbox, ids=ids))
                acked.update(ids)
                if len(acked) >= total:
                    last_ack = time.perf_counter()
                    all_acked.set()

        per_sender = total // SENDERS
        sent_done = 0.0

        async def send(i: int) -> None:
            n = 0
            while n < per_sender:
                k = min(batch, per_sender - n)
                msgs = [
                    coord_pb2.OutgoingMessage(
                        to=mailboxes[(i + n + j) % RECEIVERS], type="bench.msg", data=PAYLOAD
                    )
                    for j in range(k)
                ]
                await stubs[i].Send(
                    coord_pb2.SendMessagesRequest(sender=f"client:bench-s{i}", messages=msgs)
                )
                n += k

        receivers = [asyncio.ensure_future(receive(i)) for i in range(RECEIVERS)]
        total = per_sender * SENDERS
        t0 = time.perf_counter()
        await asyncio.gather(*(send(i) for i in range(SENDERS)))
        sent_done = time.perf_counter()
        await asyncio.wait_for(all_acked.wait(), 120)
        for r in receivers:
            r.cancel()
        elapsed = last_ack - t0
        return {
            "senders": SENDERS,
            "receivers": RECEIVERS,
            "payload_bytes": len(PAYLOAD),
            "messages_per_send": batch,
            "messages": total,
            "sent_per_s": round(total / (sent_done - t0), 1),
            "seconds_to_last_ack": round(elapsed, 3),
            "delivered_acked_per_s": round(total / elapsed, 1),
        }
    finally:
        for call, task in streams:
            call.cancel()
            task.cancel()
        for c in channels:
            await c.close()


async def request_response(address: str, rounds: int) -> dict[str, float]:
    responder_channel = grpc.aio.insecure_channel(address)
    requester_channel = grpc.aio.insecure_channel(address)
    responder = coord_pb2_grpc.MessageServiceStub(responder_channel)
    requester = coord_pb2_grpc.MessageServiceStub(requester_channel)
    mailbox = "client:bench-echo"
    (call, pump), queue = await subscribed(responder, mailbox)

    async def answer() -> None:
        while True:
            m = await queue.get()
            reply = coord_pb2.OutgoingMessage(
                to=m.reply_to, type="bench.reply", data=m.data, correlation_id=m.correlation_id
            )
            await responder.Send(coord_pb2.SendMessagesRequest(sender=mailbox, messages=[reply]))
            await responder.Ack(coord_pb2.AckMessagesRequest(mailbox=mailbox, ids=[m.id]))

    answering = asyncio.ensure_future(answer())
    try:

        async def one() -> None:
            await requester.Request(
                coord_pb2.MessageRequest(
                    sender="client:bench-req",
                    message=coord_pb2.OutgoingMessage(to=mailbox, type="bench.ping", data=PAYLOAD),
                    timeout_ms=10_000,
                )
            )

        return latency_summary(await timed(rounds, 10, one))
    finally:
        answering.cancel()
        call.cancel()
        pump.cancel()
        await responder_channel.close()
        await requester_channel.close()


async def agentflow_round(
    root: Path, sizes: dict[str, Any], tag: str, messages: bool = True
) -> dict[str, Any]:
    cluster = MasterCluster(root, size=3)
    try:
        await cluster.start_all()
        leader = cluster.address(await cluster.leader())
        locks = AgentFlowLocks(leader, "bench-a")
        try:
            a = latency_summary(
                await timed(sizes["rounds"], 20, lambda: locks.acquire_release("bench-a"))
            )
        finally:
            await locks.close()
        contenders = [AgentFlowLocks(leader, f"bench-c{i}") for i in range(CONTENDERS)]
        try:
            b = await handoffs(
                sizes["seconds"],
                [
                    (lambda c=c: c.acquire_release("bench-b", wait_ms=60_000))  # type: ignore[misc]
                    for c in contenders
                ],
            )
        finally:
            for c in contenders:
                await c.close()
        result: dict[str, Any] = {"uncontended": a, "contended": b}
        if not messages:
            return result
        result["messages"] = await message_throughput(
            leader, sizes["messages"], sizes["batch"], f"{tag}b"
        )
        result["messages_one_per_send"] = await message_throughput(
            leader, sizes["messages_single"], 1, f"{tag}s"
        )
        result["request_response"] = await request_response(leader, sizes["requests"])
        return result
    finally:
        cluster.stop_all()


# ---- report ----------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(median(values), 3), "min": min(values), "max": max(values)}


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians and ranges over rounds, and each target's ratio per round."""
    out: dict[str, Any] = {}
    pairs = [r for r in rounds if "etcd" in r and "agentflow" in r]
    keys = {
        "etcd": [("uncontended", "p50_ms"), ("uncontended", "p99_ms"),
                 ("uncontended_with_lease_grant", "p50_ms"), ("contended", "handoffs_per_s"),
                ("request_response", "p50_ms"), ("request_response", "p99_ms")],
        "agentflow": [("uncontended", "p50_ms"), ("uncontended", "p99_ms"),
                      ("contended", "handoffs_per_s"), ("messages", "delivered_acked_per_s"),
                      ("messages_one_per_send", "delivered_acked_per_s"),
                      ("request_response", "p50_ms"), ("request_response", "p99_ms")],
    }  # fmt: skip
    for side, fields in keys.items():
        got = [r[side] for r in rounds if side in r]
        if got:
            out[side] = {
                f"{a}.{b}": spread([g[a][b] for g in got])
                for a, b in fields
                if all(a in g for g in got)
            }
    if pairs:
        p50 = [r["agentflow"]["uncontended"]["p50_ms"] / r["etcd"]["uncontended"]["p50_ms"]
               for r in pairs]  # fmt: skip
        hand = [
            r["agentflow"]["contended"]["handoffs_per_s"] / r["etcd"]["contended"]["handoffs_per_s"]
            for r in pairs
        ]
        out["ratios"] = {
            "a_p50_agentflow_over_etcd": {**spread([round(x, 2) for x in p50]), "target": "<= 1.5"},
            "b_handoffs_agentflow_over_etcd": {
                **spread([round(x, 2) for x in hand]),
                "target": ">= 1.0",
            },
        }
    if "agentflow" in out:
        out["c_target"] = ">= 10000 delivered_acked_per_s"
    return out


def readme_table(report: dict[str, Any]) -> str:
    s = report["summary"]
    rows = [
        f"Command: `{report['command']}`  ",
        f"Run: {report['run_at']}, {report['machine']['cpus']} CPUs, Python "
        f"{report['machine']['python']}, etcd {report['etcd_version']}; "
        f"{len(report['rounds'])} rounds, median (min-max) over rounds; CPU busy before "
        f"each round (other work on the machine): {report['conditions_summary']}.",
        "",
        "| | AgentFlow | etcd | ratio (min-max) | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]

    def cell(side: str, key: str) -> str:
        v = s.get(side, {}).get(key)
        return "—" if v is None else f"{v['median']:g} ({v['min']:g}-{v['max']:g})"

    def ratio(key: str, ok: Callable[[float], bool]) -> tuple[str, str]:
        v = s.get("ratios", {}).get(key)
        if v is None:
            return "—", ""
        return f"{v['median']:g} ({v['min']:g}-{v['max']:g})", "yes" if ok(v["median"]) else "no"

    r_a, m_a = ratio("a_p50_agentflow_over_etcd", lambda x: x <= 1.5)
    r_b, m_b = ratio("b_handoffs_agentflow_over_etcd", lambda x: x >= 1.0)
    msgs = s.get("agentflow", {}).get("messages.delivered_acked_per_s")
    m_c = "" if msgs is None else ("yes" if msgs["median"] >= 10_000 else "no")
    batch = report["sizes"]["batch"]
    rows += [
        f"| (a) uncontended acquire+release p50 ms | {cell('agentflow', 'uncontended.p50_ms')} "
        f"| {cell('etcd', 'uncontended.p50_ms')} | {r_a} | <= 1.5x | {m_a} |",
        f"| (a) p99 ms | {cell('agentflow', 'uncontended.p99_ms')} "
        f"| {cell('etcd', 'uncontended.p99_ms')} | | | |",
        f"| (a) etcd with a LeaseGrant (and Revoke) in each round trip, p50 ms | "
        f"| {cell('etcd', 'uncontended_with_lease_grant.p50_ms')} | | | |",
        f"| (b) contended handoffs/s, {CONTENDERS} clients | "
        f"{cell('agentflow', 'contended.handoffs_per_s')} "
        f"| {cell('etcd', 'contended.handoffs_per_s')} | {r_b} | >= 1.0x | {m_b} |",
        f"| (c) messages/s delivered and acked, {batch} per Send | "
        f"{cell('agentflow', 'messages.delivered_acked_per_s')} | — | | >= 10,000 | {m_c} |",
        "| (c) the same, 1 message per Send | "
        f"{cell('agentflow', 'messages_one_per_send.delivered_acked_per_s')} | — | | | |",
        f"| (d) request/response p50 ms | {cell('agentflow', 'request_response.p50_ms')} "
        f"| {cell('etcd', 'request_response.p50_ms')} (put+watch) | | | |",
        f"| (d) p99 ms | {cell('agentflow', 'request_response.p99_ms')} "
        f"| {cell('etcd', 'request_response.p99_ms')} | | | |",
    ]
    return "\n".join(rows) + "\n"


def write_readme(report: dict[str, Any]) -> None:
    text = README.read_text()
    block = f"<!-- coord:begin -->\n{readme_table(report)}<!-- coord:end -->"
    pattern = re.compile(r"<!-- coord:begin -->.*?<!-- coord:end -->", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n## Locks and messages against etcd\n\n" + block + "\n"
    README.write_text(text)


async def bench(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    sizes = {
        "rounds": 100 if args.quick else args.rounds,
        "seconds": 1.0 if args.quick else args.seconds,
        "messages": 800 if args.quick else args.messages,
        "messages_single": 160 if args.quick else args.messages // 10,
        "batch": args.batch,
        "requests": 50 if args.quick else args.requests,
    }
    sides = set(args.only.split(","))
    binary = ensure_etcd() if "etcd" in sides else ""
    rounds: list[dict[str, Any]] = []
    conditions: list[dict[str, Any]] = []
    for i in range(args.repeat):
        entry: dict[str, Any] = {}
        for side in ("etcd", "agentflow"):
            if side not in sides:
                continue
            conditions.append(
                {
                    "round": i,
                    "side": side,
                    "cpu_busy_percent": cpu_busy_percent(),
                    "loadavg_1m": round(os.getloadavg()[0], 2),
                }
            )
            where = root / f"{side}-{i}"
            if side == "etcd":
                entry[side] = await etcd_round(where, binary, sizes)
            else:
                entry[side] = await agentflow_round(
                    where, sizes, f"{i}", messages=not args.locks_only
                )
        rounds.append(entry)
    busy = [c["cpu_busy_percent"] for c in conditions]
    return {
        "benchmark": "coord",
        "command": command_line(args.argv),
        "run_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "etcd_version": etcd_version(binary) if binary else "",
        "sizes": sizes,
        "conditions": conditions,
        "conditions_summary": f"{min(busy):g}-{max(busy):g}% busy" if busy else "",
        "rounds": rounds,
        "summary": summarize(rounds),
    }


def command_line(argv: list[str]) -> str:
    """The command as run, less where its output and data went."""
    kept: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--out", "--data-dir"):
            skip = True
        elif not a.startswith(("--out=", "--data-dir=")):
            kept.append(a)
    return " ".join(["python bench/coord_bench.py", *kept])


def at_least_one(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
        return value

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--repeat", type=at_least_one(int), default=3, help="rounds of each side")
    parser.add_argument(
        "--rounds", type=at_least_one(int), default=500, help="(a) round trips per round"
    )
    parser.add_argument(
        "--seconds", type=at_least_one(float), default=5.0, help="(b) seconds per round"
    )
    parser.add_argument(
        "--messages", type=at_least_one(int), default=40_000, help="(c) messages per round"
    )
    parser.add_argument(
        "--batch", type=at_least_one(int), default=100, help="(c) messages per Send call"
    )
    parser.add_argument(
        "--requests", type=at_least_one(int), default=300, help="(d) requests per round"
    )
    parser.add_argument("--only", default="etcd,agentflow", help="sides to run")
    parser.add_argument(
        "--locks-only", action="store_true", help="measure (a) and (b) only, not messages"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--readme", action="store_true", help="write the table into README")
    parser.add_argument("--data-dir", type=Path, help="keep the clusters' data here")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    unknown = set(args.only.split(",")) - {"etcd", "agentflow"}
    if unknown:
        parser.error(f"--only: unknown side(s) {sorted(unknown)}; choose from etcd, agentflow")
    report = run_in(args.data_dir, f"coord-bench-{uuid.uuid4().hex[:6]}-", lambda r: bench(args, r))
    emit(report, args.out)
    if args.readme:
        write_readme(report)


if __name__ == "__main__":
    main()
