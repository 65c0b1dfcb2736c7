"""Signed slash-command requests exactly as Slack sends them: a form body and v0 signature headers.

How the demo, the ack bench and the tests speak to the app over HTTP; the app verifies them with
Bolt's own request verification, as it does Slack's.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier


def slash_command_body(
    command: str, text: str, *, user: str, channel: str, response_url: str, trigger_id: str | None = None
) -> str:
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": "T0SANDBOX",
            "team_domain": "sandbox",
            "channel_id": channel,
            "channel_name": "cutover",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0CUTOVER",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id or f"{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:12]}",
        }
    )


def block_action_body(
    action_id: str,
    value: str,
    *,
    user: str,
    channel: str,
    message_ts: str,
    response_url: str,
    blocks: list[dict[str, Any]] | None = None,
    text: str = "",
    bot_id: str = "B0CUTOVER",
    app_id: str = "A0CUTOVER",
) -> str:
    """A button click (an interactivity request): `payload=<url-quoted JSON>` of a block_actions payload."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T0SANDBOX", "domain": "sandbox"},
        "user": {"id": user, "username": user.lower(), "team_id": "T0SANDBOX"},
        "api_app_id": "A0CUTOVER",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": f"{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:12]}",
        "channel": {"id": channel, "name": "cutover"},
        "message": {
            "type": "message",
            "ts": message_ts,
            "bot_id": bot_id,
            "app_id": app_id,
            "text": text,
            "blocks": blocks or [],
        },
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def signed_headers(body: str, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None  # only None without a timestamp or body
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
    }
