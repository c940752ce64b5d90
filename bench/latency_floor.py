#!/usr/bin/env python3
"""Latency floor: AgentFlow's submit-and-wait process hops, with none of its logic.

    .venv/bin/python bench/latency_floor.py
        [--followers 2] [--warmup 50] [--rounds 500]

A round trip here crosses exactly the processes, gRPC streams, fsyncs and pool hop of
one AgentFlow `submit` + `wait_task` of a no-op task, but carries raw bytes through gRPC
generic handlers: no scheduler, no state machine, no protobuf, no Raft terms or log
matching. AgentFlow cannot be faster than this skeleton on the same machine, so the
gap between the two is what AgentFlow's own logic costs.

Processes, all on 127.0.0.1 and started by this script (`--role ROLE`):
- `follower` (x `--followers`): a bidi stream `Append`; each message is one aiosqlite
  INSERT in autocommit mode (WAL, synchronous=FULL: one fsynced transaction each),
  then an ack on the same stream;
- `leader`: unary `Submit`, server-streaming `Watch`, bidi `Connect` for the worker.
  A commit is one append per follower (one writer task per follower, fed by a queue)
  plus, concurrently, the leader's own fsynced INSERT; it is committed once that
  insert is done and a majority of the cluster (counting the leader) has it;
- `worker`: one long-lived `Connect` stream to the leader and one pre-started pool
  child (`--role pool`) on a socketpair, which runs a no-op function per job;
- the client: this (parent) process.

One round trip: Submit -> commit -> assignment on Connect + Submit's response ->
client opens Watch -> worker runs the job in the pool child -> result on Connect ->
second commit -> one event on Watch (sent as soon as the watch is open), stream ends.
Timed from before Submit until the client has read the event.

Prints one JSON object on stdout; logs go to stderr. `--followers 0` makes a commit the
leader's own insert alone, which shows what replication costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import grpc
from benchlib import percentile

log = logging.getLogger("latency_floor")

SCRIPT = os.path.abspath(__file__)  # children run this file with --role

Ctx = grpc.aio.ServicerContext[bytes, bytes]

LEADER = "floor.Leader"
FOLLOWER = "floor.Follower"
ENTRY_BYTES = 300
SUBMIT_PAYLOAD = b"python:af_tasks:noop" + b"\x00" * 180  # roughly a task spec
INDEX = struct.Struct(">Q")
FRAME = struct.Struct(">I")
TASK_ID_BYTES = 32  # uuid4().hex
INSERT = "INSERT INTO entries VALUES (?, ?)"
READY_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


# -- shared helpers ---------------------------------------------------------------------


async def open_db(path: Path) -> aiosqlite.Connection:
    """An autocommit connection: every INSERT is its own fsynced WAL transaction."""
    db = await aiosqlite.connect(path, isolation_level=None)
    async with db.execute("PRAGMA journal_mode=WAL") as cursor:
        row = await cursor.fetchone()
    if row is None or str(row[0]).lower() != "wal":
        raise RuntimeError(f"journal_mode is {row}, not wal")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    return db


def announce(port: int = 0) -> None:
    """Tell the parent (reading our stdout) that this process is ready."""
    print(f"READY {port}", flush=True)


async def stop_requested() -> None:
    """Return on SIGTERM or SIGINT. The caller then stops its server itself: cancelling
    a task that awaits `wait_for_termination` makes `server.stop` raise CancelledError."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def serve(name: str, methods: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
    """Serve `methods` on a free 127.0.0.1 port, announced on stdout, until told to stop."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, methods),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        announce(port)
        await stop_requested()
    finally:
        await server.stop(None)


async def ready_channel(port: int) -> grpc.aio.Channel:
    """A channel to 127.0.0.1:port once it connects (gRPC retries until then)."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await asyncio.wait_for(channel.channel_ready(), READY_TIMEOUT_S)
    except BaseException:
        await channel.close()
        raise
    return channel


# -- follower ---------------------------------------------------------------------------


async def follower_main(db_path: Path) -> None:
    db = await open_db(db_path)

    async def append(requests: AsyncIterator[bytes], context: Ctx) -> AsyncIterator[bytes]:
        async for message in requests:
            (idx,) = INDEX.unpack_from(message)
            await db.execute(INSERT, (idx, message[INDEX.size :]))
            yield message[: INDEX.size]

    try:
        await serve(FOLLOWER, {"Append": grpc.stream_stream_rpc_method_handler(append)})
    finally:
        await db.close()


