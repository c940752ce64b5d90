"""The five task priority levels, shared by the scheduler, the SDK and the CLI."""

from __future__ import annotations

from enum import IntEnum


class Priority(IntEnum):
    """Task priority; lower value pops first."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3
    IDLE = 4

    @classmethod
    def parse(cls, value: str | int | Priority) -> Priority:
        """Accept a name in any case ("high"), a level number (1 or "1"), or a Priority."""
        if isinstance(value, Priority):
            return value
        # bool is an int subclass; True as a priority is almost surely a caller bug.
        if isinstance(value, int) and not isinstance(value, bool):
            if value in cls._value2member_map_:
                return cls(value)
        elif isinstance(value, str):
            text = value.strip()
            if text.upper() in cls.__members__:
                return cls[text.upper()]
            if text.isdigit() and int(text) in cls._value2member_map_:
                return cls(int(text))
        allowed = ", ".join(f"{p.name.lower()} ({p.value})" for p in cls)
        raise ValueError(f"invalid priority {value!r}; allowed values: {allowed}")
