"""The Celery app and its no-op task, imported by the Celery runner and its workers
(Celery's venv only). The broker and result backend are the Redis at $BENCH_REDIS_URL."""

from __future__ import annotations

import os

from celery import Celery

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")

app = Celery("bench", broker=f"{REDIS}/0", backend=f"{REDIS}/1")
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    result_expires=3600,
)


@app.task
def noop() -> None:
    return None
