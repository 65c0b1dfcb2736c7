"""The CLI run a GitHub Actions workflow starts (`.github/workflows/cutover.yml`): the same command through
the same gate as anywhere, reported where the Slack app said it would be.

- `--slack-channel C --slack-ts T`: the run edits the message the Slack app posted when it dispatched the
  run (started, progress, result: the renderings of bot/slack/blocks.py, as a run in the app), or posts
  one when no ts is given. A refusal or a crash ends that message too, so it never stays "in progress".
- `--requested-by`: the person the run is for, a Slack user id (the app's requester) or `github:<login>`
  (a manual dispatch, or a PR comment). Nothing in the inputs is trusted: the requester must pass the
  env's runners again (`GitHubAuthorizer`, user groups read from Slack), and the gate reads the approval
  and the phase from the shared store, never from an input.
- `--run-id`: the id the app announced. A run id already in the store is refused: a re-run of a finished
  workflow run does not run a cutover step a second time.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.execution.evidence_publisher import publisher_for
from bot.pr_comments.surface import CommentSurface, read_event
from bot.slack.access import GroupCache, slack_group_lookup
from bot.slack.app import api_base_url
from bot.slack.blocks import Rendered, escape, notice_blocks, progress_blocks, result_blocks, started_blocks
from bot.slack.chart_post import post_chart
from bot.slack.live_message import SLACK_CALL_TIMEOUT_S, LiveMessage
from bot.terminal.runs import EXIT_PASS, Outputs, run_in_terminal
from commands.access import AccessPolicy, LookupFailed, Members
from commands.config import ConfigError, CutoverConfig, Tokens
from commands.execute import Outcome, store_for
from commands.gate import Refused
from commands.pr_comment import GitHubAuthorizer, GitHubPerson, login_of, slack_id_for
from commands.redaction import REDACTOR
from commands.registry import UsageError, title
from commands.report import CheckResult
from commands.request import RunRequest
from commands.state import StateError

log = logging.getLogger(__name__)

SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
GITHUB_REQUESTER = re.compile(r"^github:[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SLACK_TS = re.compile(r"^\d{1,12}\.\d{1,9}$")
SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
UPDATE_INTERVAL_S = 1.0
EVIDENCE_RETRY_DELAYS_S = (2.0, 5.0, 15.0)  # the runner ends with the job: it waits a little, then the outbox


def check_requester(value: str) -> str:
    if SLACK_ID.match(value) or GITHUB_REQUESTER.match(value):
        return value
    raise UsageError(f"--requested-by must be a Slack user id (U...) or github:<login>, not {value[:40]!r}")


def check_slack_target(channel: str | None, ts: str | None) -> None:
    if channel is not None and not SLACK_CHANNEL.match(channel):
        raise UsageError(f"--slack-channel must be a Slack channel id (C...), not {channel[:40]!r}")
    if ts is not None and not SLACK_TS.match(ts):
        raise UsageError(f"--slack-ts must be a Slack message ts (1700000000.000100), not {ts[:40]!r}")
    if ts is not None and channel is None:
        raise UsageError("--slack-ts needs --slack-channel (the message's channel)")


def check_run_id(run_id: str | None) -> None:
    if run_id is not None and not RUN_ID.match(run_id):
        raise UsageError(f"--run-id must be 1-64 letters, digits, '-' or '_', not {run_id[:40]!r}")


def workflow_run_url(environ: Mapping[str, str] | None = None) -> str | None:
    """This job's workflow run on GitHub, from the variables Actions sets (None elsewhere)."""
    environ = os.environ if environ is None else environ
    server, repo, run = (environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else None


def _slack_clients(tokens: Tokens) -> tuple[WebClient, WebClient] | None:
    if not tokens.slack_bot_token:
        return None
    base_url = api_base_url(tokens.slack_api_url)
    retries = [ConnectionErrorRetryHandler(), RateLimitErrorRetryHandler(max_retry_count=2)]
    client = WebClient(
        token=tokens.slack_bot_token, base_url=base_url, timeout=SLACK_CALL_TIMEOUT_S, retry_handlers=retries
    )
    quick = WebClient(token=tokens.slack_bot_token, base_url=base_url, timeout=SLACK_CALL_TIMEOUT_S, retry_handlers=[])
    return client, quick


def slack_members(tokens: Tokens) -> Members:
    """User-group members from Slack; without a Slack token a group cannot be read (the policy refuses)."""
    clients = _slack_clients(tokens)
    if clients is not None:
        return GroupCache(slack_group_lookup(clients[1])).members

    def unknown(group: str) -> frozenset[str]:
        raise LookupFailed(f"SLACK_BOT_TOKEN is not set: the members of {group} cannot be read")

    return unknown


def actions_authorizer(config: CutoverConfig, tokens: Tokens, person: GitHubPerson | None = None) -> GitHubAuthorizer:
    """Who may, for a run GitHub started: the env's runners (user groups read from Slack), a GitHub login
    through the map's github_logins (and, for a comment, what GitHub says about its author)."""
    return GitHubAuthorizer(config, AccessPolicy(config, slack_members(tokens)), person)


class SlackReport:
    """A run shown in one Slack message, as the Slack app shows its own runs; a `RunObserver`."""

    def __init__(
        self,
        client: WebClient,
        progress_client: WebClient,
        *,
        request: RunRequest,
        user: str,
        channel: str,
        ts: str | None,
        where: str | None = None,
        interval_s: float = UPDATE_INTERVAL_S,
        config: CutoverConfig | None = None,
    ) -> None:
        self.request = request
        self.client = client
        self.config = config  # for the evidence retries after a pending result
        self.user = user
        self.where = where
        self.live = LiveMessage(
            client, progress_client=progress_client, channel=channel, response_url=None, interval_s=interval_s
        )
        self.live.ts = ts
        self._done: list[CheckResult] = []
        self._lock = threading.Lock()
        self._started = time.monotonic()

    @classmethod
    def build(
        cls, request: RunRequest, config: CutoverConfig, tokens: Tokens, *, channel: str, ts: str | None
    ) -> SlackReport | None:
        """None (with a warning) when there is no Slack token: the run goes on, reported in the log and the PR."""
        clients = _slack_clients(tokens)
        if clients is None:
            log.warning("--slack-channel given but SLACK_BOT_TOKEN is not set: the run is not reported in Slack")
            return None
        user = request.requested_by
        login = login_of(user)
        if login is not None:
            user = slack_id_for(config.env(request.env), login) or login
        where = workflow_run_url()
        return cls(
            clients[0], clients[1], request=request, user=user, channel=channel, ts=ts, where=where, config=config
        )

    def start(self) -> None:
        r = self.request
        if self.live.ts is None:
            self.live.post(self._with_where(started_blocks(r.command, r.env, self.user, pr=r.pr, dry_run=r.dry_run)))
        else:
            self.live.maybe_update(lambda: self._with_where(self._progress([])))

    def progress(self, check: CheckResult) -> None:
        with self._lock:
            same = next((i for i, c in enumerate(self._done) if c.name == check.name), None)
            if same is None:
                self._done.append(check)
            else:
                self._done[same] = check
            snapshot: Sequence[CheckResult] = list(self._done)
        self.live.maybe_update(lambda: self._with_where(self._progress(snapshot)))

    def finish(self, outcome: Outcome) -> None:
        self.live.finish(self._with_where(result_blocks(outcome, user=self.user)))
        post_chart(self.client, outcome, channel=self.live.channel, thread_ts=self.live.ts)
        if outcome.evidence.state == "pending":
            self._follow_evidence(outcome)

    def did_not_run(self, exc: Exception) -> None:
        r = self.request
        self.live.finish(notice_blocks(f"{title(r.command)} {r.env} did not run: {escape(str(exc))}"))

    def stopped(self, exc: BaseException) -> None:
        r = self.request
        text = (
            f"{title(r.command)} {r.env} stopped with an internal error ({exc.__class__.__name__}). "
            "The workflow run's log has the details; check them before running it again."
        )
        self.live.finish(notice_blocks(text, icon="🛑"))

    def _progress(self, done: Sequence[CheckResult]) -> Rendered:
        r = self.request
        elapsed = time.monotonic() - self._started
        return progress_blocks(r.command, r.env, self.user, done, elapsed_s=elapsed, pr=r.pr, dry_run=r.dry_run)

    def _with_where(self, rendered: Rendered) -> Rendered:
        """The rendering plus a line linking this workflow run (on GitHub Actions)."""
        if not self.where or len(rendered.blocks) >= 50:
            return rendered
        line = {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"ran on GitHub Actions: <{self.where}|log>"}],
        }
        return Rendered(rendered.text, [*rendered.blocks, REDACTOR.redact_obj(line)])

    def _follow_evidence(self, outcome: Outcome) -> None:
        """A runner's disk goes with its job: wait a little for GitHub, then leave it to the outbox."""
        publisher = publisher_for(self.config) if self.config is not None else None
        if publisher is None:
            return
        for delay in EVIDENCE_RETRY_DELAYS_S:
            time.sleep(delay)
            try:
                evidence = publisher.retry(outcome.report)
            except Exception:
                log.exception("retrying the evidence of run %s failed", outcome.report.run_id)
                continue
            if evidence.state != "pending":
                self.live.finish(self._with_where(result_blocks(replace(outcome, evidence=evidence), user=self.user)))
                return


