"""/canary: with outbound off, one internal test ticket, proven processed with no customer contacted.

Steps, in order, each one check in the report, reported live (commands/run_context.py's Steps):

- `outbound_off`: the outbound lever read now (with its version): false, or the canary stops.
- `http_target`: Richpanel's HTTP target is the approved one (`richpanel_http_target`): the worker's
  function URL read from AWS and the SHA-256 of the webhook token secret are compared automatically;
  Richpanel has no API for its HTTP targets, so a person confirms its UI shows the same URL.
- `rule_enabled`: the requester enables the Order Status rule in Richpanel and confirms it (a button in
  Slack, `--confirm rule-enabled` on the CLI), within `canary.confirm_timeout_minutes`.
- `test_ticket`: exactly one ticket, from `internal_test_address`, with the run id in its subject: the
  only Richpanel write the bot ever makes (the client refuses any other, and any other sender).
- `processed`: the worker's `canary.processed_marker` line for that ticket, waited for (bounded by
  `canary.timeout_minutes`, a progress line as it waits).
- `no_customer_contact`: no `canary.outbound_marker` line for the ticket in a Logs Insights query over
  the canary's window that also finds the processed line (its positive control; only a `Complete`
  query counts), no public reply by the bot agent on the ticket in Richpanel, and the lever still off.

Any customer contact seen makes the canary FAIL and rolls back at once (commands/rollback.py's steps are
appended to the report). The ticket id appears only hashed; log excerpts have their identifiers redacted.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from commands.checks import Skip, Verdict, failed, passed, warned
from commands.config import CutoverConfig, EnvConfig
from commands.lever import aws_for, describe_lever, read_lever, reading_data
from commands.redaction import REDACTOR, clip
from commands.report import PASSING, CheckResult, Report, Status, new_run_id, utc_now
from commands.request import RunRequest
from commands.run_context import RunContext, Steps
from commands.state import Confirmation
from integrations.aws import Aws, InsightsResult, TicketEvent
from integrations.errors import UpstreamError
from integrations.richpanel import RichpanelClient
from integrations.worker_log import ticket_event_form

log = logging.getLogger(__name__)

STEPS = ("outbound_off", "http_target", "rule_enabled", "test_ticket", "processed", "no_customer_contact")
HTTP_TARGET, RULE_ENABLED = "http-target", "rule-enabled"  # the person-steps, as `--confirm` names them
INSIGHTS_LIMIT = 10_000  # Logs Insights' maximum: a result this long may have left lines out
WINDOW_SKEW = timedelta(seconds=60)  # the canary's log window opens this much before the ticket (clock skew)
EXCERPT_CHARS = 300
_WORD = re.compile(r"[\w.:-]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
CONFIRM_REASK_S = 2.0  # a person-step's live line (and its button) is sent again this often while waiting
# The gate reads the lever while a Slack command waits for its ack (3 s): one quick try.
PRECONDITION_TIMEOUT_S = 1.0


# --- the gate's precondition: the lever is off now ------------------------------------------------


def lever_is_off(ctx: Any) -> str | None:
    """The gate's precondition (ctx: commands.gate.GateContext): the outbound lever read now is false.

    Not the preflight's reading: the lever may have changed since. Unreadable or absent refuses too.
    """
    env: EnvConfig = ctx.env
    name = ctx.request.env
    aws = Aws(
        region=ctx.request.aws_region or env.aws_region,
        connect_timeout_s=PRECONDITION_TIMEOUT_S,
        read_timeout_s=PRECONDITION_TIMEOUT_S,
        max_attempts=1,
    )
    try:
        reading = read_lever(aws, env)
    except UpstreamError as exc:
        return f"cannot read the outbound lever ({describe_lever(env)}): {exc}; the canary needs it off"
    if reading.value is None:
        return (
            f"cannot read the outbound lever: {describe_lever(env)} does not exist; create it with the value "
            f"false, then /canary {name}"
        )
    if reading.value:
        return f"outbound is ON for {name} ({describe_lever(env)} = true): /rollback {name} first"
    return None


# --- the run -----------------------------------------------------------------------------------------


def run_canary(run: RunContext) -> Report:
    canary = Canary(run)
    steps = Steps(run)
    try:
        stopped: str | None = None
        for name, step in (
            ("outbound_off", canary.outbound_off),
            ("http_target", canary.http_target),
            ("rule_enabled", canary.rule_enabled),
            ("test_ticket", canary.test_ticket),
        ):
            if stopped:
                steps.skip(name, stopped)
                continue
            result = steps.run(name, step)
            if result.status not in PASSING:
                stopped = f"not run: `{name}` did not pass, the canary stopped there"
        if canary.ticket_id is None:
            for name in ("processed", "no_customer_contact"):
                steps.skip(name, stopped or "not run: no test ticket was created")
        else:
            # Once a ticket exists, both run whatever happened: a contact must be looked for even when
            # the processed line never came (the Richpanel half of the proof does not need the logs).
            steps.run("processed", canary.processed)
            steps.run("no_customer_contact", canary.no_customer_contact)
            if canary.rollback_reason:
                _roll_back(run, steps, reason=canary.rollback_reason)
    finally:
        canary.close()
    return steps.report()


def _roll_back(run: RunContext, steps: Steps, *, reason: str) -> None:
    try:
        from commands.rollback import roll_back  # only on a contact: the canary never needs it otherwise

        roll_back(run, steps, reason=reason)
    except Exception as exc:  # never a traceback instead of the verdict: say what to do now
        log.exception("the canary's automatic rollback failed")
        why = f"the automatic rollback could not run ({exc.__class__.__name__}): run /rollback {run.request.env} now"
        steps.skip("rollback", why)


@dataclass
class Proof:
    """The no-contact proof as it is gathered: what it shows, what it could not show."""

    data: dict[str, Any]
    contacts: list[str] = field(default_factory=list)  # a customer was contacted: FAIL and roll back
    dangers: list[str] = field(default_factory=list)  # one may be (the lever is on): FAIL and roll back
    unknown: list[str] = field(default_factory=list)  # a part that could not be proven: FAIL


@dataclass
class Canary:
    """One canary's state across its steps: the AWS client, the secrets it read, the ticket."""

    run: RunContext
    aws: Aws = field(init=False)
    ticket_id: str | None = None
    ticket_created_at: datetime | None = None
    processed_event: TicketEvent | None = None
    rollback_reason: str | None = None  # set when a customer was contacted (or outbound was turned on)
    _secrets: dict[str, str] = field(default_factory=dict)
    _richpanel: RichpanelClient | None = None

    def __post_init__(self) -> None:
        self.aws = aws_for(self.env, region=self.run.request.aws_region)

    @property
    def env(self) -> EnvConfig:
        return self.run.env

    @property
    def name(self) -> str:
        return self.run.request.env

    def close(self) -> None:
        if self._richpanel is not None:
            self._richpanel.close()

    # --- shared reads --------------------------------------------------------------------------
    def secret(self, name: str) -> str:
        """A secret's value, registered with the redactor before anything else sees it."""
        if name not in self._secrets:
            secret_id = self.env.secrets.get(name)
            if not secret_id:
                raise Skip(f"the map names no `{name}` secret")
            value = self.aws.secret_value(secret_id)
            try:
                REDACTOR.register(name, value)
            except ValueError as exc:  # too short to hide: never let it near a report
                raise UpstreamError("aws", f"get_secret_value {secret_id}", str(exc)) from None
            self._secrets[name] = value
        return self._secrets[name]

    def richpanel(self) -> RichpanelClient:
        if self._richpanel is None:
            self._richpanel = RichpanelClient(
                base_url=self.env.endpoints.richpanel,
                api_key=self.secret("richpanel_api_key"),
                key_source=f"secret {self.env.secrets['richpanel_api_key']} (richpanel_api_key)",
                timeout_s=self.env.http_timeout_s,
                internal_test_address=self.env.internal_test_address,
            )
        return self._richpanel

    def confirm(self, step: str, check: str, prompt: str) -> Confirmation | None:
        """A person's confirmation of `step`: recorded before the run (CLI `--confirm`), or awaited
        (the live line of `check` carries the button meanwhile)."""
        timeout_s = self.env.canary.confirm_timeout_minutes * 60
        if self.run.request.surface == "cli":  # no button there: only an up-front --confirm can come
            return self.run.confirmation(step)
        # Asked again every few seconds with the time left: a surface that drops a live edit (Slack
        # edits at most once a second) still shows the button, and the person sees the deadline.
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.run.preempted():
                return self.run.confirmation(step)
            asked = f"{prompt} (waiting {left:.0f} s more)"
            found = self.run.wait_for_confirmation(step, asked, min(left, CONFIRM_REASK_S), check=check)
            if found is not None:
                return found

    def not_confirmed(self, step: str) -> str:
        if self.run.request.surface == "cli":
            return f"not confirmed: do it, then run the canary again with `--confirm {step}`"
        minutes = self.env.canary.confirm_timeout_minutes
        return f"nobody confirmed `{step}` within {minutes:g} min (canary.confirm_timeout_minutes)"

    # --- the steps ---------------------------------------------------------------------------------
    def outbound_off(self) -> Verdict:
        reading = read_lever(self.aws, self.env)
        data = {"lever": reading_data(reading)}
        where = describe_lever(self.env)
        if reading.value is None:
            return failed(f"{where} does not exist: cannot tell that outbound is off", **data)
        if reading.value:
            return failed(f"outbound is ON ({where} = true): /rollback {self.name} first", **data)
        return passed(f"outbound is off ({where} = false, version {reading.version})", **data)

    def http_target(self) -> Verdict:
        approved = self.env.richpanel_http_target
        if approved is None:
            return failed(
                f"no approved Richpanel HTTP target in the map: add [envs.{self.name}.richpanel_http_target] "
                "with `url` and `auth_header_sha256` (reviewed in the pull request)"
            )
        function_url = self.aws.function_url(self.env.worker_function)
        token_sha = hashlib.sha256(self.secret("richpanel_webhook_token").encode()).hexdigest()
        data: dict[str, Any] = {
            "approved_url": approved.url,
            "worker_function_url": function_url,
            "approved_auth_sha256_prefix": approved.auth_header_sha256[:12],
            "webhook_token_sha256_prefix": token_sha[:12],
        }
        problems = []
        if function_url is not None and not _same_endpoint(approved.url, function_url):
            problems.append(
                f"the approved URL {approved.url} is not the worker's function URL {function_url} "
                f"({self.env.worker_function})"
            )
        if token_sha != approved.auth_header_sha256:
            problems.append(
                f"the webhook token ({self.env.secrets['richpanel_webhook_token']}) does not hash to the approved "
                "auth_header_sha256: the token was rotated, or the map approves another one"
            )
        if problems:
            return failed("; ".join(problems) + ": fix the map or the deployment before the canary", **data)
        confirmation = self.confirm(
            HTTP_TARGET,
            "http_target",
            f"open the Order Status rule's HTTP target in Richpanel and check that its URL is {approved.url}; "
            "press Done if it is",
        )
        if confirmation is None:
            return failed(f"{self.not_confirmed(HTTP_TARGET)} that Richpanel shows {approved.url}", **data)
        data |= _confirmation_data(confirmation)
        self.run.audit(
            "canary.http_target", f"Richpanel shows {approved.url}: confirmed", actor=confirmation.confirmed_by
        )
        url_part = (
            "the approved URL is the worker's function URL"
            if function_url is not None
            else f"the worker has no function URL, so the bot could not check that {approved.url} reaches "
            f"{self.env.worker_function}: only the person's check covers it"
        )
        detail = (
            f"{url_part}; the webhook token matches the approved hash; {_who(confirmation)} confirmed that "
            f"Richpanel shows {approved.url}"
        )
        return (passed if function_url is not None else warned)(detail, **data)

    def rule_enabled(self) -> Verdict:
        confirmation = self.confirm(
            RULE_ENABLED,
            "rule_enabled",
            "enable the Order Status automation rule in Richpanel (Settings > Automation), then press Done; "
            "the canary then sends one internal test ticket",
        )
        if confirmation is None:
            return failed(
                f"{self.not_confirmed(RULE_ENABLED)}: the canary stops here, no ticket was sent",
                awaiting_timed_out=RULE_ENABLED,
            )
        self.run.audit(
            "canary.rule_enabled", f"confirmed by {confirmation.confirmed_by}", actor=confirmation.confirmed_by
        )
        return passed(
            f"{_who(confirmation)} confirmed the rule is enabled in Richpanel (proven by its effect: `processed`)",
            **_confirmation_data(confirmation),
        )

    def test_ticket(self) -> Verdict:
        client = self.richpanel()
        subject = f"Cutover canary {self.run.run_id} ({self.name}): internal test, no reply expected"
        body = (
            f"Internal test ticket of the cutover bot, run {self.run.run_id}, to check the Order Status "
            "automation with outbound messages off. Nobody needs to act on it."
        )
        started = utc_now()
        ticket_id = client.create_ticket(from_email=self.env.internal_test_address, subject=subject, body=body)
        self.ticket_id, self.ticket_created_at = ticket_id, started
        self.run.audit("canary.ticket", f"one test ticket created ({_hashed(ticket_id)})")
        return passed(
            f"one ticket created from the internal test address (internal_test_address), the run id in its subject: "
            f"ticket {_hashed(ticket_id)}",
            ticket=_hashed(ticket_id),
            created_at=started.isoformat(),
            subject=subject,
        )

    def processed(self) -> Verdict:
        assert self.ticket_id is not None and self.ticket_created_at is not None
        marker = self.env.canary.processed_marker
        timeout_s = self.env.canary.timeout_minutes * 60
        poll_s = min(2.0, max(0.25, timeout_s / 30))
        started = time.monotonic()
        polls, calls = 0, []
        event: TicketEvent | None = None
        while True:
            try:
                event = self.aws.find_ticket_event(
                    self.env.worker_log_group,
                    marker,
                    self.ticket_id,
                    self.ticket_created_at - WINDOW_SKEW,
                    utc_now() + WINDOW_SKEW,
                )
            except ValueError as exc:  # a marker or an id the log filter cannot express
                return failed(f"cannot search the worker's logs for `{marker}`: {exc} (canary.processed_marker)")
            polls += 1
            calls.append(event.api_calls)
            waited = time.monotonic() - started
            lost = self.run.preempted()
            if lost:
                return failed(f"stopped waiting for the processed line: this run was {lost}")
            if event.found or waited >= timeout_s:
                break
            self._waiting(
                "processed",
                f"waiting for the worker's `{marker}` line for the test ticket: {waited:.0f} s of {timeout_s:g} s "
                f"({polls} polls)",
            )
            time.sleep(min(poll_s, max(0.0, timeout_s - waited)))
        data: dict[str, Any] = {
            "ticket": _hashed(self.ticket_id),
            "log_group": self.env.worker_log_group,
            "polls": polls,
            "api_calls_per_poll": max(calls),
            "filter_pattern": _redact_ticket(event.filter_pattern, self.ticket_id),
            "waited_s": round(time.monotonic() - started, 2),
        }
        if not event.found:
            why = "the log search hit its page bound" if not event.complete else "none found"
            return failed(
                f"no `{marker}` line for the test ticket within {timeout_s:g} s (canary.timeout_minutes; {why}, "
                f"{polls} polls): the worker did not process it, or its logs arrive late; check the rule and the "
                "worker's logs",
                **data,
            )
        self.processed_event = event
        latency = (event.timestamp - self.ticket_created_at).total_seconds() if event.timestamp else None
        data |= {
            "processed_at": event.timestamp.isoformat() if event.timestamp else None,
            "latency_s": round(latency, 2) if latency is not None else None,
            "form": event.form,
            "excerpt": _excerpt(event.message or "", self.ticket_id),
        }
        return passed(
            f"the worker logged `{marker}` for the test ticket"
            + (f" {latency:.1f} s after it was created" if latency is not None else ""),
            **data,
        )

    def no_customer_contact(self) -> Verdict:
        assert self.ticket_id is not None
        proof = Proof(data={"ticket": _hashed(self.ticket_id)})
        logs_ok = self._logs_proof(proof)
        richpanel_ok = self._richpanel_proof(proof)
        lever_ok = self._lever_proof(proof)
        if proof.contacts or proof.dangers:
            self.rollback_reason = "; ".join(proof.contacts + proof.dangers)
            self.run.audit("canary.rollback_needed", self.rollback_reason)
        also = f"; also unproven: {'; '.join(proof.unknown)}" if proof.unknown else ""
        if proof.contacts:
            return failed(
                f"a customer was contacted: {'; '.join(proof.contacts + proof.dangers)}. Rolling back now "
                f"(outbound off, rule paused){also}",
                customer_contacted=True,
                **proof.data,
            )
        if proof.dangers:
            return failed(f"{'; '.join(proof.dangers)}. Rolling back now{also}", **proof.data)
        if proof.unknown or not (logs_ok and richpanel_ok and lever_ok):
            return failed("no customer contact could not be proven: " + "; ".join(proof.unknown), **proof.data)
        messages = proof.data["richpanel"]["messages"]
        return passed(
            f"no `{self.env.canary.outbound_marker}` line for the ticket in a complete Logs Insights query that found "
            f"its `{self.env.canary.processed_marker}` line (positive control); no public reply by the bot agent "
            f"on the ticket in Richpanel ({messages} message(s) read); {describe_lever(self.env)} still false",
            customer_contacted=False,
            **proof.data,
        )

    # --- the three parts of the no-contact proof: each says whether it proved its part -------------
    def _logs_proof(self, proof: Proof) -> bool:
        """One Logs Insights query over the window that must find the processed line and no outbound line."""
        assert self.ticket_id is not None and self.ticket_created_at is not None
        settings = self.env.canary
        timeout_s = settings.timeout_minutes * 60
        # Logs reach Insights with a delay: while the query lacks the processed line that filter_log_events
        # already showed, ask again (bounded); without that line (processed failed) one query is all.
        deadline = time.monotonic() + (timeout_s if self.processed_event is not None else 0.0)
        start = self.ticket_created_at - WINDOW_SKEW
        if not all(_WORD.fullmatch(w) for w in (settings.processed_marker, settings.outbound_marker, self.ticket_id)):
            proof.unknown.append("the markers and the ticket id must be single words for the Logs Insights query")
            return False
        query = _insights_query(settings.processed_marker, settings.outbound_marker, self.ticket_id)
        queries = 0
        while True:
            end = utc_now() + timedelta(seconds=5)
            try:
                result = self.aws.insights_query(
                    self.env.worker_log_group, query, start, end, timeout_s=max(2.0, min(60.0, timeout_s))
                )
            except UpstreamError as exc:
                proof.unknown.append(f"the Logs Insights query failed ({exc})")
                return False
            queries += 1
            lines = _ticket_lines(result, settings.processed_marker, settings.outbound_marker, self.ticket_id)
            logs: dict[str, Any] = {
                "query": _redact_ticket(query, self.ticket_id),
                "status": result.status,
                "window": [start.isoformat(), end.isoformat()],
                "rows": len(result.rows),
                "queries": queries,
                "processed_lines": len(lines["processed"]),
                "outbound_lines": len(lines["outbound"]),
            }
            proof.data["logs"] = logs
            if not result.complete:
                proof.unknown.append(f"the Logs Insights query did not complete: {result.reason}")
                return False
            if lines["outbound"]:  # whatever else is true, this line says a customer was contacted
                logs["outbound_excerpts"] = [_excerpt(m, self.ticket_id) for m in lines["outbound"][:3]]
                proof.contacts.append(f"the worker logged `{settings.outbound_marker}` for the test ticket")
            if len(result.rows) >= INSIGHTS_LIMIT:
                proof.unknown.append(
                    f"the Logs Insights query returned its limit of {INSIGHTS_LIMIT} rows: lines may be missing"
                )
                return False
            if lines["processed"] or lines["outbound"] or time.monotonic() >= deadline:
                break
            self._waiting(
                "no_customer_contact",
                f"Logs Insights does not show the ticket's `{settings.processed_marker}` line yet (query {queries}); "
                "asking again",
            )
            time.sleep(1.0)
        if not lines["processed"]:
            proof.unknown.append(
                f"the Logs Insights query did not find the ticket's `{settings.processed_marker}` line (its positive "
                "control), so finding no outbound line proves nothing"
            )
            return False
        logs["processed_excerpt"] = _excerpt(lines["processed"][0], self.ticket_id)
        return not lines["outbound"]

    def _richpanel_proof(self, proof: Proof) -> bool:
        assert self.ticket_id is not None
        try:
            bot_agent = self.secret("richpanel_bot_agent_id")
            replies = self.richpanel().outbound_replies(self.ticket_id, bot_agent)
        except (UpstreamError, Skip) as exc:
            proof.unknown.append(f"the ticket could not be read in Richpanel ({exc})")
            return False
        proof.data["richpanel"] = {
            "messages": replies.messages,
            "customer_messages": replies.customer_messages,
            "bot_public_replies": replies.bot_public_replies,
            "bot_private_notes": replies.bot_private_notes,
            "other_public_replies": replies.other_public_replies,
            "unknown_author_public_replies": replies.unknown_author_public_replies,
        }
        if replies.contacted_customer:
            proof.contacts.append(f"the bot agent replied publicly on the test ticket ({replies.bot_public_replies}x)")
            return False
        if replies.messages == 0:
            proof.unknown.append(
                "Richpanel shows no message on the ticket, not even its first: the read proves nothing"
            )
            return False
        if replies.unknown_author_public_replies:
            proof.unknown.append(
                f"{replies.unknown_author_public_replies} public reply(ies) on the ticket name no author: a reply by "
                "the bot cannot be ruled out"
            )
            return False
        return True

    def _lever_proof(self, proof: Proof) -> bool:
        try:
            reading = read_lever(self.aws, self.env)
        except UpstreamError as exc:
            proof.unknown.append(f"the outbound lever could not be read ({exc})")
            return False
        proof.data["lever"] = reading_data(reading)
        if reading.value is None:
            proof.unknown.append(f"{describe_lever(self.env)} no longer exists")
            return False
        if reading.value:
            proof.dangers.append(f"{describe_lever(self.env)} was turned on during the canary")
            return False
        return True

    def _waiting(self, step: str, detail: str) -> None:
        self.run.progress(CheckResult(name=step, status=Status.WARN, detail=detail, data={"waiting": True}))


