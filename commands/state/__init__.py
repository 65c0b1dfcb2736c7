"""The cutover's state: phases (runs), the audit trail, the per-env lock, approvals, watches, confirmations.

`open_store(config.state)` picks the backend from the URL:

- `sqlite:///var/cutover.db`  a path relative to `base_dir` (default: the working directory)
- `sqlite:////srv/cutover.db` an absolute path
- `dynamodb://TABLE`          region from AWS_REGION / AWS_DEFAULT_REGION (or `?region=us-east-2`),
                              endpoint and credentials from boto3's own chain (AWS_ENDPOINT_URL included)

Both implement `StateStore` (commands/state/model.py); the phase rules are in commands/state/phases.py.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from commands.config import ConfigError
from commands.state.model import (
    AlreadyDecided,
    Approval,
    ApprovalError,
    ApprovalExpired,
    ApprovalNotApproved,
    ApprovalNotFound,
    ApprovalRequest,
    ApprovalStatus,
    ApprovalUsed,
    ApprovalVoided,
    AuditEntry,
    Confirmation,
    Decision,
    Lease,
    LockHeld,
    LockHolder,
    LockInfo,
    LockLost,
    RunAlreadyFinished,
    RunNotFound,
    RunRecord,
    RunStatus,
    SelfApproval,
    StateError,
    StateStore,
    StoreConfigError,
    StoreUnavailable,
    Surface,
    WatchState,
)
from commands.state.sqlite import SqliteStore

if TYPE_CHECKING:
    from commands.config import CutoverConfig
    from commands.state.dynamodb import DynamoStore

_FORMS = "use sqlite:///relative/path.db, sqlite:////absolute/path.db or dynamodb://TABLE"
_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


def open_store(url: str, *, base_dir: str | os.PathLike[str] | None = None) -> StateStore:
    """The store a `state` setting names; StoreConfigError (a ValueError) says what is wrong with it.

    Nothing is touched yet: the SQLite file is created on first use, DynamoDB is first called on
    first use (call `check_reachable()` to find out now).
    """
    if not isinstance(url, str) or not url.strip():
        raise StoreConfigError(f"state is empty: {_FORMS}")
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StoreConfigError(f"state {url!r} is not a store URL: {_FORMS}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        return _open_sqlite(url, rest, base_dir)
    if scheme == "dynamodb":
        return _open_dynamodb(url)
    raise StoreConfigError(f"state {url!r}: unknown store {scheme!r}: {_FORMS}")


_stores: dict[tuple[str, str], StateStore] = {}
_stores_lock = threading.Lock()


def store_for(config: CutoverConfig) -> StateStore:
    """One store per `state` URL (and working directory, for relative SQLite paths) per process.

    The store every run, lock and rollback of this process uses (commands.execute, preflight's
    rollback_ready, the Slack person-steps); a bad `state` setting is a ConfigError (exit 2).
    """
    key = (config.state, os.getcwd())
    with _stores_lock:
        if key not in _stores:
            try:
                _stores[key] = open_store(config.state)
            except StoreConfigError as exc:
                raise ConfigError(f"state: {exc}") from None
        return _stores[key]


def _open_sqlite(url: str, rest: str, base_dir: str | os.PathLike[str] | None) -> SqliteStore:
    if not rest.startswith("/"):
        host = rest.split("/", 1)[0]
        raise StoreConfigError(f"state {url!r}: a sqlite URL has no host ({host!r}): {_FORMS} (note the three slashes)")
    if "?" in rest or "#" in rest:
        raise StoreConfigError(f"state {url!r}: sqlite URLs take no query or fragment: {_FORMS}")
    path_text = rest[1:]  # sqlite:///var/x.db -> var/x.db ; sqlite:////abs/x.db -> /abs/x.db
    if not path_text or path_text.endswith("/"):
        raise StoreConfigError(f"state {url!r}: no database file named: {_FORMS}")
    if path_text == ":memory:":
        raise StoreConfigError(f"state {url!r}: an in-memory database is not shared between runs: use a file")
    path = Path(path_text)
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()) / path
    return SqliteStore(path, url=url)


def _open_dynamodb(url: str) -> DynamoStore:
    from commands.state.dynamodb import DynamoStore  # boto3 is imported only when DynamoDB is used

    parts = urlsplit(url)
    table = parts.netloc
    if parts.path not in ("", "/") or parts.fragment:
        raise StoreConfigError(f"state {url!r}: name only the table: dynamodb://TABLE")
    if not _TABLE.match(table):
        raise StoreConfigError(
            f"state {url!r}: {table!r} is not a DynamoDB table name (3-255 of letters, digits, '_', '.', '-')"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"region"})
    if unknown:
        raise StoreConfigError(f"state {url!r}: unknown option {', '.join(unknown)} (only region=)")
    region = query.get("region", [None])[0]
    if region is not None and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise StoreConfigError(f"state {url!r}: {region!r} is not an AWS region")
    return DynamoStore(table, url=url, region=region)


def __getattr__(name: str) -> Any:
    if name == "DynamoStore":
        from commands.state.dynamodb import DynamoStore

        return DynamoStore
    raise AttributeError(name)


__all__ = [
    "AlreadyDecided",
    "Approval",
    "ApprovalError",
    "ApprovalExpired",
    "ApprovalNotApproved",
    "ApprovalNotFound",
    "ApprovalRequest",
    "ApprovalStatus",
    "ApprovalUsed",
    "ApprovalVoided",
    "AuditEntry",
    "Confirmation",
    "Decision",
    "DynamoStore",
    "Lease",
    "LockHeld",
    "LockHolder",
    "LockInfo",
    "LockLost",
    "RunAlreadyFinished",
    "RunNotFound",
    "RunRecord",
    "RunStatus",
    "SelfApproval",
    "SqliteStore",
    "StateError",
    "StateStore",
    "StoreConfigError",
    "StoreUnavailable",
    "Surface",
    "WatchState",
    "open_store",
    "store_for",
]