def run_from_actions(
    request: RunRequest,
    config: CutoverConfig,
    *,
    outputs: Outputs,
    tokens: Tokens,
    slack_channel: str | None,
    slack_ts: str | None,
    person: GitHubPerson | None = None,
) -> int:
    """Run `request` for the person it names, reported in Slack when a channel is given. Raises what
    `run_in_terminal` raises (the CLI prints it) after the Slack message says so."""
    check_slack_target(slack_channel, slack_ts)
    check_run_id(request.run_id)
    # Before Slack is touched: a re-run of a finished workflow run must not overwrite that run's result.
    _refuse_a_used_run_id(request, config)
    report = SlackReport.build(request, config, tokens, channel=slack_channel, ts=slack_ts) if slack_channel else None
    if report is not None:
        report.start()
    try:
        authorizer = actions_authorizer(config, tokens, person)
        return run_in_terminal(request, config, outputs=outputs, authorizer=authorizer, observer=report)
    except (Refused, UsageError, ConfigError) as exc:
        if report is not None:
            report.did_not_run(exc)
        raise
    except BaseException as exc:
        if report is not None:
            report.stopped(exc)
        raise


def _refuse_a_used_run_id(request: RunRequest, config: CutoverConfig) -> None:
    if request.run_id is None or request.dry_run:
        return
    try:
        found = store_for(config).get_run(request.env, request.run_id)
    except StateError as exc:
        raise Refused("store", f"the state store cannot be read ({exc}): nothing was run") from None
    if found is not None:
        raise Refused(
            "run id",
            f"run {request.run_id} is already recorded for {request.env} ({found.command}, {found.status}): "
            "a re-run of a workflow run does not run a command again; start it anew from Slack",
        )


