"""Snapshot files: one self-checking file per snapshot, written crash-safely.

Layout of a file (integers little-endian):

    magic     8 bytes   b"AFSNAP1\\n"
    meta_len  u32
    meta      meta_len bytes, a protobuf SnapshotMeta
    data_len  u64
    data      data_len bytes, opaque state-machine image
    crc       u32, zlib.crc32 of everything above

The functions here are blocking; `RaftStorage` runs them in a worker thread. Which
file is the current snapshot is decided by the database, not by the directory: a
file is only written here, and becomes live when a transaction records it.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import zlib
from pathlib import Path

from google.protobuf.message import DecodeError

from agentflow._proto import raft_pb2 as pb
from agentflow.raft.codec import snapshot_meta_from_pb, snapshot_meta_to_pb
from agentflow.raft.types import Snapshot

MAGIC = b"AFSNAP1\n"
TMP_SUFFIX = ".tmp"
_META_LEN = struct.Struct("<I")
_DATA_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_NAME_RE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


class SnapshotFileError(Exception):
    """A snapshot file is missing, truncated or fails its checks."""


def file_name(term: int, index: int) -> str:
    # Fixed-width hex so names sort by term, then index, as etcd's do.
    return f"{term:016x}-{index:016x}.snap"


def parse_file_name(name: str) -> tuple[int, int] | None:
    """(term, index) of a snapshot file name, or None if it is not one."""
    m = _NAME_RE.match(name)
    return (int(m.group(1), 16), int(m.group(2), 16)) if m else None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(directory: Path, snapshot: Snapshot) -> Path:
    """Write `snapshot` durably under its final name and return the path.

    A crash at any point leaves either no file, a stray temp file (removed by
    `remove_leftovers`), or the complete file: the rename is atomic and only
    happens after the data is on disk, and the directory fsync makes the rename
    itself durable."""
    meta = snapshot.meta
    meta_bytes = snapshot_meta_to_pb(meta).SerializeToString()
    header = (
        MAGIC + _META_LEN.pack(len(meta_bytes)) + meta_bytes + _DATA_LEN.pack(len(snapshot.data))
    )
    crc = zlib.crc32(snapshot.data, zlib.crc32(header))
    final = directory / file_name(meta.term, meta.index)
    tmp = final.with_name(final.name + TMP_SUFFIX)
    try:
        with open(tmp, "wb") as f:
            # Separate writes so a large image is never copied into one buffer.
            f.write(header)
            f.write(snapshot.data)
            f.write(_CRC.pack(crc))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(directory)
    return final


def read_file(path: Path) -> Snapshot:
    """Read and verify one snapshot file; raises SnapshotFileError saying why not."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SnapshotFileError(f"cannot read: {e.strerror or e}") from e
    pos = len(MAGIC)
    if raw[:pos] != MAGIC:
        raise SnapshotFileError("bad magic (not a snapshot file, or truncated)")
    if len(raw) < pos + _META_LEN.size:
        raise SnapshotFileError("truncated in header")
    (meta_len,) = _META_LEN.unpack_from(raw, pos)
    pos += _META_LEN.size
    meta_end = pos + meta_len
    if len(raw) < meta_end + _DATA_LEN.size:
        raise SnapshotFileError("truncated in header")
    (data_len,) = _DATA_LEN.unpack_from(raw, meta_end)
    data_start = meta_end + _DATA_LEN.size
    expected = data_start + data_len + _CRC.size
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "has trailing bytes"
        raise SnapshotFileError(f"{kind}: {len(raw)} bytes, header says {expected}")
    body_end = data_start + data_len
    (stored_crc,) = _CRC.unpack_from(raw, body_end)
    if zlib.crc32(memoryview(raw)[:body_end]) != stored_crc:
        raise SnapshotFileError("CRC mismatch")
    try:
        meta = snapshot_meta_from_pb(pb.SnapshotMeta.FromString(raw[pos:meta_end]))
    except DecodeError as e:
        # Only reachable if the writer itself produced bad bytes: the CRC passed.
        raise SnapshotFileError(f"undecodable meta: {e}") from e
    return Snapshot(meta, raw[data_start:body_end])


def remove_leftovers(directory: Path, keep: set[str]) -> list[str]:
    """Remove temp files and snapshot files not in `keep` (written but never
    recorded, because of a crash before the recording transaction committed).
    Returns the names removed. Other files are left alone."""
    removed: list[str] = []
    for p in directory.iterdir():
        name = p.name
        stray_tmp = name.endswith(TMP_SUFFIX)
        orphan = parse_file_name(name) is not None and name not in keep
        if (stray_tmp or orphan) and p.is_file():
            p.unlink()
            removed.append(name)
    if removed:
        fsync_dir(directory)
    return removed


def remove_files(directory: Path, names: list[str]) -> None:
    """Best effort: a file left behind is an orphan that the next open removes."""
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
