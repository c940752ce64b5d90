"""structlog setup shared by every AgentFlow process.

Console output for people, JSON lines for containers and log shippers:
`AGENTFLOW_LOG_FORMAT=console|json` (default: console on a terminal, JSON otherwise)
and `AGENTFLOW_LOG_LEVEL=debug|info|warning|error` (default: info).
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("console", "json")


def configure(level: str | None = None, fmt: str | None = None) -> None:
    """Configure structlog for this process. Bad values raise ValueError naming the
    setting, before anything is changed."""
    level_name = (level or os.environ.get("AGENTFLOW_LOG_LEVEL") or "info").lower()
    if level_name not in LEVELS:
        raise ValueError(f"AGENTFLOW_LOG_LEVEL: {level_name!r} is not one of {', '.join(LEVELS)}")
    default_fmt = "console" if sys.stderr.isatty() else "json"
    fmt_name = (fmt or os.environ.get("AGENTFLOW_LOG_FORMAT") or default_fmt).lower()
    if fmt_name not in FORMATS:
        raise ValueError(f"AGENTFLOW_LOG_FORMAT: {fmt_name!r} is not one of {', '.join(FORMATS)}")
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt_name == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level_name]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