# --- the dry run -------------------------------------------------------------------------------------


def plan_canary(request: RunRequest, config: CutoverConfig) -> Report:
    """Each step and exactly what it would do, touching nothing."""
    env = config.env(request.env)
    settings = env.canary
    target = env.richpanel_http_target
    lever = describe_lever(env)
    steps = [
        ("outbound_off", f"would read {lever} (it must be false)"),
        (
            "http_target",
            (
                f"would compare {target.url} with the function URL of {env.worker_function} and the SHA-256 of "
                f"secret {env.secrets['richpanel_webhook_token']} with the approved hash, then ask a person to "
                "confirm Richpanel's UI shows that URL"
            )
            if target
            else f"would FAIL: no richpanel_http_target in the map for {request.env}",
        ),
        (
            "rule_enabled",
            f"would ask the requester to enable the Order Status rule in Richpanel and wait up to "
            f"{settings.confirm_timeout_minutes:g} min for the confirmation",
        ),
        (
            "test_ticket",
            f"would create one Richpanel ticket from {env.internal_test_address} ({env.endpoints.richpanel}"
            "/v1/tickets), the run id in its subject",
        ),
        (
            "processed",
            f"would wait up to {settings.timeout_minutes:g} min for `{settings.processed_marker}` with the ticket's id "
            f"in {env.worker_log_group}",
        ),
        (
            "no_customer_contact",
            f"would check for no `{settings.outbound_marker}` line (Logs Insights, {env.worker_log_group}), no public "
            f"reply by the bot agent on the ticket in Richpanel, and {lever} still false; on a contact, roll back",
        ),
    ]
    now = utc_now()
    return Report(
        command="canary",
        env=request.env,
        run_id=request.run_id or new_run_id(),
        started_at=now,
        finished_at=now,
        checks=[CheckResult(name=n, status=Status.SKIP, detail=f"dry run: {what}") for n, what in steps],
        requested_by=request.requested_by,
        pr=request.pr,
        dry_run=True,
    )


