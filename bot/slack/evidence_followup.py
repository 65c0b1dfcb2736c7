"""Turns a run's "evidence pending" in the channel into "evidence attached" once GitHub is back.

A few timed retries of that run's queued evidence, each on a short-lived timer thread (no executor
slot is held while waiting); the same channel message is edited when the evidence lands or is
refused. After the last retry the outbox's next drain still delivers it: nothing is lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

from commands.execute import EvidenceResult, Outcome
from commands.report import Report

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Retrier(Protocol):
    def retry(self, report: Report) -> EvidenceResult: ...


def follow_pending_evidence(
    outcome: Outcome,
    publisher: Retrier,
    *,
    show: Callable[[Outcome], object],
    delays_s: Sequence[float] = RETRY_DELAYS_S,
) -> threading.Timer | None:
    """Schedule the retries; `show` re-renders the run's message with the new evidence state."""
    if outcome.evidence.state != "pending" or not delays_s:
        return None

    def attempt() -> None:
        try:
            evidence = publisher.retry(outcome.report)
        except Exception:  # a broken retry must not kill the timer chain silently
            log.exception("retrying evidence for run %s failed", outcome.report.run_id)
            evidence = outcome.evidence
        if evidence.state == "pending":
            follow_pending_evidence(outcome, publisher, show=show, delays_s=delays_s[1:])
            return
        show(replace(outcome, evidence=evidence))

    timer = threading.Timer(delays_s[0], attempt)
    timer.daemon = True
    timer.name = f"evidence-retry-{outcome.report.run_id}"
    timer.start()
    return timer
