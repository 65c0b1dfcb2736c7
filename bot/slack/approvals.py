"""Manager approvals in the cutover channel: one approval message per request, edited in place.

`/canary prod` in an env whose `approval_required` names it: the ack says the run waits for an
approval; in the background the gate runs (every rule but the approval), the approval is created in
the store bound to the env, the command, its parameters, the PR's head commit and the evidence it
rests on, and ONE message is posted: what will change, the evidence, the head commit, who asked, when
it expires, with Approve and Reject buttons whose value is only the approval id.

A click is acked at once and handled on this module's executor: the clicker must be a configured
approver other than the requester (commands.access.AccessPolicy.may_approve, groups via the app's
cache); the approval must be this message's (channel and ts), still pending, not expired, and its
binding unchanged (a new commit on the PR or newer evidence voids it). The decision is a conditional
write in the store (two approvers at once: one decision, the other hears who decided). Every click,
refused ones included, leaves an audit record; refusals are ephemeral and change nothing. An approved
request is queued like a slash command, carrying the approval id: `execute` checks it again and
consumes it once. A sweeper edits expired (and voided) requests in place; a click finds them too.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Protocol

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.slack.blocks import Rendered, escape, notice_blocks
from commands.access import AccessPolicy, who
from commands.approvals import (
    EXPIRED,
    Binding,
    BindingUnknown,
    HeadLookup,
    binding_for,
    current_binding,
    evidence_words,
    find_basis,
    head_lookup_from,
    needs_approval,
    params_of,
    what_changes,
    why_void,
)
from commands.config import ConfigError, CutoverConfig, Tokens
from commands.execute import Publisher, store_for
from commands.gate import Refused, admit
from commands.redaction import REDACTOR
from commands.registry import UsageError, title
from commands.request import RunRequest
from commands.state import (
    AlreadyDecided,
    Approval,
    ApprovalError,
    ApprovalExpired,
    ApprovalRequest,
    ApprovalStatus,
    ApprovalVoided,
    StateError,
    StateStore,
)
from commands.state.model import utc_now
from integrations.github import GitHubEvidence

log = logging.getLogger(__name__)

APPROVE_ACTION = "cutover_approval_approve"
REJECT_ACTION = "cutover_approval_reject"
APPROVAL_ID = re.compile(r"^ap-[0-9a-f]{16}$")
SWEEP_INTERVAL_S = 15.0  # how often expired requests are edited to say so (shorter for short TTLs)
SWEEP_LOOKBACK = timedelta(days=1)  # requests that expired this recently are still edited
GITHUB_TIMEOUT_S = 5.0
LOCK_STRIPES = 64


class ApprovalHost(Protocol):
    """What the flow needs from the Slack app (bot.slack.app.CutoverBot)."""

    config: CutoverConfig
    client: WebClient
    access: AccessPolicy

    def publisher(self) -> Publisher | None: ...

    def submit_approved(self, request: RunRequest, channel: str) -> str | None:
        """Queue an approved run like a slash command; None, or why it could not be queued."""
        ...


def new_approval_id() -> str:
    return f"ap-{secrets.token_hex(8)}"


def register(app: App, host: ApprovalHost, **options: Any) -> ApprovalFlow:
    """The approval buttons' listeners on `app`; returns the flow. Its expiry sweeper starts with the
    first request or click in this process (an app that never asks never opens the store)."""
    flow = ApprovalFlow(host, **options)
    app.action(APPROVE_ACTION)(flow.on_click)
    app.action(REJECT_ACTION)(flow.on_click)
    return flow


class ApprovalFlow:
    def __init__(
        self,
        host: ApprovalHost,
        *,
        store: StateStore | None = None,
        head_lookup: HeadLookup | None = None,
        sweep_interval_s: float | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.host = host
        self._store = store
        self._head_lookup = head_lookup
        self._github: GitHubEvidence | None = None
        self._clock = clock
        self.sweep_interval_s = sweep_interval_s or _sweep_interval(host.config)
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cutover-approval")
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._locks_guard = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # --- the pieces ---------------------------------------------------------------------
    @property
    def config(self) -> CutoverConfig:
        return self.host.config

    def store(self) -> StateStore:
        return self._store or store_for(self.config)

    def head_lookup(self) -> HeadLookup | None:
        """The PR head lookup: injected, else the app's evidence publisher's GitHub, else GitHub from the
        environment (GITHUB_TOKEN, GITHUB_API_URL and the map's repository); None without GitHub."""
        if self._head_lookup is not None:
            return self._head_lookup
        found = head_lookup_from(self.host.publisher())
        if found is not None:
            return found
        tokens = Tokens()
        repo = self.config.github.repository()
        if not tokens.github_token or not repo:
            return None
        if self._github is None:
            self._github = GitHubEvidence(
                repo=repo, token=tokens.github_token, base_url=tokens.github_api_url, timeout_s=GITHUB_TIMEOUT_S
            )
        github = self._github
        return lambda pr: github.pr_head(pr).sha

    def wanted(self, request: RunRequest) -> bool:
        """Whether a slash command should start the approval flow rather than run or be refused."""
        return (
            not request.dry_run
            and request.approval_id is None
            and needs_approval(self.config, request.env, request.command)
        )

    def close(self) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self._github is not None:
            self._github.close()

    # --- asking -------------------------------------------------------------------------
    def start(self, ack: Ack, request: RunRequest, *, channel: str) -> None:
        """On the request thread: ack in the channel, then ask for the approval in the background."""
        name = f"{title(request.command)} {request.env}"
        ack(
            text=REDACTOR.redact(
                f"{name} needs a manager's approval: waiting for approval (the request follows in this channel; "
                "the run starts once an approver approves it)"
            ),
            response_type="in_channel",
        )
        self.executor.submit(self._guarded, self.ask, request, channel)

    def ask(self, request: RunRequest, channel: str) -> Approval | None:
        """Check every other rule, create the approval bound to what is shown, post its one message."""
        self.start_sweeper()
        store = self.store()
        name = f"{title(request.command)} {request.env}"
        lookup = self.head_lookup()
        try:
            gate = admit(
                request,
                self.config,
                authorizer=self.host.access,
                store=store,
                head_lookup=lookup,
                approval_flow=True,
            )
            request = gate.request
            binding = binding_for(request, store, lookup)
        except (Refused, UsageError, ConfigError, BindingUnknown, StateError) as exc:
            self._post(channel, notice_blocks(f"{name} was not sent for approval: {escape(str(exc))} Nothing was run."))
            return None
        now = self._clock()
        approval_id = new_approval_id()
        with self._lock(approval_id):  # a click waits until the message's ts is recorded
            return self._create_and_post(store, request, binding, approval_id, channel, now)

    def _create_and_post(
        self, store: StateStore, request: RunRequest, binding: Binding, approval_id: str, channel: str, now: datetime
    ) -> Approval | None:
        name = f"{title(request.command)} {request.env}"
        env = self.config.env(request.env)
        try:
            approval = store.create_approval(
                ApprovalRequest(
                    approval_id=approval_id,
                    env=request.env,
                    command=request.command,
                    params=params_of(request),
                    head_sha=binding.head_sha,
                    evidence_sha256=binding.evidence_sha256,
                    requested_by=request.requested_by,
                    expires_at=now + timedelta(minutes=env.approval_ttl_minutes),
                    channel=channel,
                ),
                now=now,
            )
        except StateError as exc:
            self._post(channel, notice_blocks(f"{name}: the approval could not be recorded ({escape(str(exc))}). "))
            return None
        self._supersede(store, approval)
        ts = self._post(channel, self.render(approval))
        if ts is None:
            self._void(store, approval, "the approval message could not be posted in Slack", actor="cutover-bot")
            return None
        try:
            store.set_approval_message(approval_id, channel, ts)
        except StateError:
            log.exception("recording the message of approval %s failed", approval_id)
            self._void(store, approval, "its Slack message could not be recorded", actor="cutover-bot")
            self.refresh(approval_id, channel=channel, ts=ts)
            return None
        return store.get_approval(approval_id)

    def _supersede(self, store: StateStore, approval: Approval) -> None:
        """An older pending request for the same env and command is void: one open request at a time."""
        try:
            older = [
                a
                for a in store.pending_approvals(approval.env)
                if a.command == approval.command and a.approval_id != approval.approval_id
            ]
        except StateError:
            log.exception("listing pending approvals failed")
            return
        for a in older:
            if self._void(store, a, f"superseded by a newer request ({approval.approval_id})", actor="cutover-bot"):
                self.refresh(a.approval_id)

    # --- clicks -------------------------------------------------------------------------
    def on_click(self, ack: Ack, body: dict[str, Any]) -> None:
        """Bolt's listener: ack at once (Slack does not retry interactivity), decide in the background."""
        ack()
        self.executor.submit(self._guarded, self.click, body)

    def click(self, body: dict[str, Any]) -> str:
        """Handle one button click; returns what happened (for logs and tests)."""
        user = _get(body, "user", "id")
        channel = _get(body, "channel", "id") or _get(body, "container", "channel_id")
        message_ts = _get(body, "message", "ts") or _get(body, "container", "message_ts")
        actions = body.get("actions") if isinstance(body.get("actions"), list) else []
        action = actions[0] if actions and isinstance(actions[0], dict) else {}
        action_id, value = action.get("action_id"), action.get("value")
        if not isinstance(user, str) or not isinstance(channel, str) or not user or not channel:
            log.warning("an approval click without a user or channel was ignored")
            return "malformed"
        if action_id not in (APPROVE_ACTION, REJECT_ACTION) or not isinstance(value, str):
            self._tell(channel, user, "That click did not carry a cutover approval: nothing was changed.")
            return "malformed"
        if not APPROVAL_ID.match(value):
            self._tell(channel, user, "That button does not name a cutover approval: nothing was changed.")
            return "malformed"
        self.start_sweeper()
        with self._lock(value):  # one click at a time per approval in this process; the store decides across
            return self._click(self.store(), value, user, channel, message_ts, action_id)

    def _click(self, store: StateStore, value: str, user: str, channel: str, message_ts: Any, action_id: str) -> str:
        try:
            approval = store.get_approval(value)
        except StateError as exc:
            self._tell(channel, user, f"The approval cannot be read just now ({exc}): nothing was changed. Try again.")
            return "store"
        if approval is None:
            self._tell(channel, user, f"There is no approval `{value}`: nothing was changed.")
            return "unknown"
        if approval.channel != channel or approval.message_ts != message_ts:
            self._tell(
                channel,
                user,
                f"That button is not on the cutover bot's message for approval `{value}`: nothing was changed.",
            )
            return "foreign"
        verb = "approve" if action_id == APPROVE_ACTION else "reject"
        return self._decide(store, approval, user, channel, verb)

    def _decide(self, store: StateStore, approval: Approval, user: str, channel: str, verb: str) -> str:
        aid, env, command = approval.approval_id, approval.env, approval.command
        access = self.host.access.may_approve(user, env, command, requester=approval.requested_by)
        if not access.allowed:
            message = access.message
            if user == approval.requested_by:
                message += f" Who may decide: {who(self.config.env(env).approvers)}."
            self._audit_refused(store, approval, user, f"{verb} refused: {_plain(message)}")
            self._tell(channel, user, message + " Nothing was changed.")
            return "refused"
        now = self._clock()
        if approval.status == ApprovalStatus.PENDING and not approval.expired(now) and verb == "approve":
            try:
                binding = current_binding(
                    env=env, command=command, params=approval.params, store=store, head_lookup=self.head_lookup()
                )
                void = why_void(store, approval, binding)
            except (BindingUnknown, StateError) as exc:
                self._audit_refused(store, approval, user, f"approve refused: the binding cannot be checked ({exc})")
                self._tell(channel, user, f"Approval `{aid}` cannot be checked just now ({exc}): nothing was changed.")
                return "unknown-binding"
            if void:
                self._audit_refused(store, approval, user, f"approve refused: the approval is void: {void}")
                self._void(store, approval, void, actor=user)
                self.refresh(aid)
                self._tell(channel, user, f"Approval `{aid}` is void: {void}. Nothing runs; ask for a new approval.")
                return "void"
        try:
            decided = store.decide(aid, user, "approved" if verb == "approve" else "rejected", now, surface="slack")
        except AlreadyDecided as exc:
            when = f" at {exc.at:%H:%M:%S} UTC" if exc.at else ""
            self._tell(channel, user, f"Approval `{aid}` was already {exc.decision} by <@{exc.by}>{when}.")
            return "already"
        except ApprovalExpired as exc:
            self._expire(store, approval, exc.expires_at)
            self._tell(channel, user, f"Approval `{aid}` expired at {exc.expires_at:%H:%M:%S} UTC: nothing runs.")
            return "expired"
        except ApprovalVoided as exc:
            reason = exc.reason or "no reason given"
            if reason.startswith(EXPIRED):
                self._tell(channel, user, f"Approval `{aid}` {reason}: nothing runs. Nothing was changed.")
                return "expired"
            self._tell(channel, user, f"Approval `{aid}` is void ({reason}): nothing was changed.")
            return "void"
        except ApprovalError as exc:
            self._tell(channel, user, f"{exc}. Nothing was changed.")
            return "refused"
        except StateError as exc:
            self._tell(channel, user, f"The decision could not be recorded ({exc}): nothing was changed. Try again.")
            return "store"
        self.refresh(aid)
        if decided.status != ApprovalStatus.APPROVED:
            return "rejected"
        request = RunRequest(
            command=command,
            env=env,
            requested_by=decided.requested_by,
            pr=decided.params.get("pr"),
            surface="slack",
            approval_id=aid,
        )
        problem = self.host.submit_approved(request, decided.channel or channel)
        if problem:
            self._post(
                decided.channel or channel,
                notice_blocks(f"{title(command)} {env} was approved but did not start: {escape(problem)}"),
            )
            return "not-queued"
        return "approved"

    def run_refused(self, approval_id: str, reason: str) -> None:
        """The run an approval started was refused before it began (a lock held, a rule that changed): the
        approval was for that run, so it is void, and its message says why instead of "the run was queued"."""
        try:
            store = self.store()
            approval = store.get_approval(approval_id)
        except StateError:
            log.exception("reading approval %s failed", approval_id)
            return
        if approval is None or approval.status != ApprovalStatus.APPROVED or approval.used_by_run:
            return
        with self._lock(approval_id):
            if self._void(store, approval, f"the run it approved did not start ({reason})", actor="cutover-bot"):
                self.refresh(approval_id)

    # --- expiry -------------------------------------------------------------------------
    def start_sweeper(self) -> None:
        with self._locks_guard:
            if self._sweeper is not None or self._stop.is_set():
                return
            self._sweeper = threading.Thread(target=self._sweep_loop, name="approval-sweeper", daemon=True)
            self._sweeper.start()

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.sweep_interval_s):
            try:
                self.sweep()
            except Exception:  # a sweep that fails is tried again at the next tick
                log.exception("the approval sweep failed")

    def sweep(self) -> int:
        """Edit requests nobody decided in time to say "expired", and void those a newer failing
        preflight undid; returns how many changed."""
        store = self.store()
        now = self._clock()
        changed = 0
        for env in self.config.envs:
            for approval in store.pending_approvals(env, now=now - SWEEP_LOOKBACK):
                with self._lock(approval.approval_id):
                    if approval.expired(now):
                        changed += self._expire(store, approval, approval.expires_at)
                        continue
                    void = why_void(store, approval, None)
                    if void and self._void(store, approval, void, actor="cutover-bot"):
                        self.refresh(approval.approval_id)
                        changed += 1
        return changed

    def _expire(self, store: StateStore, approval: Approval, at: datetime) -> int:
        reason = f"{EXPIRED} at {at:%H:%M:%S} UTC: nobody decided in time"
        if self._void(store, approval, reason, actor="cutover-bot"):
            self.refresh(approval.approval_id)
            return 1
        return 0

    # --- the message --------------------------------------------------------------------
    def refresh(self, approval_id: str, *, channel: str | None = None, ts: str | None = None) -> None:
        """Edit the approval's one message to show the record as it is now (read afresh)."""
        try:
            approval = self.store().get_approval(approval_id)
        except StateError:
            log.exception("reading approval %s failed", approval_id)
            return
        if approval is None:
            return
        channel, ts = approval.channel or channel, approval.message_ts or ts
        if not channel or not ts:
            return
        rendered = self.render(approval)
        try:
            self.host.client.chat_update(channel=channel, ts=ts, **rendered.as_kwargs())
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("editing the message of approval %s failed: %s", approval_id, exc.__class__.__name__)

    def render(self, approval: Approval) -> Rendered:
        return approval_blocks(approval, config=self.config, store=self.store(), now=self._clock())

    # --- small helpers ------------------------------------------------------------------
    def _post(self, channel: str, rendered: Rendered) -> str | None:
        try:
            response = self.host.client.chat_postMessage(channel=channel, **rendered.as_kwargs())
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("posting in %s failed: %s", channel, exc.__class__.__name__)
            return None
        ts = response.get("ts")
        return ts if isinstance(ts, str) else None

    def _tell(self, channel: str, user: str, text: str) -> None:
        try:
            self.host.client.chat_postEphemeral(channel=channel, user=user, text=REDACTOR.redact(text))
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("an ephemeral reply to %s failed: %s", user, exc.__class__.__name__)

    def _void(self, store: StateStore, approval: Approval, reason: str, *, actor: str) -> bool:
        try:
            voided = store.void(approval.approval_id, reason, actor=actor)
        except StateError as exc:
            log.warning("voiding approval %s was refused: %s", approval.approval_id, exc)
            return False
        return voided.void_reason == reason

    def _audit_refused(self, store: StateStore, approval: Approval, user: str, detail: str) -> None:
        try:
            store.audit(
                approval.env, user, "approval.refused", "slack", detail=f"approval {approval.approval_id} {detail}"
            )
        except StateError:
            log.exception("auditing a refused click on approval %s failed", approval.approval_id)

    def _lock(self, approval_id: str) -> threading.Lock:
        """The lock of an approval id in this process (striped: bounded however many ids are seen)."""
        return self._locks[hash(approval_id) % LOCK_STRIPES]

    @staticmethod
    def _guarded(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("the approval flow failed")


# --- rendering ---------------------------------------------------------------------------


def approval_blocks(approval: Approval, *, config: CutoverConfig, store: StateStore, now: datetime) -> Rendered:
    """The one approval message: what will change, the evidence, the head, who asked, when it expires;
    the buttons while it is open, else the decision (approved by, rejected by, expired, void because)."""
    command, env = approval.command, approval.env
    pr = approval.params.get("pr")
    head = f"`/{command} {env}`" + (f" for PR #{pr}" if pr else "")
    try:
        basis = find_basis(store, approval)
    except StateError:
        basis = None
    evidence = escape(evidence_words(basis, command))
    if basis is not None and basis.evidence_url:
        evidence += f" · <{basis.evidence_url}|evidence>"
    elif approval.evidence_sha256 and basis is None:
        evidence = f"evidence sha256 `{approval.evidence_sha256[:12]}…`"
    if pr:
        commit = f"PR #{pr} at `{approval.head_sha[:7]}`" if approval.head_sha else f"PR #{pr} (head unknown)"
    else:
        commit = "no PR named"
    try:
        approvers = who(config.env(env).approvers)
        changes = escape(what_changes(config, env, command))
    except ConfigError:
        approvers, changes = "nobody", escape(f"/{command} on {env}, an environment this map no longer has")
    lines = [
        f"*What will change:* {changes}",
        f"*Evidence:* {evidence}",
        f"*Head commit:* {commit}",
        f"*Requested by* <@{approval.requested_by}> at {approval.created_at:%H:%M:%S} UTC · "
        f"*expires* {approval.expires_at:%H:%M:%S} UTC · approval `{approval.approval_id}`",
    ]
    state, icon, actions = _state(approval, now)
    blocks: list[dict[str, Any]] = [
        _section(f"{icon} *Approval {'requested' if actions else 'request'}: {head}*"),
        _section("\n".join(lines)),
        _section(state),
    ]
    if actions:
        blocks.append(_buttons(approval.approval_id))
        blocks.append(_context(f"Only an approver other than the requester may decide: {approvers}."))
    text = f"Approval for /{command} {env}: {_plain(state)}"
    return Rendered(text=REDACTOR.redact(text)[:3000], blocks=REDACTOR.redact_obj(blocks))


def _state(approval: Approval, now: datetime) -> tuple[str, str, bool]:
    """(the decision line, the icon, whether the buttons show)."""
    again = f"run `/{approval.command} {approval.env}` again to ask again"
    if approval.status == ApprovalStatus.APPROVED:
        at = f"{approval.decided_at:%H:%M:%S} UTC" if approval.decided_at else "?"
        used = (
            f": used by run `{approval.used_by_run}`"
            if approval.used_by_run
            else ": the run was queued (its own message follows)"
        )
        return f"✅ *Approved by <@{approval.decided_by}> at {at}*{used}", "✅", False
    if approval.status == ApprovalStatus.REJECTED:
        at = f"{approval.decided_at:%H:%M:%S} UTC" if approval.decided_at else "?"
        return f"❌ *Rejected by <@{approval.decided_by}> at {at}*: nothing runs.", "❌", False
    if approval.status == ApprovalStatus.VOID:
        reason = approval.void_reason or "no reason given"
        if reason.startswith(EXPIRED):
            return f"⌛ *Expired* {escape(reason.removeprefix(EXPIRED).strip())}: nothing runs; {again}.", "⌛", False
        return f"🚫 *Void because {escape(reason)}*: nothing runs; {again}.", "🚫", False
    if approval.expired(now):
        return f"⌛ *Expired* at {approval.expires_at:%H:%M:%S} UTC: nobody decided; {again}.", "⌛", False
    return f"⏳ *Waiting for a decision* until {approval.expires_at:%H:%M:%S} UTC.", "🔐", True


def _buttons(approval_id: str) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": f"approval:{approval_id}",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": approval_id,
            },
            {
                "type": "button",
                "action_id": REJECT_ACTION,
                "text": {"type": "plain_text", "text": "Reject"},
                "style": "danger",
                "value": approval_id,
            },
        ],
    }


def _section(text: str) -> dict[str, Any]:
    # Our own mrkdwn: the pieces that are not ours were escaped where they were put in.
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _plain(text: str) -> str:
    """mrkdwn to a plain line for audit details and notification text."""
    return re.sub(r"[*`]", "", text)


def _get(body: dict[str, Any], *keys: str) -> Any:
    value: Any = body
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _sweep_interval(config: CutoverConfig) -> float:
    """Often enough that an expiry shows within a quarter of the shortest TTL; at most SWEEP_INTERVAL_S."""
    shortest = min((env.approval_ttl_minutes for env in config.envs.values()), default=30.0) * 60
    return max(0.25, min(SWEEP_INTERVAL_S, shortest / 4))