# --- helpers ------------------------------------------------------------------------------------------


def _hashed(ticket_id: str) -> str:
    """How a ticket id appears in evidence: never itself, a SHA-256 prefix that a reviewer can recompute."""
    return "sha256:" + hashlib.sha256(ticket_id.encode()).hexdigest()[:12]


def _redact_ticket(text: str, ticket_id: str) -> str:
    return re.sub(rf"(?<![\w-]){re.escape(ticket_id)}(?![\w-])", f"<ticket {_hashed(ticket_id)}>", text)


def _excerpt(message: str, ticket_id: str) -> str:
    """A log line as evidence: the ticket id hashed, request ids and PII redacted, one line, clipped."""
    text = _UUID.sub("<request-id>", _redact_ticket(message, ticket_id))
    text = " ".join(REDACTOR.redact(text).split())
    return clip(text, EXCERPT_CHARS)


def _insights_query(processed: str, outbound: str, ticket_id: str) -> str:
    # Lines that mention either marker and the ticket; each row is then parsed here (the filter narrows,
    # it does not decide). No `|` inside the filter: it is the query language's own separator.
    return (
        f'fields @timestamp, @message | filter (@message like "{processed}" or @message like "{outbound}") '
        f'and @message like "{ticket_id}" | sort @timestamp asc | limit {INSIGHTS_LIMIT}'
    )


