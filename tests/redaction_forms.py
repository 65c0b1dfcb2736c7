"""Every rendered form a report takes on its way out. Property tests check each for leaks.

Other tests (Slack blocks, PR comments) add their renderings here so one property covers them all.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from commands.evidence import render_files
from commands.redaction import RedactingFilter, Redactor
from commands.report import Report


def proof_files(report: Report, redactor: Redactor) -> str:
    return "\n".join(body.decode() for body in render_files(report, redactor=redactor).values())


def terminal(report: Report, redactor: Redactor) -> str:
    from bot.terminal import console as term
    from commands import render

    console = Console(file=io.StringIO(), width=400, color_system=None)
    clean = render.redacted(report, redactor=redactor)
    console.print(term.checks_table(clean.failing_first()))
    console.print(redactor.redact(render.summary_line(clean)))
    return console.file.getvalue()


def log_record(report: Report, redactor: Redactor) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("report %s detail %r", report.model_dump(mode="json"), [c.detail for c in report.checks])
        try:
            raise RuntimeError(str(report.checks[0].data))
        except RuntimeError:
            logger.exception("check failed")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def slack_message(report: Report, redactor: Redactor) -> str:
    from bot.slack.blocks import result_blocks
    from commands.evidence import Bundle
    from commands.execute import EvidenceResult, Outcome

    bundle = Bundle(path=Path("evidence"), files=render_files(report, redactor=redactor))
    rendered = result_blocks(Outcome(report, bundle, EvidenceResult("pending", "queued")), redactor=redactor)
    return json.dumps({"text": rendered.text, "blocks": rendered.blocks}, ensure_ascii=False)


def pr_comment(report: Report, redactor: Redactor) -> str:
    """The sticky comment as the publisher builds it (job, then body, then the final redaction)."""
    from commands.evidence import Bundle
    from commands.publish import EvidenceLinks, compose_comment, new_job

    bundle = Bundle(path=Path("evidence"), files=render_files(report, redactor=redactor))
    job = new_job(report, bundle, pr=7, keep_account_ids=False, evidence_dir="evidence", redactor=redactor)
    links = EvidenceLinks("http://127.0.0.1/acme/rp-mw", "a" * 40, "evidence/prod/x")
    return redactor.redact(compose_comment(job, links))


RENDERINGS: dict[str, Callable[[Report, Redactor], str]] = {
    "proof files": proof_files,
    "terminal": terminal,
    "log record": log_record,
    "slack message": slack_message,
    "pr comment": pr_comment,
}