# -- leader -----------------------------------------------------------------------------


class Replica:
    """The leader's long-lived Append stream to one follower: a writer task fed by a
    queue, and a reader task passing each ack's index to `on_ack`."""

    def __init__(self, channel: grpc.aio.Channel, on_ack: Callable[[int], None]) -> None:
        self.channel = channel
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        append: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
            f"/{FOLLOWER}/Append"
        )
        self.call = append()
        self.tasks = (
            asyncio.create_task(self._write()),
            asyncio.create_task(self._read(on_ack)),
        )

    async def _write(self) -> None:
        while True:
            await self.call.write(await self.queue.get())

    async def _read(self, on_ack: Callable[[int], None]) -> None:
        async for ack in self.call:
            on_ack(INDEX.unpack(ack)[0])
        log.error("a follower closed its Append stream")

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.call.cancel()
        await self.channel.close()


class ReplicatedLog:
    """Appends entries: committed once the leader's own fsynced insert is done and
    `needed` followers have acked (with the leader, a majority of the cluster)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.replicas: list[Replica] = []  # set once connected: each reports to on_ack
        self.last_index = 0
        self.acks: dict[int, tuple[int, asyncio.Future[None]]] = {}

    @property
    def needed(self) -> int:
        return (len(self.replicas) + 1) // 2

    def on_ack(self, idx: int) -> None:
        pending = self.acks.get(idx)
        if pending is None:
            return  # already committed: a late ack
        count, future = pending
        self.acks[idx] = (count + 1, future)
        if count + 1 >= self.needed and not future.done():
            future.set_result(None)

    async def commit(self, entry: bytes) -> None:
        self.last_index += 1
        idx = self.last_index
        acked = asyncio.get_running_loop().create_future()
        if self.needed:
            self.acks[idx] = (0, acked)
        else:
            acked.set_result(None)
        frame = INDEX.pack(idx) + entry
        for replica in self.replicas:
            replica.queue.put_nowait(frame)
        try:
            await self.db.execute(INSERT, (idx, entry))
            await acked
        finally:
            self.acks.pop(idx, None)


def make_entry(kind: bytes, task_id: bytes, body: bytes) -> bytes:
    return (kind + task_id + body).ljust(ENTRY_BYTES, b"\x00")


class Leader:
    def __init__(self, replicated: ReplicatedLog) -> None:
        self.replicated = replicated
        self.worker: asyncio.Queue[bytes] | None = None
        self.outcomes: dict[bytes, asyncio.Future[bytes]] = {}
        self.handlers: set[asyncio.Task[None]] = set()

    def methods(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        return {
            "Submit": grpc.unary_unary_rpc_method_handler(self.submit),
            "Watch": grpc.unary_stream_rpc_method_handler(self.watch),
            "Connect": grpc.stream_stream_rpc_method_handler(self.connect),
        }

    async def submit(self, request: bytes, context: Ctx) -> bytes:
        worker = self.worker
        if worker is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no worker connected")
        task_id = uuid.uuid4().hex.encode()
        await self.replicated.commit(make_entry(b"S", task_id, request))
        self.outcomes[task_id] = asyncio.get_running_loop().create_future()
        worker.put_nowait(task_id + request)
        return task_id

    async def watch(self, task_id: bytes, context: Ctx) -> AsyncIterator[bytes]:
        outcome = self.outcomes.get(task_id)
        if outcome is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown task")
        try:
            event = await outcome
        finally:
            self.outcomes.pop(task_id, None)
        yield event

    async def connect(self, requests: AsyncIterator[bytes], context: Ctx) -> AsyncIterator[bytes]:
        await anext(requests)  # the worker's hello
        outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.worker = outbox
        reader = asyncio.create_task(self._read_results(requests))
        try:
            yield b"welcome"
            while True:
                yield await outbox.get()
        finally:
            self.worker = None
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read_results(self, requests: AsyncIterator[bytes]) -> None:
        """Each result is handled in its own task, as AgentFlow's worker stream does."""
        async for message in requests:
            task = asyncio.create_task(self._finish(message))
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)

    async def _finish(self, message: bytes) -> None:
        task_id, result = message[:TASK_ID_BYTES], message[TASK_ID_BYTES:]
        await self.replicated.commit(make_entry(b"R", task_id, result))
        outcome = self.outcomes.get(task_id)
        if outcome is not None and not outcome.done():
            outcome.set_result(b"SUCCEEDED " + result)


