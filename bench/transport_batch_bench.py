#!/usr/bin/env python3
"""What bounding Raft batches in bytes costs the transport, per message.

    python bench/transport_batch_bench.py [--messages 1000] [--entry-bytes 300]
        [--rounds 100] [--out FILE]

The transport splits what it queued for a peer into MessageBatches of at most
`MAX_BATCH_BYTES`, sizing each message. Prints one JSON document with the cost of that
split per message and, as the baseline measured in the same run, the cost of
serializing the same messages (which every write pays anyway), and their ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchlib import emit

from agentflow._proto import raft_pb2 as pb
from agentflow.raft.transport import _batches


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--entry-bytes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    messages = [
        pb.Message(
            type=pb.MSG_APPEND,
            to="n2",
            term=5,
            index=100 + i,
            log_term=5,
            commit=100 + i,
            entries=[pb.Entry(term=5, index=101 + i, data=b"x" * args.entry_bytes)],
        )
        for i in range(args.messages)
    ]
    start = time.perf_counter()
    for _ in range(args.rounds):
        _batches(messages)
    split = (time.perf_counter() - start) / args.rounds / args.messages
    start = time.perf_counter()
    for _ in range(args.rounds):
        pb.MessageBatch(messages=messages).SerializeToString()
    serialize = (time.perf_counter() - start) / args.rounds / args.messages
    emit(
        {
            "messages": args.messages,
            "entry_bytes": args.entry_bytes,
            "split_ns_per_message": round(split * 1e9),
            "baseline_serialize_ns_per_message": round(serialize * 1e9),
            "split_over_serialize": round(split / serialize, 3),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