def run_pr_comment(
    config: CutoverConfig,
    tokens: Tokens,
    *,
    event_path: str | None,
    outputs: Outputs,
    accept_only: bool = False,
    github_output: str | None = None,
) -> int:
    """`python -m bot pr-comment`: the command a PR comment asks for, by someone who may (bot/pr_comments).

    `accept_only` (the workflow's first job, without AWS credentials): check the author, react or answer,
    and write `accepted`, `command` and `env` to GITHUB_OUTPUT for the job that runs it. Otherwise check
    again and run it here, reported on the PR (sticky comment, a final reaction) and in the channel.
    """
    event = read_event(event_path)
    surface = CommentSurface.build(config, tokens, event, slack_members(tokens))
    admitted = surface.admit()
    if accept_only:
        _write_job_outputs(github_output, admitted.request if admitted else None)
        return EXIT_PASS
    if admitted is None:
        return EXIT_PASS  # not a command for the bot, or answered with who may: nothing to run
    channel = config.slack.channel if config.slack.channel and SLACK_CHANNEL.match(config.slack.channel) else None
    try:
        code = run_from_actions(
            admitted.request,
            config,
            outputs=outputs,
            tokens=tokens,
            slack_channel=channel if tokens.slack_bot_token else None,
            slack_ts=None,
            person=admitted.person,
        )
    except (Refused, UsageError, ConfigError) as exc:
        surface.conclude(passed=False, refused=str(exc))
        raise
    except BaseException:
        surface.conclude(passed=False)
        raise
    surface.conclude(passed=code == EXIT_PASS)
    return code


def _write_job_outputs(path: str | None, request: RunRequest | None) -> None:
    """The accept job's outputs: names the map and the registry know (no free text from the comment)."""
    lines = (
        ["accepted=false"] if request is None else ["accepted=true", f"command={request.command}", f"env={request.env}"]
    )
    text = "\n".join(lines) + "\n"
    if not path:
        print(text, end="")
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(text)
