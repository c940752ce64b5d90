"""`agentflow lock`: take, give up, renew and inspect distributed locks."""

from __future__ import annotations

import getpass
import socket

import click

from agentflow.cli.context import AppContext, pass_app
from agentflow.cli.params import DURATION
from agentflow.client.models import Lock


def cli_owner() -> str:
    """The owner a CLI takes locks as: the same for every run by this user on this
    host, so that `release` in a later run matches `acquire`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


OWNER_HELP = "Who holds it. [default: cli:USER@HOST, the same for every run of this user here]"


def _human(lock: Lock) -> str:
    if not lock.owner:
        return f"{lock.name}: free"
    expires = lock.expires_at.isoformat() if lock.expires_at else "-"
    waiting = f", {len(lock.waiters)} waiting" if lock.waiters else ""
    return f"{lock.name}: held by {lock.owner}, token {lock.token}, until {expires}{waiting}"


@click.group("lock")
def lock() -> None:
    """Distributed locks: leases with fencing tokens (pass the token downstream)."""


@lock.command("acquire")
@click.argument("name")
@click.option("--ttl", type=DURATION, required=True, help="Lease length (e.g. 10s).")
@click.option("--owner", default=None, help=OWNER_HELP)
@click.option("--wait", type=DURATION, default=None, help="Queue for up to this long when held.")
@pass_app
def acquire(app: AppContext, name: str, ttl: float, owner: str | None, wait: float | None) -> None:
    """Take lock NAME; prints its owner and fencing token (exit 1 when held)."""
    granted = app.client.acquire_lock(name, ttl, owner=owner or cli_owner(), wait=wait)
    data = {
        "name": granted.name,
        "owner": granted.owner,
        "token": granted.token,
        "expires_at": granted.expires_at,
        "expires_at_ms": granted.expires_at_ms,
    }
    app.emit(_human(granted), data)


@lock.command("release")
@click.argument("name")
@click.option("--token", type=click.IntRange(min=1), required=True, help="The fencing token.")
@click.option("--owner", default=None, help=OWNER_HELP)
@pass_app
def release(app: AppContext, name: str, token: int, owner: str | None) -> None:
    """Give lock NAME up."""
    granted_to = app.client.release_lock(name, token, owner=owner or cli_owner())
    human = f"released {name}" + (f" (now held by {granted_to})" if granted_to else "")
    app.emit(human, {"name": name, "released": True, "granted_to": granted_to})


@lock.command("renew")
@click.argument("name")
@click.option("--token", type=click.IntRange(min=1), required=True, help="The fencing token.")
@click.option("--ttl", type=DURATION, default=10.0, show_default=True, help="New lease length.")
@click.option("--owner", default=None, help=OWNER_HELP)
@pass_app
def renew(app: AppContext, name: str, token: int, ttl: float, owner: str | None) -> None:
    """Extend the lease on lock NAME."""
    renewed = app.client.renew_lock(name, token, ttl, owner=owner or cli_owner())
    app.emit(_human(renewed), renewed)


@lock.command("show")
@click.argument("name")
@pass_app
def show(app: AppContext, name: str) -> None:
    """Lock NAME: holder, token, lease and waiters."""
    found = app.client.get_lock(name)
    app.emit(_human(found), found)


@lock.command("list")
@click.option("--prefix", default="", help="Only names starting with it.")
@pass_app
def list_locks(app: AppContext, prefix: str) -> None:
    """Every lock held, waited for or in its lock delay."""
    locks = app.client.list_locks(prefix)
    app.emit("\n".join(_human(k) for k in locks) or "no locks", locks)


COMMANDS = (lock,)
