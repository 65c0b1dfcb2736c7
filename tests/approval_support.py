"""Shared pieces of the approval tests: a tiny approvable command, signed button clicks, waits.

The canary and enable-outbound runners are written elsewhere; these tests prove the approval flow
with the real gate, store, execute, Slack app and GitHub fake around a command that changes nothing
(`run_noop`), put in the registry's place for the duration of a test.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from commands.checks import passed
from commands.config import CutoverConfig
from commands.registry import COMMANDS, CommandSpec
from commands.report import CheckResult, Report, Status, new_run_id, utc_now
from commands.request import RunRequest
from commands.run_context import RunContext, Steps
from integrations.sandbox.slack import BOT_ID, TEAM_ID, Message, SlackFake
from integrations.sandbox.slack_requests import signed_headers
from tests.waiting import wait_for

NOOP_STEP = "noop"


def run_noop(run: RunContext):
    """A mutating command that changes nothing: one PASS step (it holds the env's lock while it runs)."""
    steps = Steps(run)
    steps.run(NOOP_STEP, lambda: passed("nothing was changed (test command)"))
    return steps.report()


def plan_noop(request: RunRequest, config: CutoverConfig) -> Report:
    now = utc_now()
    step = CheckResult(name=NOOP_STEP, status=Status.SKIP, detail="dry run: would change nothing")
    return Report(
        command=request.command,
        env=request.env,
        run_id=new_run_id(),
        started_at=now,
        finished_at=now,
        checks=[step],
        requested_by=request.requested_by,
        pr=request.pr,
        dry_run=True,
    )


def noop_spec(name: str) -> CommandSpec:
    return CommandSpec(
        name=name,
        title=name.capitalize(),
        summary="a test command that changes nothing",
        runner="tests.approval_support:run_noop",
        planner="tests.approval_support:plan_noop",
        next_step="next: nothing",
        mutating=True,
        approvable=True,
    )


def use_noop_commands(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    for name in names:
        monkeypatch.setitem(COMMANDS, name, noop_spec(name))


def with_env(config: CutoverConfig, env: str, **updates: Any) -> CutoverConfig:
    """The map with one environment's keys changed (the map is frozen: a copy)."""
    envs = dict(config.envs)
    envs[env] = envs[env].model_copy(update=updates)
    return config.model_copy(update={"envs": envs})


# --- clicks, as Slack sends them --------------------------------------------------------------


def block_actions_payload(
    *,
    user: str,
    channel: str,
    message_ts: str,
    action_id: str,
    value: Any,
    response_url: str,
    bot_id: str = BOT_ID,
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "sandbox"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0CUTOVER",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": f"{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:12]}",
        "channel": {"id": channel, "name": "cutover"},
        "message": {"type": "message", "ts": message_ts, "bot_id": bot_id, "text": "approval"},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "approval",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def interaction_body(payload: dict[str, Any] | str) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return "payload=" + quote(text)


def post_interaction(
    http: httpx.Client, url: str, payload: dict[str, Any] | str, *, secret: str, sign: bool = True
) -> httpx.Response:
    body = interaction_body(payload)
    headers = signed_headers(body, secret) if sign else {"Content-Type": "application/x-www-form-urlencoded"}
    return http.post(f"{url}/slack/events", content=body, headers=headers)


# --- waiting on positive signals -----------------------------------------------------------------


def approval_message(fake: SlackFake, channel: str, *, index: int = 0) -> Message:
    """The index-th message in the channel that carries the approval buttons (or once carried them)."""

    def probe() -> Message | None:
        found = [
            m for m in fake.messages(channel) if any("cutover_approval_approve" in json.dumps(v) for v in m.history)
        ]
        return found[index] if len(found) > index else None

    return wait_for(probe, what="the approval message")


def buttons(message: Message) -> list[dict[str, Any]]:
    return [e for b in message.blocks if b.get("type") == "actions" for e in b.get("elements", [])]


def ephemerals_for(fake: SlackFake, user: str, *, count: int = 1) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        found = [e for e in fake.ephemerals() if e["user"] == user]
        return found if len(found) >= count else None

    return wait_for(probe, what=f"{count} ephemeral message(s) to {user}")
