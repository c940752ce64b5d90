"""What a domain of the state is to the core: the hooks it implements, the record of
what one command changed (Changes) and the listeners' view of it (ChangeSet)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields

from agentflow._proto import state_pb2

__all__ = ["CHANGE_KINDS", "ChangeSet", "Changes", "Domain", "Handler", "Listener"]


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Ids of the entities one applied command changed (created, modified or removed:
    a removed id is no longer found in the state), one field per domain that has
    entities; a new such domain adds its field here, with a default."""

    index: int
    tasks: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()
    locks: tuple[str, ...] = ()  # lock names


Listener = Callable[[ChangeSet], None]

# The domains a ChangeSet reports on: its fields but the index.
CHANGE_KINDS: tuple[str, ...] = tuple(f.name for f in fields(ChangeSet) if f.name != "index")


class Changes:
    """What one command touched, per domain; dicts as insertion-ordered sets."""

    __slots__ = ("ids", "index", "now")

    def __init__(self, index: int, now: int) -> None:
        self.index = index
        self.now = now
        self.ids: dict[str, dict[str, None]] = {kind: {} for kind in CHANGE_KINDS}

    def mark(self, kind: str, entity_id: str) -> None:
        self.ids[kind][entity_id] = None

    def change_set(self) -> ChangeSet | None:
        """The listeners' view, or None when nothing changed."""
        if not any(self.ids.values()):
            return None
        return ChangeSet(self.index, **{k: tuple(v) for k, v in self.ids.items()})


Handler = Callable[[state_pb2.Command, Changes, state_pb2.CommandResult], None]


class Domain:
    """One kind of record in the state. Every hook is optional (a no-op here).

    `name` is the ChangeSet field its ids go to (if it has one). A handler raises
    StateError only before its first mutation; the core turns it into the result.
    """

    name: str = ""

    def handlers(self) -> Mapping[str, Handler]:
        """Command kinds (`Command.kind` field names) this domain applies."""
        return {}

    def end_command(self, ch: Changes) -> None:
        """After every command's handler (failed ones included)."""

    def ids(self) -> Iterable[str]:
        """Ids of its entities, for the ChangeSet of a restore."""
        return ()

    def reset(self) -> None:
        """Back to empty, before a restore."""

    def write(self, snap: state_pb2.StateSnapshot) -> None:
        """Its section of the snapshot."""

    def read(self, snap: state_pb2.StateSnapshot) -> None:
        """Load its section (copies: no entity keeps the parsed snapshot alive)."""

    def rebuild(self) -> None:
        """Rebuild its indexes, once every domain has read its section."""
