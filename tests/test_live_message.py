"""The run's one message: an edit that comes too soon after another is sent when the interval ends."""

from __future__ import annotations

import time

from slack_sdk import WebClient

from bot.slack.blocks import Rendered
from bot.slack.live_message import LiveMessage
from tests.slack_support import BOT_TOKEN, CHANNEL, shared_fake


def _rendered(text: str) -> Rendered:
    return Rendered(text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}])


def test_an_edit_within_the_interval_is_sent_once_the_interval_ends_and_never_after_the_result():
    fake = shared_fake()
    fake.reset()
    client = WebClient(token=BOT_TOKEN, base_url=f"{fake.url}/api/")
    live = LiveMessage(client, progress_client=client, channel=CHANNEL, response_url=None, interval_s=0.3)
    live.post(_rendered("started"))
    live.maybe_update(lambda: _rendered("waiting for a person: rule-enabled"))  # within the interval: deferred
    (message,) = fake.messages(CHANNEL)
    assert message.text == "started"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and fake.messages(CHANNEL)[0].text == "started":
        time.sleep(0.02)
    assert fake.messages(CHANNEL)[0].text == "waiting for a person: rule-enabled"

    live.maybe_update(lambda: _rendered("late progress"))  # deferred again ...
    live.finish(_rendered("PASS"))  # ... and cancelled by the result
    time.sleep(0.5)  # longer than the interval: a stray deferred edit would have landed by now
    assert fake.messages(CHANNEL)[0].text == "PASS"
