"""Which groups a worker serves, and its labels.

Precedence: `--group` > `WORKER_GROUP` > docker (`/.dockerenv`) >
kubernetes (`/var/run/secrets/kubernetes.io`) > the OS name (linux, darwin, windows) >
"default". A worker may serve several groups, given comma-separated ("gpu,batch"). The
first source that is set wins outright: groups are not merged across sources, so an
operator's flag always means exactly what it says. A detected group (docker, k8s, the
OS) comes with "default" as well: a worker started with no group at all then runs
the tasks submitted with no group, which is what someone trying AgentFlow expects.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Callable, Iterable, Mapping

DOCKER_MARKER = "/.dockerenv"
KUBERNETES_MARKER = "/var/run/secrets/kubernetes.io"
KNOWN_OS = ("linux", "darwin", "windows")

# Same alphabet as task groups and label keys elsewhere: safe in URLs
# (`GET /api/v1/workers?group=`) and in CLI tables.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")


def parse_groups(text: str, source: str) -> tuple[str, ...]:
    """Splits "a,b" into groups, naming `source` (the flag or variable) in errors.

    Duplicates are dropped, order kept (the first group is the one shown first).
    """
    groups: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            raise ValueError(f"{source}: empty group name in {text!r}")
        if not _NAME.match(name):
            raise ValueError(
                f"{source}: invalid group name {name!r} (letters, digits, '.', '_', '-';"
                " starting with a letter or digit; at most 63 characters)"
            )
        if name not in groups:
            groups.append(name)
    return tuple(groups)


def detect_groups(
    flag: str | None = None,
    env: Mapping[str, str] | None = None,
    exists: Callable[[str], bool] = os.path.exists,
    system: str | None = None,
) -> tuple[str, ...]:
    """The worker's groups by the precedence above.

    `env`, `exists` and `system` stand in for os.environ, the filesystem and
    platform.system() in tests. An empty flag or variable counts as unset.
    """
    environ = os.environ if env is None else env
    if flag is not None and flag.strip():
        return parse_groups(flag, "--group")
    from_env = environ.get("WORKER_GROUP", "")
    if from_env.strip():
        return parse_groups(from_env, "WORKER_GROUP")
    if exists(DOCKER_MARKER):
        return ("docker", "default")
    if exists(KUBERNETES_MARKER):
        return ("k8s", "default")
    name = (system if system is not None else platform.system()).lower()
    return (name, "default") if name in KNOWN_OS else ("default",)


def parse_labels(items: Iterable[str], flag: str = "--label") -> dict[str, str]:
    """Parses repeated `--label k=v` values.

    The value is everything after the first '=' and may be empty ("spot=") or contain
    '='. A key given twice is an error rather than last-wins: two contradicting labels
    on one command line are a typo.
    """
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"{flag} {item!r}: expected key=value")
        if not key:
            raise ValueError(f"{flag} {item!r}: empty key")
        if not _LABEL_KEY.match(key):
            raise ValueError(
                f"{flag} {item!r}: invalid key {key!r} (letters, digits, '.', '_', '-',"
                " '/'; starting with a letter or digit; at most 63 characters)"
            )
        if key in labels:
            raise ValueError(f"{flag} {item!r}: key {key!r} given twice")
        labels[key] = value
    return labels