async def leader_main(db_path: Path, follower_ports: list[int]) -> None:
    db = await open_db(db_path)
    replicated = ReplicatedLog(db)
    channels = [await ready_channel(port) for port in follower_ports]
    replicated.replicas = [Replica(channel, replicated.on_ack) for channel in channels]
    leader = Leader(replicated)
    try:
        await serve(LEADER, leader.methods())
    finally:
        for replica in replicated.replicas:
            await replica.close()
        await db.close()


# -- worker and its pool child ----------------------------------------------------------


def noop(body: bytes) -> bytes:
    """The task: does nothing."""
    return b"ok"


def recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def pool_main(fd: int) -> None:
    """The pool child: blocking, one job at a time, until the worker closes the socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the worker closing the socket ends us
    sock = socket.socket(fileno=fd)
    sock.sendall(FRAME.pack(0))  # ready
    while (header := recv_exact(sock, FRAME.size)) is not None:
        body = recv_exact(sock, FRAME.unpack(header)[0])
        if body is None:
            break
        result = noop(body)
        sock.sendall(FRAME.pack(len(result)) + result)


class PoolChild:
    """The worker's side of one pool child: length-prefixed frames on a socketpair."""

    def __init__(self, proc: asyncio.subprocess.Process, sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self.buffer = bytearray()

    @classmethod
    async def spawn(cls) -> PoolChild:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                SCRIPT,
                "--role",
                "pool",
                "--fd",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        child = cls(proc, ours)
        await asyncio.wait_for(child.recv(), READY_TIMEOUT_S)
        return child

    async def recv(self) -> bytes:
        loop = asyncio.get_running_loop()
        while True:
            if len(self.buffer) >= FRAME.size:
                (size,) = FRAME.unpack_from(self.buffer)
                end = FRAME.size + size
                if len(self.buffer) >= end:
                    body = bytes(self.buffer[FRAME.size : end])
                    del self.buffer[:end]
                    return body
            chunk = await loop.sock_recv(self.sock, 65536)
            if not chunk:
                raise ConnectionError("the pool child closed its socket")
            self.buffer += chunk

    async def run(self, job: bytes) -> bytes:
        await asyncio.get_running_loop().sock_sendall(self.sock, FRAME.pack(len(job)) + job)
        return await self.recv()

    async def close(self) -> None:
        self.sock.close()  # EOF: the child exits
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def worker_main(leader_port: int) -> None:
    pool = await PoolChild.spawn()
    try:
        channel = await ready_channel(leader_port)
        async with channel:
            connect: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
                f"/{LEADER}/Connect"
            )
            call = connect()
            await call.write(b"hello")
            if await call.read() != b"welcome":
                raise RuntimeError("the leader did not welcome the worker")
            announce()
            await serve_until_stopped(call, pool)
    finally:
        await pool.close()


async def serve_until_stopped(
    call: grpc.aio.StreamStreamCall[bytes, bytes], pool: PoolChild
) -> None:
    serving = asyncio.create_task(serve_assignments(call, pool))
    stopping = asyncio.create_task(stop_requested())
    done, _ = await asyncio.wait((serving, stopping), return_when=asyncio.FIRST_COMPLETED)
    for task in (serving, stopping):
        task.cancel()
    if serving in done:
        serving.result()  # raises what broke it, if anything


async def serve_assignments(call: grpc.aio.StreamStreamCall[bytes, bytes], pool: PoolChild) -> None:
    try:
        while isinstance(assignment := await call.read(), bytes):
            task_id = assignment[:TASK_ID_BYTES]
            result = await pool.run(assignment)
            await call.write(task_id + result)
    except grpc.aio.AioRpcError as exc:
        log.error("the Connect stream broke: %s", exc.code())
    else:
        log.error("the leader closed the Connect stream")


# -- the client (parent): starts everything, measures, stops everything ------------------


