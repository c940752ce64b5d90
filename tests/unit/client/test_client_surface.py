"""`Client` and `AsyncClient` offer one API: the same public names, each with the same
parameters (names, kinds, defaults, annotations) and the same result, awaited or
iterated asynchronously on the asyncio side."""

from __future__ import annotations

import collections.abc as abc
import inspect
import typing
from typing import Any

import pytest

from agentflow.client import AsyncClient, Client
from agentflow.client.aio import AsyncAutoRenewLock, AsyncLockLease
from agentflow.client.sync import AutoRenewLock, LockLease

# Objects the asyncio client hands out for `async with`, and their blocking twins.
TWINS: dict[type, type] = {AsyncLockLease: LockLease, AsyncAutoRenewLock: AutoRenewLock}


def public_names(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def sync_equivalent(annotation: Any) -> Any:
    """What a blocking method returns where the asyncio one returns `annotation`
    (an async iterator or generator; anything else is the same)."""
    if annotation in TWINS:
        return TWINS[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is abc.AsyncIterator:
        return abc.Iterator[args]  # type: ignore[misc]
    if origin is abc.AsyncGenerator:
        # An async generator has no return value: the blocking one returns None.
        return abc.Generator[(*args, None)]  # type: ignore[misc]
    return annotation


def signature(cls: type, name: str) -> inspect.Signature:
    return inspect.signature(getattr(cls, name), eval_str=True)


def test_the_same_public_names() -> None:
    assert public_names(Client) == public_names(AsyncClient)


def test_context_managers() -> None:
    assert inspect.iscoroutinefunction(AsyncClient.__aenter__)
    assert inspect.iscoroutinefunction(AsyncClient.__aexit__)
    assert signature(Client, "__exit__") == signature(AsyncClient, "__aexit__")
    assert signature(Client, "__enter__") == signature(AsyncClient, "__aenter__")


def test_the_same_constructor() -> None:
    assert signature(Client, "__init__") == signature(AsyncClient, "__init__")


def test_properties_match() -> None:
    for name in sorted(public_names(Client)):
        sync_attr = inspect.getattr_static(Client, name)
        aio_attr = inspect.getattr_static(AsyncClient, name)
        assert isinstance(sync_attr, property) == isinstance(aio_attr, property), name


@pytest.mark.parametrize(
    "name",
    sorted(n for n in public_names(Client) if callable(inspect.getattr_static(Client, n))),
)
def test_the_same_signature_modulo_async(name: str) -> None:
    sync_method, aio_method = getattr(Client, name), getattr(AsyncClient, name)
    assert not inspect.iscoroutinefunction(sync_method), name
    sync_sig, aio_sig = signature(Client, name), signature(AsyncClient, name)
    # Names, order, kinds, defaults and annotations of every parameter.
    assert list(sync_sig.parameters.values()) == list(aio_sig.parameters.values()), name
    if inspect.iscoroutinefunction(aio_method):
        # Awaited: the coroutine's result is the blocking method's result.
        assert sync_sig.return_annotation == aio_sig.return_annotation, name
    else:
        # Not awaited (list, watch): an async iterator where the blocking one iterates.
        want = sync_equivalent(aio_sig.return_annotation)
        assert want is not aio_sig.return_annotation, f"{name}: neither async nor iterating"
        assert sync_sig.return_annotation == want, name


def test_the_surface_is_not_empty() -> None:
    # Guards the parametrized test against collecting nothing.
    assert {"submit", "wait", "watch", "list", "close"} <= public_names(Client)


@pytest.mark.parametrize(("aio", "sync"), sorted(TWINS.items(), key=lambda t: t[1].__name__))
def test_lock_leases_match(aio: type, sync: type) -> None:
    assert public_names(aio) == public_names(sync)
    for name in ("acquire", "release"):
        assert inspect.iscoroutinefunction(getattr(aio, name)), name
        assert not inspect.iscoroutinefunction(getattr(sync, name)), name
    assert inspect.iscoroutinefunction(aio.__aenter__)
    assert hasattr(sync, "__enter__") and hasattr(sync, "__exit__")
