"""Block Kit renderings of a run for Slack: started, in progress, and the result. Rendering only.

Everything returned has been through the redactor as the last step. Details are also redacted
*before* they are shortened: cutting first could split a secret so that its pieces no longer match.
Slack refuses a message past its limits, so a long report is cut with a note instead
("… 12 more checks, see the evidence"): 50 blocks, 3,000 chars a section, and about 12k chars of
blocks in all (`msg_blocks_too_long` has been seen at about 13k).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from commands.execute import EvidenceResult, Outcome
from commands.redaction import REDACTOR, Redactor
from commands.registry import COMMANDS, title
from commands.render import STATUS_ICON, summary_line
from commands.report import CheckResult, Status, failing_first

MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
SECTION_BUDGET = 2600  # headroom under 3,000: a redaction marker can be longer than what it replaced
TOTAL_BUDGET = 11000  # all block text together, under the ~13k where Slack answers msg_blocks_too_long
DETAIL_CHARS = {Status.FAIL: 400, Status.SKIP: 200, Status.WARN: 300, Status.PASS: 90}
EVIDENCE_WORDS = {"attached": "evidence attached", "pending": "evidence pending", "local": "kept locally"}
EVIDENCE_ICON = {"attached": "📎", "pending": "⏳", "local": "💾"}
IN_PROGRESS = "⏳"  # opens the started and progress forms; a verdict or a notice never does


@dataclass(frozen=True)
class Rendered:
    """What chat.postMessage / chat.update take: fallback text (notifications) and blocks."""

    text: str
    blocks: list[dict[str, Any]]

    def as_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def escape(text: str) -> str:
    """mrkdwn control characters: a detail must not become a link, a mention or an @channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def started_blocks(command: str, env: str, user: str, *, pr: int | None = None, dry_run: bool = False) -> Rendered:
    line = f"{title(command)} {env} started by <@{user}>{_qualifiers(pr, dry_run)}"
    return _final(line, [_section(f"{IN_PROGRESS} *{escape_keep_mentions(line)}*")])


def dispatched_blocks(
    command: str,
    env: str,
    user: str,
    *,
    url: str,
    exact: bool,
    run_id: str,
    pr: int | None = None,
    dry_run: bool = False,
) -> Rendered:
    """The started line and where the run executes (executor = "github-actions"): still in progress, since
    the workflow run edits this message as it goes and ends it with the result."""
    line = f"{title(command)} {env} started by <@{user}>{_qualifiers(pr, dry_run)}"
    link = url if url.startswith("https://") or url.startswith("http://") else ""
    safe = bool(link) and not any(c in link for c in "<>| \n")
    what = "workflow run" if exact else f"the workflow's runs (look for run `{run_id}`)"
    where = f"<{link}|{what}>" if safe else what
    note = f"running on GitHub Actions: {where} · run `{run_id}` · this message is updated from there"
    return _final(line, [_section(f"{IN_PROGRESS} *{escape_keep_mentions(line)}*"), _context(note)])


def progress_blocks(
    command: str,
    env: str,
    user: str,
    done: Sequence[CheckResult],
    *,
    elapsed_s: float,
    pr: int | None = None,
    dry_run: bool = False,
) -> Rendered:
    """The started line plus the checks finished so far, failing first."""
    failed = sum(1 for c in done if c.status in (Status.FAIL, Status.SKIP))
    head = f"{title(command)} {env} started by <@{user}>{_qualifiers(pr, dry_run)}"
    counts = f"{len(done)} checks done" + (f", {failed} not passing" if failed else "") + f" · {elapsed_s:.1f} s"
    blocks = [_section(f"{IN_PROGRESS} *{escape_keep_mentions(head)}*"), _context(counts)]
    buttons = person_step_buttons(done)
    blocks += _check_blocks(failing_first(done), reserve=1 + len(buttons)) + buttons
    return _final(f"{head}: {counts}", blocks)


def result_blocks(outcome: Outcome, *, user: str | None = None, redactor: Redactor = REDACTOR) -> Rendered:
    """PASS/FAIL with the summary, the failing checks first with their reason, then the rest."""
    report = outcome.report
    summary = summary_line(report)
    icon = STATUS_ICON[Status(report.overall_status)]
    by = f" · requested by <@{user}>" if user else ""
    retry = f"fix what failed, then `/{report.command} {{env}}` again"
    if report.dry_run:
        next_step = f"dry run: nothing was called or changed; run `/{report.command} {{env}}` to do it"
    else:
        next_step = (
            (COMMANDS[report.command].next_step if report.command in COMMANDS else "") if report.passed else retry
        )
    head = [_section(f"{icon} *{escape(summary)}*{by}")]
    foot = [_context(_evidence_line(outcome.evidence, redactor), f"{report.duration_s:.1f} s · run `{report.run_id}`")]
    if next_step:
        foot.append(_context(next_step.format(env=report.env)))
    buttons = person_step_buttons(report.checks)
    reserve = len(head) + len(foot) + len(buttons)
    blocks = head + _check_blocks(report.failing_first(), reserve=reserve, redactor=redactor) + buttons + foot
    return _final(summary, blocks, redactor)