class Cluster:
    """The child processes of one run, stopped by pid (SIGTERM, then SIGKILL)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[asyncio.subprocess.Process] = []

    async def spawn(self, role: str, *args: str) -> int:
        """Start `--role role` and wait for its READY line; returns the port it gave."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            SCRIPT,
            "--role",
            role,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT_S)
        if not line.startswith(b"READY "):
            raise RuntimeError(f"{role} (pid {proc.pid}) failed to start: {line!r}")
        log.info("%s ready (pid %d)", role, proc.pid)
        return int(line.split()[1])

    async def start(self, followers: int) -> int:
        """Followers, then the leader (connected to them), then the worker; returns
        the leader's port."""
        ports = [
            await self.spawn("follower", "--db", str(self.root / f"follower{i}.db"))
            for i in range(followers)
        ]
        leader_args = ["--db", str(self.root / "leader.db")]
        if ports:
            leader_args += ["--peers", ",".join(map(str, ports))]
        leader_port = await self.spawn("leader", *leader_args)
        await self.spawn("worker", "--leader", str(leader_port))
        return leader_port

    async def stop(self) -> None:
        """In reverse start order, so no process sees its server vanish first."""
        for proc in reversed(self.procs):
            await stop_process(proc)


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning("pid %d ignored SIGTERM: SIGKILL", proc.pid)
        proc.kill()
        await proc.wait()


async def round_trip(
    submit: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes],
    watch: grpc.aio.UnaryStreamMultiCallable[bytes, bytes],
) -> float:
    """One submit-and-wait; milliseconds until the event was read."""
    start = time.perf_counter()
    task_id = await submit(SUBMIT_PAYLOAD, timeout=CALL_TIMEOUT_S)
    call = watch(task_id, timeout=CALL_TIMEOUT_S)
    event = await call.read()
    elapsed = (time.perf_counter() - start) * 1000
    if not isinstance(event, bytes) or not event.startswith(b"SUCCEEDED"):
        raise RuntimeError(f"unexpected watch event {event!r}")
    if await call.read() is not grpc.aio.EOF:
        raise RuntimeError("the watch stream did not end after its event")
    return elapsed


async def measure(leader_port: int, warmup: int, rounds: int) -> list[float]:
    channel = await ready_channel(leader_port)
    async with channel:
        submit: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            f"/{LEADER}/Submit"
        )
        watch: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
            f"/{LEADER}/Watch"
        )
        for _ in range(warmup):
            await round_trip(submit, watch)
        return [await round_trip(submit, watch) for _ in range(rounds)]


async def client_main(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="latency-floor-", dir="/tmp"))
    cluster = Cluster(root)
    try:
        leader_port = await cluster.start(args.followers)
        latencies = await measure(leader_port, args.warmup, args.rounds)
    finally:
        await cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    log.info(
        "min %.3f ms, p90 %.3f ms, max %.3f ms",
        min(latencies),
        percentile(latencies, 0.90),
        max(latencies),
    )
    return {
        "rounds": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 3),
        "p99_ms": round(percentile(latencies, 0.99), 3),
        "mean_ms": round(statistics.fmean(latencies), 3),
        "followers": args.followers,
        "python": platform.python_version(),
        "grpcio": importlib.metadata.version("grpcio"),
        "cpus": os.cpu_count(),
    }


# -- entry point ------------------------------------------------------------------------


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an int >= `low` (argparse names the option in its error)."""

    def integer(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return integer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--role", choices=("client", "leader", "follower", "worker", "pool"), default="client"
    )
    parser.add_argument("--followers", type=_at_least(0), default=2)
    parser.add_argument("--warmup", type=_at_least(0), default=50)
    parser.add_argument("--rounds", type=_at_least(1), default=500)
    parser.add_argument("--db", type=Path, help="leader/follower: sqlite file")
    parser.add_argument("--peers", default="", help="leader: follower ports, comma-separated")
    parser.add_argument("--leader", type=int, help="worker: the leader's port")
    parser.add_argument("--fd", type=int, help="pool: the socketpair end")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s {args.role}[{os.getpid()}] %(message)s",
    )
    if args.role == "client":
        print(json.dumps(asyncio.run(client_main(args))), flush=True)
    elif args.role == "follower":
        asyncio.run(follower_main(args.db))
    elif args.role == "leader":
        peers = [int(port) for port in args.peers.split(",") if port]
        asyncio.run(leader_main(args.db, peers))
    elif args.role == "worker":
        asyncio.run(worker_main(args.leader))
    else:
        pool_main(args.fd)


if __name__ == "__main__":
    main()
