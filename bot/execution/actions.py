"""`executor = "github-actions"`: the Slack app dispatches `.github/workflows/cutover.yml` instead of
running a command in its own process; the runner (AWS credentials by OIDC) runs `python -m bot <command>`,
edits the Slack message the app posted and attaches the evidence to the PR itself.

The inputs name the run and where to report it, nothing more: the command, env, PR, the Slack channel and
message, the requester, an approval id, dry-run and the run id (which the workflow's run-name carries, so
the run can be found when GitHub does not name it). No token or secret travels in them, and nothing in
them is trusted by the runner: the approval and the phase are read from the shared store, the requester
is checked against the map's runners again.

A dispatch either starts exactly one workflow run or raises `DispatchFailed`: PyGithub is asked to throw
(`throw=True`, never a silent False), and a write is never retried by the library, so it is never sent
twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from commands.config import ConfigError, CutoverConfig, Tokens
from commands.registry import spec
from commands.request import RunRequest
from integrations.errors import UpstreamError
from integrations.github import MAX_DISPATCH_INPUTS, GitHubChatOps, WorkflowRunLink

log = logging.getLogger(__name__)

# The workflow's inputs, in its order (a test holds .github/workflows/cutover.yml to the same list).
WORKFLOW_INPUTS = (
    "command",
    "env",
    "pr",
    "slack_channel",
    "slack_ts",
    "requested_by",
    "approval_id",
    "dry_run",
    "run_id",
)
assert len(WORKFLOW_INPUTS) <= MAX_DISPATCH_INPUTS
FIND_RUN_TIMEOUT_S = 20.0  # without return_run_details: how long to look for the run by its run-name


class DispatchFailed(Exception):
    """The workflow was not dispatched; `str()` says why and what to do. Nothing was started."""


@dataclass(frozen=True)
class Dispatched:
    run_id: str  # the bot's run id: the runner records the run under it, the run-name carries it
    link: WorkflowRunLink  # the exact workflow run (or the workflow's runs when it could not be found)


def dispatch_inputs(request: RunRequest, *, run_id: str, channel: str | None, ts: str | None) -> dict[str, str]:
    """The workflow_dispatch inputs for `request` (all strings, as the API takes them)."""
    return {
        "command": request.command,
        "env": request.env,
        "pr": str(request.pr) if request.pr is not None else "",
        "slack_channel": channel or "",
        "slack_ts": ts or "",
        "requested_by": request.requested_by,
        "approval_id": request.approval_id or "",
        "dry_run": "true" if request.dry_run else "false",
        "run_id": run_id,
    }


class ActionsDispatcher:
    """Dispatches runs to GitHub Actions through PyGithub, on the map's `[github] workflow` and `ref`."""

    def __init__(self, config: CutoverConfig, client: GitHubChatOps, *, find_timeout_s: float = FIND_RUN_TIMEOUT_S):
        self.config = config
        self.client = client
        self.find_timeout_s = find_timeout_s

    @classmethod
    def from_config(cls, config: CutoverConfig, tokens: Tokens, **kwargs: float) -> ActionsDispatcher:
        """ConfigError when GitHub is not configured: the app refuses to start rather than fail each run."""
        repo = config.github.repository()
        missing = [
            name
            for name, value in (("GITHUB_TOKEN", tokens.github_token), ("github.repo or GITHUB_REPOSITORY", repo))
            if not value
        ]
        if missing:
            raise ConfigError(
                f'executor = "github-actions" needs {" and ".join(missing)}: the app dispatches '
                f"{config.github.workflow} with a token that may run workflows (actions: write)"
            )
        assert repo is not None and tokens.github_token is not None
        client = GitHubChatOps(repo=repo, token=tokens.github_token, base_url=tokens.github_api_url)
        return cls(config, client, **kwargs)

    def dispatch(self, request: RunRequest, *, run_id: str, channel: str | None, ts: str | None) -> Dispatched:
        """Start exactly one workflow run for `request`, or raise DispatchFailed (nothing started)."""
        spec(request.command)  # an unknown command never reaches GitHub
        inputs = dispatch_inputs(request, run_id=run_id, channel=channel, ts=ts)
        github = self.config.github
        try:
            link = self.client.dispatch_workflow(
                github.workflow, github.ref, inputs, run_name_contains=run_id, find_timeout_s=self.find_timeout_s
            )
        except (UpstreamError, ValueError) as exc:
            raise DispatchFailed(f"{github.workflow} on {github.ref} was not dispatched: {exc}") from None
        except Exception as exc:  # never leave the run's message "in progress": say it did not start
            log.exception("dispatching %s %s failed", request.command, request.env)
            reason = f"internal error ({exc.__class__.__name__})"
            raise DispatchFailed(f"{github.workflow} on {github.ref} was not dispatched: {reason}") from None
        log.info("dispatched %s %s as run %s: %s", request.command, request.env, run_id, link.url)
        return Dispatched(run_id, link)


def local_aws_credentials() -> bool:
    """Whether this host has AWS credentials of its own (boto3's chain), so a rollback whose dispatch
    failed can still run here. Reads the chain only; calls no AWS API."""
    try:
        import boto3  # imported here: the Slack app's start-up does not pay for it

        return boto3.session.Session().get_credentials() is not None
    except Exception:  # a broken profile or credential process: not usable here
        log.warning("reading this host's AWS credentials failed", exc_info=True)
        return False