CONFIRM_ACTION = "cutover_confirm_step"


def person_step_buttons(checks: Sequence[CheckResult]) -> list[dict[str, Any]]:
    """A button for each step that waits for a person (data["awaiting"]): "I did it". The value
    names the run and the step only; who clicked is checked and recorded when the click comes."""
    blocks = []
    for check in checks:
        step = check.data.get("awaiting") if check.status == Status.WARN else None
        if not step:
            continue
        value = json.dumps({"run": check.data.get("run_id"), "env": check.data.get("env"), "step": step})
        button = {
            "type": "button",
            "action_id": CONFIRM_ACTION,
            "text": {"type": "plain_text", "text": f"Done: {step}"[:75]},
            "style": "primary",
            "value": value[:2000],
        }
        blocks.append({"type": "actions", "block_id": f"confirm:{step}"[:255], "elements": [button]})
    return blocks


def in_progress(blocks: list[dict[str, Any]]) -> bool:
    """Whether a message with these blocks is a run's started/progress form rather than its end."""
    first = (blocks or [{}])[0].get("text", {}).get("text", "")
    return first.startswith(IN_PROGRESS)


def notice_blocks(text: str, *, icon: str = "⚠️") -> Rendered:
    """A one-line message (did not run, internal error): same redaction as the rest."""
    return _final(text, [_section(f"{icon} {text}")])


# --- pieces ----------------------------------------------------------------------------


def escape_keep_mentions(text: str) -> str:
    """Our own line with `<@U..>` mentions we wrote ourselves; only `&` needs escaping there."""
    return text.replace("&", "&amp;")


def _qualifiers(pr: int | None, dry_run: bool) -> str:
    return (f" for PR #{pr}" if pr else "") + (" (dry run)" if dry_run else "")


def _check_line(check: CheckResult, redactor: Redactor) -> str:
    # Redact the whole detail first, then shorten: see the module docstring.
    detail = " ".join(redactor.redact(check.detail).split())
    limit = DETAIL_CHARS[check.status]
    if len(detail) > limit:
        detail = detail[: limit - 1] + "…"
    name = escape(redactor.redact(check.name))
    status = f"*{check.status}* " if check.status != Status.PASS else ""
    return f"{STATUS_ICON[check.status]} {status}`{name}`" + (f": {_user_mentions(escape(detail))}" if detail else "")


_ESCAPED_USER = re.compile(r"&lt;@([UW][A-Z0-9]{2,20})&gt;")


def _user_mentions(escaped: str) -> str:
    """Who approved or confirmed reads as a name: a plain user mention (`<@U..>`) is the one piece
    of mrkdwn let back in. Links, `<!channel>` and group pings stay escaped."""
    return _ESCAPED_USER.sub(r"<@\1>", escaped)


def _check_blocks(
    checks: Sequence[CheckResult], *, reserve: int, redactor: Redactor = REDACTOR
) -> list[dict[str, Any]]:
    """Check lines packed into sections within every budget; what does not fit becomes one note."""
    max_sections = MAX_BLOCKS - reserve - 1  # one block kept for the "more checks" note
    sections: list[str] = []
    current: list[str] = []
    used = 0
    shown = 0
    for check in checks:
        line = _check_line(check, redactor)
        size = len(line) + 1
        if used + size > TOTAL_BUDGET:
            break
        if current and sum(len(x) + 1 for x in current) + size > SECTION_BUDGET:
            if len(sections) + 1 >= max_sections:
                break
            sections.append("\n".join(current))
            current = []
        current.append(line)
        used += size
        shown += 1
    if current:
        sections.append("\n".join(current))
    blocks = [_section(text) for text in sections]
    hidden = len(checks) - shown
    if hidden:
        blocks.append(_context(f"… {hidden} more check{'s' if hidden != 1 else ''}, see the evidence"))
    return blocks


def _evidence_line(evidence: EvidenceResult, redactor: Redactor = REDACTOR) -> str:
    words = EVIDENCE_WORDS.get(evidence.state, evidence.state)
    detail = escape(redactor.redact(evidence.detail))  # before escaping can disguise a value
    if evidence.url:
        return f"{EVIDENCE_ICON.get(evidence.state, '')} <{evidence.url}|{words}>: {detail}"
    return f"{EVIDENCE_ICON.get(evidence.state, '')} {words}: {detail}"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in texts]}


def _final(text: str, blocks: list[dict[str, Any]], redactor: Redactor = REDACTOR) -> Rendered:
    """The last step of every rendering: redact, then make sure the limits still hold."""
    blocks = redactor.redact_obj(blocks)[:MAX_BLOCKS]
    for block in blocks:
        inner = block.get("text")
        if isinstance(inner, dict) and len(inner.get("text", "")) > MAX_SECTION_CHARS:
            # Only reachable if redaction markers grew a section past the limit; cutting removes, never reveals.
            inner["text"] = inner["text"][: MAX_SECTION_CHARS - 1] + "…"
    return Rendered(text=redactor.redact(text)[:3000], blocks=blocks)
