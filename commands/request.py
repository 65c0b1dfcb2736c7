"""What a person asked for, from any surface: one shape from parsing to execution."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from commands.report import CheckResult

Surface = Literal["slack", "cli", "actions", "pr-comment"]
ProgressFn = Callable[[CheckResult], None]


@dataclass(frozen=True)
class RunRequest:
    command: str
    env: str
    requested_by: str = "cli"  # a Slack user id, an OS user ("cli:alice"), a GitHub login ("github:bob")
    pr: int | None = None
    dry_run: bool = False
    surface: Surface = "cli"
    include_aws_account_id: bool = False
    aws_region: str | None = None  # overrides the map; a mismatch is a FAIL, never a silent switch
    shop_domain: str | None = None
    approval_id: str | None = None  # looked up in the store and checked against its binding; never trusted
    confirmations: tuple[str, ...] = ()  # person-steps confirmed up front on the CLI ("rule-enabled", ...)
    run_id: str | None = None  # given by the surface that announced the run (Slack, Actions); else new


def os_user() -> str:
    """The CLI's requester: the OS user, recorded as `cli:<name>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli:unknown"
