"""A small etcd v3 client and a local 3-member etcd cluster, for coord_bench.py.

The message classes are built at run time from descriptors declared below (no
generated etcd code is kept anywhere). Names and field numbers are those of etcd's
`api/etcdserverpb/rpc.proto`, `api/mvccpb/kv.proto` and
`server/etcdserver/api/v3lock/v3lockpb/v3lock.proto`; only the fields used here are
declared, which protobuf allows (unknown fields are skipped when parsing).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from agentflow.common.processes import ProcessGroup, free_ports

F = descriptor_pb2.FieldDescriptorProto
INT64, UINT64, BYTES, BOOL, STRING, MSG, ENUM = (
    F.TYPE_INT64,
    F.TYPE_UINT64,
    F.TYPE_BYTES,
    F.TYPE_BOOL,
    F.TYPE_STRING,
    F.TYPE_MESSAGE,
    F.TYPE_ENUM,
)
REPEATED = "repeated"

# (package, message, [(field, number, type, type name or "", repeated?)])
MESSAGES: list[tuple[str, str, list[tuple[str, int, int, str, bool]]]] = [
    ("etcdserverpb", "ResponseHeader", [
        ("cluster_id", 1, UINT64, "", False),
        ("member_id", 2, UINT64, "", False),
        ("revision", 3, INT64, "", False),
        ("raft_term", 4, UINT64, "", False),
    ]),
    ("mvccpb", "KeyValue", [
        ("key", 1, BYTES, "", False),
        ("create_revision", 2, INT64, "", False),
        ("mod_revision", 3, INT64, "", False),
        ("version", 4, INT64, "", False),
        ("value", 5, BYTES, "", False),
        ("lease", 6, INT64, "", False),
    ]),
    ("mvccpb", "Event", [
        ("type", 1, INT64, "", False),  # enum EventType {PUT = 0; DELETE = 1} (varint)
        ("kv", 2, MSG, ".mvccpb.KeyValue", False),
        ("prev_kv", 3, MSG, ".mvccpb.KeyValue", False),
    ]),
    ("etcdserverpb", "PutRequest", [
        ("key", 1, BYTES, "", False),
        ("value", 2, BYTES, "", False),
        ("lease", 3, INT64, "", False),
    ]),
    ("etcdserverpb", "PutResponse", [
        ("header", 1, MSG, ".etcdserverpb.ResponseHeader", False),
    ]),
    ("etcdserverpb", "DeleteRangeRequest", [
        ("key", 1, BYTES, "", False),
        ("range_end", 2, BYTES, "", False),
    ]),
    ("etcdserverpb", "DeleteRangeResponse", [
        ("header", 1, MSG, ".etcdserverpb.ResponseHeader", False),
        ("deleted", 2, INT64, "", False),
    ]),
    ("etcdserverpb", "WatchCreateRequest", [
        ("key", 1, BYTES, "", False),
        ("range_end", 2, BYTES, "", False),
        ("start_revision", 3, INT64, "", False),
    ]),
    ("etcdserverpb", "WatchRequest", [
        ("create_request", 1, MSG, ".etcdserverpb.WatchCreateRequest", False),
    ]),
    ("etcdserverpb", "WatchResponse", [
        ("header", 1, MSG, ".etcdserverpb.ResponseHeader", False),
        ("watch_id", 2, INT64, "", False),
        ("created", 3, BOOL, "", False),
        ("canceled", 4, BOOL, "", False),
        ("events", 11, MSG, ".mvccpb.Event", True),
    ]),
    ("etcdserverpb", "LeaseGrantRequest", [
        ("TTL", 1, INT64, "", False),
        ("ID", 2, INT64, "", False),
    ]),
    ("etcdserverpb", "LeaseGrantResponse", [
        ("header", 1, MSG, ".etcdserverpb.ResponseHeader", False),
        ("ID", 2, INT64, "", False),
        ("TTL", 3, INT64, "", False),
        ("error", 4, STRING, "", False),
    ]),
    ("etcdserverpb", "LeaseRevokeRequest", [
        ("ID", 1, INT64, "", False),
    ]),
    ("etcdserverpb", "LeaseRevokeResponse", [
        ("header", 1, MSG, ".etcdserverpb.ResponseHeader", False),
    ]),
    ("etcdserverpb", "LeaseKeepAliveRequest", [
        ("ID", 1, INT64, "", False),
    ]),
    ("etcdserverpb", "LeaseKeepAliveResponse", [
        ("header", 1, MSG, ".etcdserverpb.ResponseHeader", False),
        ("ID", 2, INT64, "", False),
        ("TTL", 3, INT64, "", False),
    ]),
    ("etcdserverpb", "StatusRequest", []),
    ("etcdserverpb", "StatusResponse", [
        ("header", 1, MSG, ".etcdserverpb.ResponseHeader", False),
        ("version", 2, STRING, "", False),
        ("dbSize", 3, INT64, "", False),
        ("leader", 4, UINT64, "", False),
        ("raftIndex", 5, UINT64, "", False),
        ("raftTerm", 6, UINT64, "", False),
    ]),
    ("v3lockpb", "LockRequest", [
        ("name", 1, BYTES, "", False),
        ("lease", 2, INT64, "", False),
    ]),
    ("v3lockpb", "LockResponse", [
        ("header", 1, MSG, ".etcdserverpb.ResponseHeader", False),
        ("key", 2, BYTES, "", False),
    ]),
    ("v3lockpb", "UnlockRequest", [
        ("key", 1, BYTES, "", False),
    ]),
    ("v3lockpb", "UnlockResponse", [
        ("header", 1, MSG, ".etcdserverpb.ResponseHeader", False),
    ]),
]  # fmt: skip


def _build() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    by_package: dict[str, list[tuple[str, list[tuple[str, int, int, str, bool]]]]] = {}
    for package, name, fields in MESSAGES:
        by_package.setdefault(package, []).append((name, fields))
    # Dependencies first: mvccpb, then etcdserverpb, then v3lockpb.
    order = ["mvccpb", "etcdserverpb", "v3lockpb"]
    for package in order:
        fd = descriptor_pb2.FileDescriptorProto(
            name=f"bench_{package}.proto", package=package, syntax="proto3"
        )
        fd.dependency.extend(f"bench_{p}.proto" for p in order[: order.index(package)])
        for name, fields in by_package[package]:
            msg = fd.message_type.add(name=name)
            for fname, number, ftype, type_name, repeated in fields:
                field = msg.field.add(name=fname, number=number, type=ftype)
                field.label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
                if type_name:
                    field.type_name = type_name
        pool.Add(fd)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for package, name, _ in MESSAGES
    }


M = _build()


class EtcdClient:
    """The handful of etcd v3 RPCs the benchmark uses, on one channel."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        ch = self.channel

        def unary(path: str, req: str, resp: str) -> Any:
            return ch.unary_unary(
                path,
                request_serializer=M[req].SerializeToString,
                response_deserializer=M[resp].FromString,
            )

        self.lease_grant = unary(
            "/etcdserverpb.Lease/LeaseGrant", "LeaseGrantRequest", "LeaseGrantResponse"
        )
        self.lease_revoke = unary(
            "/etcdserverpb.Lease/LeaseRevoke", "LeaseRevokeRequest", "LeaseRevokeResponse"
        )
        self.lock_rpc = unary("/v3lockpb.Lock/Lock", "LockRequest", "LockResponse")
        self.unlock_rpc = unary("/v3lockpb.Lock/Unlock", "UnlockRequest", "UnlockResponse")
        self.put_rpc = unary("/etcdserverpb.KV/Put", "PutRequest", "PutResponse")
        self.delete_rpc = unary(
            "/etcdserverpb.KV/DeleteRange", "DeleteRangeRequest", "DeleteRangeResponse"
        )
        self.status_rpc = unary(
            "/etcdserverpb.Maintenance/Status", "StatusRequest", "StatusResponse"
        )
        self.watch_rpc = ch.stream_stream(
            "/etcdserverpb.Watch/Watch",
            request_serializer=M["WatchRequest"].SerializeToString,
            response_deserializer=M["WatchResponse"].FromString,
        )

    async def grant(self, ttl_s: int) -> int:
        return int((await self.lease_grant(M["LeaseGrantRequest"](TTL=ttl_s))).ID)

    async def revoke(self, lease: int) -> None:
        await self.lease_revoke(M["LeaseRevokeRequest"](ID=lease))

    async def lock(self, name: bytes, lease: int) -> bytes:
        return bytes((await self.lock_rpc(M["LockRequest"](name=name, lease=lease))).key)

    async def unlock(self, key: bytes) -> None:
        await self.unlock_rpc(M["UnlockRequest"](key=key))

    async def put(self, key: bytes, value: bytes) -> None:
        await self.put_rpc(M["PutRequest"](key=key, value=value))

    async def delete(self, key: bytes) -> None:
        await self.delete_rpc(M["DeleteRangeRequest"](key=key))

    async def watch_prefix(self, prefix: bytes) -> Any:
        """A Watch stream on every key under `prefix`, once etcd confirmed it."""
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        call = self.watch_rpc()
        create = M["WatchCreateRequest"](key=prefix, range_end=end)
        await call.write(M["WatchRequest"](create_request=create))
        first = await call.read()
        if not first.created:
            raise RuntimeError(f"etcd did not create the watch on {prefix!r}: {first}")
        return call

    async def status(self) -> Any:
        return await self.status_rpc(M["StatusRequest"](), timeout=2)

    async def close(self) -> None:
        await self.channel.close()


