"""Reading what an HTTP client sent, refusing anything malformed with a JSON error.

Every refusal is an `aiohttp` HTTP exception whose body is
`{"error": "<what is wrong>", "field": "<where>"}`: `field` names a query parameter,
a JSON path in the body (`messages[0].hello.info.id`, in the names the client used),
or `body` for the body as a whole. Nothing is changed by a refused request: these
helpers run before a handler acts.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeVar, cast

from aiohttp import web
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

# A whole request body, after any Content-Encoding is undone. A worker's hello carries
# every result it has not had acknowledged, each with its output tails; this is far
# above any real one and still bounds what a client can make the master hold.
MAX_BODY = 32 * 1024 * 1024
# Log offsets are uint64 on the wire; past int64 no real log goes, and a bound keeps
# clients in other languages (signed 64-bit integers) on the same page.
MAX_OFFSET = 2**63 - 1
_READ_CHUNK = 256 * 1024
_DIGITS = re.compile(r"[0-9]{1,19}")

M = TypeVar("M", bound=Message)
# protobuf's words for a non-string where a string goes, and its Python type names.
_NOT_A_STRING = re.compile(r"expected string or bytes-like object, got '(\w+)'")
_PY_TYPES = {"int": "a number", "float": "a number", "bool": "a boolean", "list": "an array"}


def json_error(
    kind: type[web.HTTPException], error: str, field: str = "", **extra: object
) -> web.HTTPException:
    """An HTTP error response (to raise) with a JSON body."""
    body: dict[str, object] = {"error": error}
    if field:
        body["field"] = field
    body.update(extra)
    return kind(text=json.dumps(body), content_type="application/json")


def bad_request(field: str, error: str) -> web.HTTPException:
    return json_error(web.HTTPBadRequest, f"{field}: {error}", field)


def _too_large(cap: int, size: int) -> web.HTTPException:
    body = {
        "error": f"body: larger than the limit of {cap} bytes ({cap / 2**20:g} MiB)",
        "field": "body",
        "limit_bytes": cap,
    }
    return web.HTTPRequestEntityTooLarge(
        max_size=cap, actual_size=size, text=json.dumps(body), content_type="application/json"
    )


async def read_body(request: web.Request, cap: int = MAX_BODY) -> bytes:
    """The whole body, up to `cap` bytes. `StreamReader.read(n)` returns what has
    arrived so far, not n bytes, so one call truncates any body larger than a
    socket read (~64 KB): read to the end of the stream."""
    if request.content_length is not None and request.content_length > cap:
        raise _too_large(cap, request.content_length)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_READ_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > cap:
            raise _too_large(cap, size)
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


async def read_json_object(request: web.Request, cap: int = MAX_BODY) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}`."""
    raw = await read_body(request, cap)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request("body", f"not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    if not text.strip():
        return {}
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise bad_request("body", "JSON nested too deeply") from None
    except ValueError as exc:
        raise bad_request("body", f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise bad_request("body", f"must be a JSON object, not {_kind(value)}")
    return value


def to_message(value: dict[str, Any], message: M) -> M:
    """Fill `message` from a JSON object in protobuf's JSON mapping (unknown fields
    are ignored, for newer clients); a value of the wrong type is refused naming
    the field."""
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    _check_shape(value, descriptor, "")
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as exc:
        field, error = _locate(value, descriptor, "")
        if not field:
            field, error = "body", str(exc)
        raise bad_request(field, error or str(exc)) from None
    return message


async def read_message(request: web.Request, message: M, cap: int = MAX_BODY) -> M:
    return to_message(await read_json_object(request, cap), message)


def _field(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    found: FieldDescriptor | None = descriptor.fields_by_camelcase_name.get(key)
    return found or descriptor.fields_by_name.get(key)


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and bool(field.message_type.GetOptions().map_entry)


def _plain(field: FieldDescriptor) -> Descriptor | None:
    """The message type of `field` when its JSON form is an object of its fields (not
    a map, not a well-known type such as Struct or Timestamp)."""
    inner: Descriptor | None = field.message_type
    if inner is None or _is_map(field) or inner.full_name.startswith("google."):
        return None
    return inner


def _check_shape(value: dict[str, Any], descriptor: Descriptor, path: str) -> None:
    """Objects where messages go and arrays where repeated fields go. protobuf's
    parser does not check this itself: it iterates whatever it is given, so a
    string where a message belongs passes as a message of unknown fields."""
    for key, item in value.items():
        field = _field(descriptor, key)
        if field is None or item is None:
            continue
        here = f"{path}.{key}" if path else key
        items: list[tuple[str, object]] = [(here, item)]
        if field.is_repeated and not _is_map(field):
            if not isinstance(item, list):
                raise bad_request(here, f"must be a JSON array, not {_kind(item)}")
            items = [(f"{here}[{i}]", element) for i, element in enumerate(item)]
        inner = _plain(field)
        for where, element in items:
            if (inner is not None or _is_map(field)) and not isinstance(element, dict):
                raise bad_request(where, f"must be a JSON object, not {_kind(element)}")
            if inner is not None and isinstance(element, dict):
                _check_shape(element, inner, where)


def _kind(value: object) -> str:
    names: dict[type, str] = {str: "a string", bool: "a boolean", int: "a number"}
    names.update({float: "a number", list: "an array", dict: "an object", type(None): "null"})
    return names.get(type(value), type(value).__name__)


def _fails(value: dict[str, Any], descriptor: Descriptor) -> str:
    """Why `value` does not parse as `descriptor`; "" when it does."""
    try:
        json_format.ParseDict(value, _new(descriptor), ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as exc:
        return str(exc)
    return ""


def _new(descriptor: Descriptor) -> Message:
    return message_factory.GetMessageClass(descriptor)()


def _locate(value: object, descriptor: Descriptor, path: str) -> tuple[str, str]:
    """The deepest JSON path under `path` whose value makes `descriptor` fail to
    parse, and why: the first failing key, descended into while it is a message."""
    if not isinstance(value, dict):
        return path, f"must be a JSON object, not {_kind(value)}"
    for key, item in value.items():
        field = _field(descriptor, key)
        if field is None:
            continue
        here = f"{path}.{key}" if path else key
        error = _fails({key: item}, descriptor)
        if not error:
            continue
        inner = _plain(field)
        if inner is None:
            return here, _short(error)
        if field.is_repeated and isinstance(item, list):
            for i, element in enumerate(item):
                if _fails({key: [element]}, descriptor):
                    return _locate(element, inner, f"{here}[{i}]")
        elif not field.is_repeated:
            return _locate(item, inner, here)
        return here, _short(error)
    return "", ""


def _short(error: str) -> str:
    """protobuf's innermost reason, without the chain of "Failed to parse x field"."""
    while error.startswith("Failed to parse ") and " field: " in error:
        error = error.split(" field: ", 1)[1]
    error = error.rstrip(".") or error
    wrong = _NOT_A_STRING.fullmatch(error)
    if wrong:
        return f"must be a string, not {_PY_TYPES.get(wrong[1], wrong[1])}"
    return error


def query_offset(request: web.Request, name: str, default: int = 0) -> int:
    """A non-negative integer query parameter, at most `MAX_OFFSET`."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or int(raw) > MAX_OFFSET:
        raise bad_request(name, f"must be an integer from 0 to {MAX_OFFSET}, got {raw[:40]!r}")
    return int(raw)


def query_seconds(request: web.Request, name: str, default: float, cap: float) -> float:
    """A wait in seconds: finite and >= 0; above `cap` it waits `cap` (a long poll may
    always answer early, so a client asking for more loses nothing it could rely on)."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(name, f"not a number of seconds: {raw[:40]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise bad_request(name, f"must be a finite number of seconds >= 0, got {raw[:40]!r}")
    return min(value, cap)
