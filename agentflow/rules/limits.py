"""The bounds of what one request may carry, and of every value in a task spec.

One place for them, because three parties enforce the same numbers: the SDK (before
sending), the master (before proposing) and the state machine (when it applies).
docs/cli.md lists them for users.

Why these numbers:
- Size caps keep one command well inside what the event loop can validate and apply
  without blocking past the election timeout (750 ms): `bench/validate_apply_bench.py`
  measures a workflow at the caps. Every master applies every command, so a cap on
  the request is a cap on every replica's pause.
- Lock caps bound what the leader scans for due leases and what one snapshot carries;
  a lease lives 100 ms (below that, one commit round trip plus a renewal cannot keep
  it) to 1 h (a holder that vanishes blocks its lock at most that long).
- Per-value caps follow what a worker could ever do: a shell command is one argv
  string (Linux limits one to 128 KiB), a path is at most PATH_MAX, and resources far
  beyond any machine could never be placed.
"""

from __future__ import annotations

__all__ = [
    "MAX_ARGS_BYTES",
    "MAX_ARGS_DEPTH",
    "MAX_BATCH_TASKS",
    "MAX_COMMAND_BYTES",
    "MAX_CPU",
    "MAX_CWD_BYTES",
    "MAX_DELETE_IDS",
    "MAX_ENV_BYTES",
    "MAX_ENV_VARS",
    "MAX_GPUS",
    "MAX_LABELS",
    "MAX_LABEL_BYTES",
    "MAX_LOCKS",
    "MAX_LOCK_DELAY_MS",
    "MAX_LOCK_EXPIRE_NAMES",
    "MAX_LOCK_NAME_BYTES",
    "MAX_LOCK_OWNER_BYTES",
    "MAX_LOCK_TTL_MS",
    "MAX_LOCK_WAITERS",
    "MAX_LOCK_WAIT_MS",
    "MAX_MAX_RETRIES",
    "MAX_MEMORY_MB",
    "MAX_NAME_LENGTH",
    "MAX_REQUEST_BYTES",
    "MAX_REQUEST_DEPENDENCIES",
    "MAX_REQUEST_ID_LENGTH",
    "MAX_RETRY_BACKOFF_MS",
    "MAX_TASK_DEPENDENCIES",
    "MAX_TIMEOUT_MS",
    "MAX_WORKFLOW_TASKS",
    "MIN_LOCK_TTL_MS",
]

# ---- one request (SubmitTasks batch or workflow) --------------------------------------
MAX_BATCH_TASKS = 10_000
MAX_WORKFLOW_TASKS = 10_000
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # the serialized task specs of one request
MAX_TASK_DEPENDENCIES = 10_000  # of one task: a fan-in over a whole workflow
MAX_REQUEST_DEPENDENCIES = 50_000  # summed over the tasks of one request
MAX_REQUEST_ID_LENGTH = 128
MAX_DELETE_IDS = 10_000  # task and workflow ids named in one delete, together

# ---- one task spec --------------------------------------------------------------------
MAX_NAME_LENGTH = 256  # characters
MAX_COMMAND_BYTES = 128 * 1024  # UTF-8; Linux's MAX_ARG_STRLEN for one argv string
MAX_ARGS_BYTES = 1024 * 1024  # args_json, UTF-8
MAX_ARGS_DEPTH = 64  # nesting of arrays/objects in args
MAX_ENV_VARS = 1_000
MAX_ENV_BYTES = 128 * 1024  # sum of len(KEY=VALUE) over all variables, UTF-8
MAX_CWD_BYTES = 4096  # PATH_MAX
MAX_LABELS = 64
MAX_LABEL_BYTES = 256  # each key and each value, UTF-8
MAX_CPU = 4096.0  # cores
MAX_MEMORY_MB = 64 * 1024 * 1024  # 64 TiB
MAX_GPUS = 1024
MAX_MAX_RETRIES = 100
MAX_TIMEOUT_MS = 30 * 24 * 3600 * 1000  # 30 days per attempt
MAX_RETRY_BACKOFF_MS = 24 * 3600 * 1000  # 1 day (the leader caps the delay lower anyway)

# ---- locks ----------------------------------------------------------------------------
MAX_LOCK_NAME_BYTES = 256  # UTF-8
MAX_LOCK_OWNER_BYTES = 256  # UTF-8
MIN_LOCK_TTL_MS = 100
MAX_LOCK_TTL_MS = 3600 * 1000  # 1 hour
MAX_LOCK_WAIT_MS = 24 * 3600 * 1000  # how far ahead a waiter's deadline may be
MAX_LOCK_DELAY_MS = 60 * 1000  # after an expiry
MAX_LOCK_WAITERS = 1_000  # per lock
MAX_LOCKS = 100_000  # held, waited on or in their lock delay
MAX_LOCK_EXPIRE_NAMES = 10_000  # in one ExpireLocks