def ensure_etcd() -> str:
    """The etcd binary, installed from Debian's `etcd-server` when missing."""
    found = shutil.which("etcd")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("etcd is missing: apt-get install etcd-server (as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "etcd-server"], check=True, env=env, timeout=900
    )
    found = shutil.which("etcd")
    if not found:
        raise SystemExit("apt-get installed etcd-server but etcd is not on PATH")
    return found


def etcd_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    first = out.stdout.splitlines()[0] if out.stdout else ""
    return first.split(":", 1)[-1].strip()


class EtcdCluster:
    """`size` etcd members on 127.0.0.1, each with its own data dir under `root`,
    default durability (the WAL fsynced before a write is acknowledged)."""

    def __init__(self, root: Path, binary: str, size: int = 3) -> None:
        self.root = root
        self.binary = binary
        self.names = [f"e{i + 1}" for i in range(size)]
        ports = free_ports(2 * size)
        self.client_ports = dict(zip(self.names, ports[:size], strict=True))
        self.peer_ports = dict(zip(self.names, ports[size:], strict=True))
        self.group = ProcessGroup(root)

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.client_ports[name]}"

    def command(self, name: str) -> list[str]:
        initial = ",".join(f"{n}=http://127.0.0.1:{self.peer_ports[n]}" for n in self.names)
        client = f"http://{self.address(name)}"
        peer = f"http://127.0.0.1:{self.peer_ports[name]}"
        return [
            self.binary,
            "--name", name,
            "--data-dir", str(self.root / f"{name}.etcd"),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", initial,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"bench-{os.getpid()}",
            "--log-level", "warn",
        ]  # fmt: skip

    async def start(self, timeout: float = 30.0) -> str:
        """Start every member; return the leader's client address once all agree."""
        for name in self.names:
            self.group.spawn(name, self.command(name))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            leaders: set[int] = set()
            members: dict[int, str] = {}
            for name in self.names:
                client = EtcdClient(self.address(name))
                try:
                    st = await client.status()
                    leaders.add(int(st.leader))
                    members[int(st.header.member_id)] = name
                except grpc.aio.AioRpcError:
                    leaders.add(0)
                finally:
                    await client.close()
            if len(leaders) == 1 and 0 not in leaders and len(members) == len(self.names):
                return self.address(members[leaders.pop()])
            if loop.time() > deadline:
                logs = {n: self.group.log(n)[-2000:] for n in self.names}
                raise TimeoutError(f"etcd cluster not ready after {timeout} s: {logs}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        self.group.stop_all()
