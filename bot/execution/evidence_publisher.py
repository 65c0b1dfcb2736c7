"""Builds the outside-world pieces the commands need, from the map and the environment."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from commands.config import CutoverConfig, Tokens
from commands.outbox import Outbox
from commands.publish import GitHubPublisher
from integrations.github import GitHubEvidence

log = logging.getLogger(__name__)
OUTBOX_DIR = ".outbox"  # inside the evidence folder: pending GitHub work survives restarts


def publisher_for(config: CutoverConfig, *, tokens: Tokens | None = None) -> GitHubPublisher | None:
    """The PR evidence publisher, or None when GitHub is not configured (evidence then stays local)."""
    tokens = tokens or Tokens()
    repo = config.github.repository()
    if not tokens.github_token or not repo:
        return None
    sink = GitHubEvidence(repo=repo, token=tokens.github_token, base_url=tokens.github_api_url)
    outbox = Outbox(Path(config.evidence_dir) / OUTBOX_DIR)
    # The folder on the PR branch mirrors the map's; an absolute local path means nothing there.
    on_branch = config.evidence_dir if not Path(config.evidence_dir).is_absolute() else "evidence"
    return GitHubPublisher(sink, outbox, evidence_dir=on_branch)


def drain_in_background(publisher: GitHubPublisher | None) -> threading.Thread | None:
    """Send what an earlier process left in the outbox, without delaying this one."""
    if publisher is None:
        return None

    def drain() -> None:
        try:
            for result in publisher.drain():
                log.info("outbox: %s", result.detail)
        except Exception:  # a broken drain must not break the command that started it
            log.exception("draining the evidence outbox failed")

    thread = threading.Thread(target=drain, name="outbox-drain", daemon=True)
    thread.start()
    return thread
