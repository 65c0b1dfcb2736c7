"""Builds the outside-world pieces the commands need, from the map and the environment."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from commands.config import CutoverConfig, Tokens
from commands.outbox import Outbox, OutboxDrainer
from commands.publish import GitHubPublisher
from commands.state import store_for
from integrations.github import GitHubEvidence

log = logging.getLogger(__name__)
OUTBOX_DIR = ".outbox"  # inside the evidence folder: pending GitHub work survives restarts


def publisher_for(config: CutoverConfig, *, tokens: Tokens | None = None) -> GitHubPublisher | None:
    """The PR evidence publisher, or None when GitHub is not configured (evidence then stays local)."""
    tokens = tokens or Tokens()
    repo = config.github.repository()
    if not tokens.github_token or not repo:
        return None
    # A GitHub App's token (Actions' GITHUB_TOKEN is github-actions[bot]) names its bot login here;
    # the sticky comment is the one this identity wrote.
    sink = GitHubEvidence(
        repo=repo,
        token=tokens.github_token,
        base_url=tokens.github_api_url,
        app_slug=os.environ.get("GITHUB_APP_SLUG") or None,
    )
    outbox = Outbox(Path(config.evidence_dir) / OUTBOX_DIR)
    # The folder on the PR branch mirrors the map's; an absolute local path means nothing there.
    on_branch = config.evidence_dir if not Path(config.evidence_dir).is_absolute() else "evidence"
    # The env's timeline comment is built from the state store, opened when first needed.
    return GitHubPublisher(sink, outbox, evidence_dir=on_branch, store_factory=lambda: store_for(config))


DRAIN_INTERVAL_S = 60.0


def start_drainer(publisher: GitHubPublisher | None, *, interval_s: float = DRAIN_INTERVAL_S) -> OutboxDrainer | None:
    """Send what is pending in the outbox now and every `interval_s` while this process runs:
    evidence an earlier process left, a job still pending after its follow-ups, or one left by a
    worker killed at its deadline. A daemon thread: it never delays or outlives the command."""
    if publisher is None:
        return None
    return OutboxDrainer(publisher, interval_s=interval_s, on_result=lambda r: log.info("outbox: %s", r.detail)).start()