def _ticket_lines(result: InsightsResult, processed: str, outbound: str, ticket_id: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"processed": [], "outbound": []}
    for row in result.rows:
        message = row.get("@message", "")
        if ticket_event_form(message, processed, ticket_id):
            found["processed"].append(message)
        elif ticket_event_form(message, outbound, ticket_id):
            found["outbound"].append(message)
    return found


def _same_endpoint(approved: str, actual: str) -> bool:
    """The approved URL is the function URL, or a path beneath it (scheme and host compared without case)."""

    def norm(url: str) -> str:
        scheme, sep, rest = url.strip().partition("://")
        host, slash, path = rest.partition("/")
        return f"{scheme.lower()}{sep}{host.lower()}{slash}{path}".rstrip("/")

    a, b = norm(approved), norm(actual)
    return a == b or a.startswith(b + "/")


def _confirmation_data(confirmation: Confirmation) -> dict[str, Any]:
    return {
        "confirmed_by": confirmation.confirmed_by,
        "confirmed_at": confirmation.at.isoformat(),
        "confirmed_on": confirmation.surface,
    }


def _who(confirmation: Confirmation) -> str:
    who = confirmation.confirmed_by
    shown = f"<@{who}>" if re.fullmatch(r"[UW][A-Z0-9]{2,}", who) else who
    return f"{shown} ({confirmation.surface}, {confirmation.at:%H:%M:%S} UTC)"
