"""A YAML loader (safe) that remembers where every value came from.

Mappings load as `MarkedDict` and sequences as `MarkedList`: ordinary dict and list
with the 1-based line of the node, of each key, and of each value/item. Duplicate keys
are an error (plain YAML silently keeps the last one).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import yaml

__all__ = ["MarkedDict", "MarkedList", "YamlSyntaxError", "load"]


class YamlSyntaxError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class MarkedDict(dict[Any, Any]):
    line: int
    key_lines: dict[Any, int]
    value_lines: dict[Any, int]


class MarkedList(list[Any]):
    line: int
    item_lines: list[int]


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Iterator[MarkedDict]:
    data = MarkedDict()
    data.line, data.key_lines, data.value_lines = _line(node), {}, {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise YamlSyntaxError(_line(key_node), "a mapping key must be a plain value")
        if key in data:
            raise YamlSyntaxError(
                _line(key_node), f"duplicate key {key!r} (first on line {data.key_lines[key]})"
            )
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = _line(key_node)
        data.value_lines[key] = _line(value_node)


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> Iterator[MarkedList]:
    data = MarkedList()
    data.line, data.item_lines = _line(node), []
    yield data
    for item in node.value:
        data.append(loader.construct_object(item, deep=True))
        data.item_lines.append(_line(item))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def load(text: str) -> Any:
    """One YAML (or JSON) document; YamlSyntaxError with the line for bad syntax."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else 0
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlSyntaxError(line, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(0, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
