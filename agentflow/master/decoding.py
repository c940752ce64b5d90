"""Requests that do not decode are INVALID_ARGUMENT, naming the field when it can.

gRPC decodes a request before any handler runs; when that fails (most often a string
field holding bytes that are not UTF-8, which proto3 forbids) it answers UNKNOWN, which
the SDK reads as "maybe applied" and a raw client cannot act on. This interceptor wraps
every method's deserializer: an undecodable message becomes a marker, and the wrapped
handler answers INVALID_ARGUMENT with the field path ("tasks[0].command: not valid
UTF-8") found by walking the wire bytes against the message's descriptor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

from agentflow.master.status import ERROR_FIELD

__all__ = ["DecodeErrorInterceptor", "find_bad_utf8"]

Ctx = grpc.aio.ServicerContext[Any, Any]


class _Undecodable:
    """What the wrapped deserializer returns instead of raising."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message

    async def abort(self, context: Ctx) -> None:
        text = f"{self.field}: {self.message}" if self.field else self.message
        context.set_trailing_metadata(((ERROR_FIELD, self.field),))
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, text)


def _deserializer(fn: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    # The generated FromString is a bound classmethod: its class gives the descriptor.
    descriptor: Descriptor | None = getattr(getattr(fn, "__self__", None), "DESCRIPTOR", None)

    def deserialize(data: bytes) -> Any:
        try:
            return fn(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            path = find_bad_utf8(descriptor, data) if descriptor is not None else None
            if path is not None:
                return _Undecodable(path, "not valid UTF-8")
            name = descriptor.full_name if descriptor is not None else "request"
            return _Undecodable("", f"cannot decode {name}: {exc}")

    return deserialize


async def _checked_stream(requests: AsyncIterator[Any], context: Ctx) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            await request.abort(context)
        yield request


def _wrap(handler: Any) -> Any:
    # grpc's RpcMethodHandler is a namedtuple underneath; its stubs do not say so.
    deserializer = handler.request_deserializer
    if deserializer is None:
        return handler
    if handler.unary_unary is not None:
        unary_unary = handler.unary_unary

        async def uu(request: Any, context: Ctx) -> Any:
            if isinstance(request, _Undecodable):
                await request.abort(context)
            return await unary_unary(request, context)

        return handler._replace(request_deserializer=_deserializer(deserializer), unary_unary=uu)
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream

        async def us(request: Any, context: Ctx) -> AsyncIterator[Any]:
            if isinstance(request, _Undecodable):
                await request.abort(context)
            async for response in unary_stream(request, context):
                yield response

        return handler._replace(request_deserializer=_deserializer(deserializer), unary_stream=us)
    if handler.stream_unary is not None:
        stream_unary = handler.stream_unary

        async def su(requests: AsyncIterator[Any], context: Ctx) -> Any:
            return await stream_unary(_checked_stream(requests, context), context)

        return handler._replace(request_deserializer=_deserializer(deserializer), stream_unary=su)
    if handler.stream_stream is not None:
        stream_stream = handler.stream_stream

        async def ss(requests: AsyncIterator[Any], context: Ctx) -> AsyncIterator[Any]:
            async for response in stream_stream(_checked_stream(requests, context), context):
                yield response

        return handler._replace(request_deserializer=_deserializer(deserializer), stream_stream=ss)
    return handler


class DecodeErrorInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        return None if handler is None else _wrap(handler)


# ---- finding the field -------------------------------------------------------------------


class _Truncated(Exception):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Truncated
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def find_bad_utf8(descriptor: Descriptor, data: bytes, prefix: str = "") -> str | None:
    """The path of the first string field under `descriptor` whose bytes are not UTF-8
    ("tasks[0].env['A']"), or None (also for bytes too broken to walk)."""
    try:
        return _walk(descriptor, memoryview(data).tobytes(), prefix, 0)
    except _Truncated:
        return None


def _walk(descriptor: Descriptor, data: bytes, prefix: str, depth: int) -> str | None:
    if depth > 32:
        return None
    counts: dict[int, int] = {}
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _varint(data, pos)
            continue
        if wire in (1, 5):
            pos += 8 if wire == 1 else 4
            continue
        if wire != 2:
            return None  # groups: not in our protos
        size, pos = _varint(data, pos)
        if pos + size > len(data):
            raise _Truncated
        chunk, pos = data[pos : pos + size], pos + size
        field = descriptor.fields_by_number.get(number)
        if field is None:
            continue
        seen = counts.get(number, 0)
        counts[number] = seen + 1
        name = f"{prefix}{field.name}"
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_STRING:
            if not _is_utf8(chunk):
                return f"{name}[{seen}]" if repeated else name
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            entry = field.message_type
            if entry is None:
                continue
            if entry.GetOptions().map_entry:
                found = _map_entry(entry, chunk, name, depth)
            else:
                path = f"{name}[{seen}]." if repeated else f"{name}."
                found = _walk(entry, chunk, path, depth + 1)
            if found is not None:
                return found
    return None


def _map_entry(entry: Descriptor, chunk: bytes, name: str, depth: int) -> str | None:
    key_field = entry.fields_by_name["key"]
    if key_field.type == FieldDescriptor.TYPE_STRING:
        key = _map_key(chunk)
        if key is None:
            return name  # the key itself
        found = _walk(entry, chunk, f"{name}[{key!r}].", depth + 1)
        # "env['A'].value" -> "env['A']": the entry's own field names are noise.
        return None if found is None else found.removesuffix(".value")
    return _walk(entry, chunk, f"{name}.", depth + 1)


def _map_key(chunk: bytes) -> str | None:
    """The decoded key of a map<string, ...> entry; None if it is not UTF-8."""
    pos = 0
    while pos < len(chunk):
        tag, pos = _varint(chunk, pos)
        if tag & 7 == 0:
            _, pos = _varint(chunk, pos)
            continue
        if tag & 7 != 2:
            return ""
        size, pos = _varint(chunk, pos)
        raw, pos = chunk[pos : pos + size], pos + size
        if tag >> 3 == 1:
            return raw.decode("utf-8") if _is_utf8(raw) else None
    return ""


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
