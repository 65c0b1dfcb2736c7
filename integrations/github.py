"""GitHub through PyGithub: the evidence sink a pull request gets (sticky comment, commit status, proof files).

Configured so that a write is never sent twice by the library: PyGithub's default `GithubRetry` retries
POSTs on 5xx, which can post a comment twice. Here only GETs are retried (and only on 502/503/504);
a failed write surfaces as an `UpstreamError` and the caller's outbox decides what to resend, knowing
which steps already succeeded. The artificial delays between requests are off: the commands write a
handful of times per run, far below GitHub's secondary limits.

Trust: the sticky comment is looked up by its marker *and* its author, who must be the token's own
identity (`identity()`: the user of a personal token, `<app-slug>[bot]` for an app installation token).
A marker in anyone else's comment is not ours: it is neither edited nor returned.

Nothing here imports `commands`: the domain talks to this class through its `EvidenceSink` protocol.
"""

from __future__ import annotations

import inspect
import math
import os
import posixpath
import threading
import time
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from github import Auth, Github, GithubException, InputGitTreeElement, RateLimitExceededException
from github.GitRef import GitRef
from github.IssueComment import IssueComment
from github.Repository import Repository
from github.Workflow import Workflow
from urllib3.util.retry import Retry

from integrations.errors import DEFAULT_READ_TIMEOUT_S, UPSTREAM_TEXT_MAX, UpstreamError

DEFAULT_BASE_URL = "https://api.github.com"
COMMENT_LIMIT = 65_536  # GitHub answers 422 past this many characters
STATUS_DESCRIPTION_LIMIT = 140
STATUS_STATES = frozenset({"error", "failure", "pending", "success"})
DEPLOYMENT_STATES = frozenset({"error", "failure", "inactive", "in_progress", "queued", "pending", "success"})
DEPLOYMENT_SCAN_LIMIT = 100  # deployments read when looking for the bot's own (one page)
PER_PAGE = 100  # the API's maximum: fewer round trips when listing comments

# UpstreamError.code values a caller may treat as "try again later".
CODE_TIMEOUT = "timeout"
CODE_CONNECTION = "connection"
CODE_RATE_LIMITED = "rate_limited"
CODE_MALFORMED = "malformed"
CODE_SERVER = "server_error"

T = TypeVar("T")


@dataclass(frozen=True)
class PullHead:
    number: int
    sha: str
    branch: str
    html_url: str
    read_only: bool  # a fork's branch, or a token that cannot push: evidence stays local
    reason: str = ""  # why it is read-only, for the person reading the result
    state: str = "open"  # "open" or "closed" (a merged PR is closed and `merged`)
    merged: bool = False
    base: str = ""  # the branch the PR merges into
    default_branch: str = ""  # the repository's default branch
    head_repo: str | None = None  # "owner/name" the head branch lives in (None: deleted fork)


@dataclass(frozen=True)
class CommitRef:
    sha: str
    url: str  # the commit's web page
    parent: str | None = None  # the branch head the commit was made on (its first parent)


@dataclass(frozen=True)
class DeploymentRef:
    """A deployment the bot created: enough to post its statuses later."""

    id: int
    sha: str
    environment: str
    task: str


@dataclass(frozen=True)
class DeploymentInfo:
    """One of the bot's own deployments, with the state of the bot's newest status on it."""

    id: int
    sha: str
    environment: str
    task: str
    created_at: datetime | None
    state: str | None  # None: the bot posted no status on it yet
    payload: dict[str, Any] = field(default_factory=dict)


class _CountingToken(Auth.Token):
    """PyGithub calls `authentication` once per HTTP request it builds: the cheapest exact call counter."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self._lock = threading.Lock()
        self.calls = 0

    def authentication(self, headers: dict) -> None:
        with self._lock:
            self.calls += 1
        super().authentication(headers)


def read_retry() -> Retry:
    """Retry idempotent reads on a gateway error or a refused connection; never a write, never a rate limit.

    A connect error is safe to retry for any method (nothing reached the server). Rate limits are not
    waited out here: GitHub may ask for minutes, and the outbox retries later instead of stalling a command.
    """
    return Retry(
        total=2,
        connect=2,
        read=1,  # urllib3 checks allowed_methods before a read retry: a GET only
        status=2,
        other=0,
        allowed_methods=frozenset({"GET", "HEAD"}),
        status_forcelist=(502, 503, 504),
        backoff_factor=0.2,
        backoff_max=2.0,
        respect_retry_after_header=False,
        raise_on_status=False,
    )


class GitHubEvidence:
    """One repository's pull requests, seen as places to leave evidence. Every failure is an `UpstreamError`."""

    def __init__(
        self,
        *,
        repo: str,
        token: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 10.0,
        app_slug: str | None = None,
    ) -> None:
        """`app_slug`: the GitHub App's slug when `token` is one of its installation tokens (saves a lookup)."""
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ValueError(f"repo must be 'owner/name', got {repo!r}")
        if not token:
            raise ValueError("a GitHub token is required (GITHUB_TOKEN)")
        self.repo = repo
        self._auth = _CountingToken(token)
        self._gh = Github(
            auth=self._auth,
            base_url=base_url.rstrip("/"),
            timeout=max(1, math.ceil(timeout_s)),  # PyGithub accepts whole seconds only
            retry=read_retry(),
            seconds_between_requests=0,
            seconds_between_writes=0,
            per_page=PER_PAGE,
            lazy=True,  # objects are fetched when read, so e.g. a status is one POST, not GET + POST
        )
        self._repo: Repository = self._gh.get_repo(repo)
        self._can_push: bool | None = None
        self._identity: str | None = f"{app_slug.strip()}[bot]" if app_slug and app_slug.strip() else None

    @classmethod
    def from_env(cls, *, repo: str, timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> GitHubEvidence:
        """`GITHUB_TOKEN` and `GITHUB_API_URL` (as GitHub Actions sets them), and `GITHUB_APP_SLUG` if set."""
        token = os.environ.get("GITHUB_TOKEN", "")
        base_url = os.environ.get("GITHUB_API_URL") or DEFAULT_BASE_URL
        slug = os.environ.get("GITHUB_APP_SLUG") or None
        return cls(repo=repo, token=token, base_url=base_url, timeout_s=timeout_s, app_slug=slug)

    @property
    def calls(self) -> int:
        """HTTP requests made so far (retries of a read by urllib3 excluded)."""
        return self._auth.calls

    def close(self) -> None:
        self._gh.close()

    # --- who the token is --------------------------------------------------------------
    def identity(self) -> str:
        """The login comments written with this token carry; looked up once, then remembered.

        A personal token: `GET /user`. An app installation token cannot read `/user` (403); unless the
        app's slug was given, GraphQL `viewer { login }` names its bot (`<app-slug>[bot]`).
        """
        if self._identity is None:
            self._identity = self._call("find out whose token this is", self._whoami)
        return self._identity

    def _whoami(self) -> str:
        try:
            login = self._gh.get_user().login  # GET /user
        except GithubException as exc:
            if exc.status != 403:
                raise
            _, data = self._gh.requester.graphql_query("query { viewer { login } }", {})
            login = ((data.get("data") or {}).get("viewer") or {}).get("login")
        if not isinstance(login, str) or not login:
            reason = "GitHub did not name the token's user: set GITHUB_APP_SLUG for a GitHub App token"
            raise UpstreamError("github", "find out whose token this is", reason)
        return login

    # --- pull requests -----------------------------------------------------------------
    def pr_head(self, pr: int) -> PullHead:
        action = f"GET pull request #{pr} of {self.repo}"
        if not isinstance(pr, int) or isinstance(pr, bool) or pr <= 0:
            raise UpstreamError("github", action, f"{pr!r} is not a pull request number (a positive integer)")

        def load() -> PullHead:
            pull = self._repo.get_pull(pr)
            head = pull.head  # the first attribute read fetches the pull request
            head_repo = head.repo.full_name if head.repo is not None else None
            reason = ""
            if head_repo is None:
                reason = "its head repository was deleted"
            elif head_repo.lower() != self.repo.lower():
                reason = f"its branch lives in the fork {head_repo}"
            elif not self._push_allowed():
                reason = f"the token cannot push to {self.repo}"
            base_repo = pull.base.repo
            return PullHead(
                pr,
                head.sha,
                head.ref,
                pull.html_url,
                read_only=bool(reason),
                reason=reason,
                state=pull.state,
                merged=bool(pull.merged),
                base=pull.base.ref,
                default_branch=(base_repo.default_branch if base_repo is not None else "") or "",
                head_repo=head_repo,
            )

        return self._call(action, load, not_found=f"no pull request #{pr} in {self.repo}: check the PR number")

    def _push_allowed(self) -> bool:
        if self._can_push is None:
            perms = self._repo.permissions  # GET /repos/{o}/{r}: what this token may do
            # No permissions block (some app tokens): unknown, so try; a refused write is reported then.
            self._can_push = True if perms is None else bool(perms.push or perms.admin or perms.maintain)
        return self._can_push

    # --- the sticky comment ------------------------------------------------------------
    def find_comment(self, pr: int, marker: str) -> tuple[int, str] | None:
        """The bot's own oldest comment whose body starts with `marker`, as (id, body).

        Only comments written by `identity()` count: anyone can paste the marker into a comment of
        their own. (A quote of the marker starts with '>', so it never matches either.)
        """
        found = self._own_comment(pr, marker)
        return (found.id, found.body or "") if found is not None else None

    def _own_comment(self, pr: int, marker: str) -> IssueComment | None:
        me = self.identity().lower()

        def find() -> IssueComment | None:
            for comment in self._repo.get_issue(pr).get_comments():
                author = comment.user.login if comment.user is not None else ""
                if (author or "").lower() == me and (comment.body or "").lstrip().startswith(marker):
                    return comment
            return None

        return self._call(f"list comments of #{pr}", find, not_found=f"no pull request #{pr} in {self.repo}")

    def upsert_comment(self, pr: int, marker: str, body: str) -> str:
        """Edit the bot's own comment carrying `marker` in place, or create it. Returns its web URL."""
        if not body.lstrip().startswith(marker):
            body = f"{marker}\n{body}"
        if len(body) > COMMENT_LIMIT:
            raise UpstreamError(
                "github", f"comment on #{pr}", f"body is {len(body)} characters; GitHub accepts {COMMENT_LIMIT}"
            )
        found = self._own_comment(pr, marker)

        def write() -> str:
            if found is None:
                return self._repo.get_issue(pr).create_comment(body).html_url
            if found.body == body:  # nothing changed (a retried job): no write at all
                return found.html_url
            found.edit(body)
            return found.html_url

        return self._call(f"{'edit' if found else 'create'} comment on #{pr}", write)

    # --- commit status -----------------------------------------------------------------
    def set_status(self, sha: str, context: str, state: str, description: str, target_url: str | None = None) -> None:
        if state not in STATUS_STATES:
            raise ValueError(f"status state must be one of {sorted(STATUS_STATES)}, got {state!r}")
        if len(description) > STATUS_DESCRIPTION_LIMIT:
            description = description[: STATUS_DESCRIPTION_LIMIT - 1] + "…"

        def post() -> None:
            kwargs = {"target_url": target_url} if target_url else {}
            self._repo.get_commit(sha).create_status(state, description=description, context=context, **kwargs)

        self._call(f"set status {context} on {sha[:12]}", post, not_found=f"no commit {sha[:12]} in {self.repo}")

    def statuses(self, sha: str) -> dict[str, tuple[str, str, str | None]]:
        """The bot's own latest status per context on `sha`: context -> (state, description, target_url).

        Only statuses created by `identity()` count: anyone who may set a status could post a
        "cutover/..." context, and the publisher re-posts these under the bot's name.
        """
        me = self.identity().lower()

        def read() -> dict[str, tuple[str, str, str | None]]:
            latest: dict[str, tuple[str, str, str | None]] = {}
            for s in self._repo.get_commit(sha).get_statuses():  # newest first
                creator = (s.creator.login if s.creator is not None else "") or ""
                if creator.lower() == me:
                    latest.setdefault(s.context, (s.state, s.description or "", s.target_url))
            return latest

        return self._call(f"list statuses of {sha[:12]}", read)

    # --- deployments -------------------------------------------------------------------
    def create_deployment(
        self, *, ref: str, task: str, environment: str, description: str, payload: dict[str, Any] | None = None
    ) -> DeploymentRef:
        """A deployment of `ref` (a commit sha) to `environment` for `task`, never merging anything.

        `auto_merge=False`: GitHub would otherwise merge the default branch into the ref first (a commit
        the bot never meant to make). `required_contexts=[]`: left out, every commit status on the ref
        must be `success` (409 otherwise), so a failed preflight status would refuse the rollback's record.
        """
        description = _clip_description(description)

        def create() -> DeploymentRef:
            made = self._repo.create_deployment(
                ref,
                task=task,
                auto_merge=False,
                required_contexts=[],
                payload=dict(payload or {}),
                environment=environment,
                description=description,
                transient_environment=False,
            )
            return DeploymentRef(made.id, made.sha, made.environment, made.task)

        action = f"create deployment {task} to {environment} at {ref[:12]}"
        return self._call(action, create, not_found=f"no commit {ref[:12]} in {self.repo}")

    def create_deployment_status(
        self,
        deployment_id: int,
        state: str,
        *,
        description: str = "",
        log_url: str | None = None,
        auto_inactive: bool = False,
    ) -> None:
        """A status on one deployment. `log_url` (GitHub also shows it as the target URL) links the evidence.

        `auto_inactive` is off by default: GitHub applies it only to non-production, non-transient
        environments, so the bot marks what a rollback ends as `inactive` itself, the same everywhere.
        PyGithub's `create_status` has no `log_url`, so the call goes through its requester.
        """
        if state not in DEPLOYMENT_STATES:
            raise ValueError(f"deployment state must be one of {sorted(DEPLOYMENT_STATES)}, got {state!r}")
        body: dict[str, Any] = {
            "state": state,
            "description": _clip_description(description),
            "auto_inactive": auto_inactive,
        }
        if log_url:
            body["log_url"] = log_url

        def post() -> None:
            url = self._repo.get_deployment(deployment_id).url  # lazy: no request
            accept = "application/vnd.github.ant-man-preview+json, application/vnd.github.flash-preview+json"
            self._gh.requester.requestJsonAndCheck("POST", f"{url}/statuses", input=body, headers={"Accept": accept})

        action = f"set deployment {deployment_id} {state}"
        self._call(action, post, not_found=f"no deployment {deployment_id} in {self.repo}")

    def deployments(self, *, environment: str, task: str | None = None, limit: int = 10) -> list[DeploymentInfo]:
        """The bot's own deployments to `environment` (of `task`), newest first, each with the state of the
        bot's newest status on it. Anyone with write access can create deployments and statuses: only
        the token's own identity counts, as for comments."""
        me = self.identity().lower()

        def read() -> list[DeploymentInfo]:
            found: list[DeploymentInfo] = []
            kwargs = {"environment": environment, **({"task": task} if task else {})}
            for scanned, d in enumerate(self._repo.get_deployments(**kwargs)):  # newest first
                if scanned >= DEPLOYMENT_SCAN_LIMIT or len(found) >= limit:
                    break
                if _login(d.creator) != me:
                    continue
                state = next((s.state for s in d.get_statuses() if _login(s.creator) == me), None)
                payload = d.payload if isinstance(d.payload, dict) else {}
                found.append(DeploymentInfo(d.id, d.sha, d.environment, d.task, d.created_at, state, payload))
            return found

        return self._call(f"list deployments to {environment}", read)

    # --- files -------------------------------------------------------------------------
    def commit_files(self, branch: str, files: dict[str, bytes], message: str) -> CommitRef:
        """One commit on `branch` adding/replacing `files`, through the git data API.

        Text files travel inline in the tree, so the number of requests is the same for 3 or 300 files
        (get ref, get commit, create tree, create commit, update ref). If the branch's head commit
        already has this exact message, the commit is taken as done: a retry after a lost answer
        never commits twice.
        """
        if not files:
            raise ValueError("commit_files needs at least one file")
        for path in files:
            norm = posixpath.normpath(path)
            if path.startswith("/") or norm != path or norm.startswith(".."):
                raise ValueError(f"not a clean relative path: {path!r}")

        def commit() -> CommitRef:
            for attempt in range(2):  # a push between our read and our update: rebuild once on the new head
                ref: GitRef = self._repo.get_git_ref(f"heads/{branch}")
                head = self._repo.get_git_commit(ref.object.sha)
                if head.message == message:  # our own commit, from an attempt whose answer was lost
                    parent = head.parents[0].sha if head.parents else None
                    return CommitRef(head.sha, head.html_url, parent)
                tree = self._repo.create_git_tree([self._element(p, b) for p, b in sorted(files.items())], head.tree)
                new = self._repo.create_git_commit(message, tree, [head])
                try:
                    ref.edit(new.sha)  # fast-forward only: never overwrites someone else's push
                except GithubException as exc:
                    if attempt == 0 and exc.status == 422:
                        continue
                    raise
                return CommitRef(new.sha, new.html_url, head.sha)
            raise AssertionError("unreachable")

        return self._call(
            f"commit {len(files)} files to {branch}", commit, not_found=f"no branch {branch!r} in {self.repo}"
        )

    def _element(self, path: str, content: bytes) -> InputGitTreeElement:
        try:
            return InputGitTreeElement(path, "100644", "blob", content=content.decode("utf-8"))
        except UnicodeDecodeError:  # binary: one blob request each (proof bundles are text, so rare)
            blob = self._repo.create_git_blob(b64encode(content).decode("ascii"), "base64")
            return InputGitTreeElement(path, "100644", "blob", sha=blob.sha)

    # --- errors ------------------------------------------------------------------------
    def _call(self, action: str, fn: Callable[[], T], *, not_found: str | None = None) -> T:
        try:
            return fn()
        except UpstreamError:
            raise
        except GithubException as exc:
            raise _http_error(action, exc, not_found) from None
        except requests.exceptions.Timeout:
            reason = "no answer in time: GitHub is slow or unreachable; try again"
            raise UpstreamError("github", action, reason, code=CODE_TIMEOUT) from None
        except requests.exceptions.ConnectionError as exc:
            if "aborted" in str(exc).lower() or "disconnected" in str(exc).lower():
                reason = "connection closed before an answer: GitHub or a proxy dropped it; try again"
            else:
                reason = "could not connect: check GITHUB_API_URL and the network path"
            raise UpstreamError("github", action, reason, code=CODE_CONNECTION) from None
        except requests.exceptions.RequestException as exc:
            reason = f"transport error ({type(exc).__name__})"
            raise UpstreamError("github", action, reason, code=CODE_CONNECTION) from None
        except ValueError as exc:  # a body PyGithub could not parse as JSON
            reason = f"malformed response from GitHub ({type(exc).__name__}); try again"
            raise UpstreamError("github", action, reason, code=CODE_MALFORMED) from None


def _clip_description(text: str) -> str:
    return text if len(text) <= STATUS_DESCRIPTION_LIMIT else text[: STATUS_DESCRIPTION_LIMIT - 1] + "…"


def _login(user: Any) -> str:
    return str(getattr(user, "login", "") or "").lower() if user is not None else ""


def _http_error(action: str, exc: GithubException, not_found: str | None) -> UpstreamError:
    status = exc.status
    data = exc.data if isinstance(exc.data, dict) else {}
    message = str(data.get("message") or "")[:UPSTREAM_TEXT_MAX]
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    retry_after = _retry_after(headers)
    if status == 429 or isinstance(exc, RateLimitExceededException) or "rate limit" in message.lower():
        wait = f"; GitHub asks to wait {retry_after:g} s" if retry_after is not None else ""
        reason = f"rate limited{wait}: retry later"
        code = CODE_RATE_LIMITED
        return UpstreamError("github", action, reason, status_code=status, code=code, retry_after_s=retry_after)
    if status == 401:
        return UpstreamError("github", action, "bad credentials: check GITHUB_TOKEN", status_code=401)
    if status == 403:
        reason = "forbidden: the token needs contents, pull-requests, statuses and deployments write access"
        return UpstreamError("github", action, f"{reason} ({message or 'no message'})", status_code=403)
    if status == 404:
        return UpstreamError("github", action, not_found or "not found", status_code=404)
    if status >= 500:
        return UpstreamError(
            "github", action, "GitHub is failing on its side; retry later", status_code=status, code=CODE_SERVER
        )
    return UpstreamError("github", action, f"GitHub refused it: {message or 'no message'}", status_code=status)


def _retry_after(headers: dict[str, str]) -> float | None:
    raw = headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None


# --- GitHub Actions and pull request comments (executor = "github-actions") ---------------------------

MAX_DISPATCH_INPUTS = 25  # workflow_dispatch refuses more
WRITE_ROLES = frozenset({"admin", "maintain", "write"})  # may push: may run a cutover command from a comment
REACTIONS = frozenset({"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"})
# PyGithub 2.8+ passes `return_run_details` (GitHub then answers 200 with the run); older ones cannot ask.
_RUN_DETAILS = "return_run_details" in inspect.signature(Workflow.create_dispatch).parameters


@dataclass(frozen=True)
class WorkflowRunLink:
    """Where a dispatched workflow run is watched."""

    url: str  # the run's page; the workflow's list of runs when the run itself was not found
    run_id: int | None = None  # None: GitHub named no run and none carrying the run-name showed up in time
    how: str = "returned"  # "returned" (return_run_details), "found" (by its run-name) or "not found"


class GitHubChatOps(GitHubEvidence):
    """The repository as a place commands run from: dispatch the cutover workflow, answer PR comments.

    Writes are never retried by the library (see `read_retry`): a dispatch sent twice would run a cutover
    step twice. Every failure is an `UpstreamError`, never a silent False (`throw=True`).
    """

    def dispatch_workflow(
        self,
        workflow: str,
        ref: str,
        inputs: dict[str, str],
        *,
        run_name_contains: str,
        find_timeout_s: float = 20.0,
        poll_s: float = 2.0,
    ) -> WorkflowRunLink:
        """Dispatch `workflow` on `ref` with `inputs` and say which run it started.

        GitHub answers with the run when asked (`return_run_details`); where it answers 204 without one
        (older GitHub Enterprise), the run is looked up by its run-name, which carries `run_name_contains`
        (the bot's run id), for up to `find_timeout_s`.
        """
        not_strings = sorted(k for k, v in inputs.items() if not isinstance(v, str))
        if not_strings:
            raise ValueError(f"workflow inputs must be strings: {', '.join(not_strings)}")
        if len(inputs) > MAX_DISPATCH_INPUTS:
            raise ValueError(f"{len(inputs)} workflow inputs; GitHub accepts at most {MAX_DISPATCH_INPUTS}")
        flow = self._repo.get_workflow(workflow)  # lazy: no request

        def send() -> Any:
            if _RUN_DETAILS:
                return flow.create_dispatch(ref, inputs, throw=True, return_run_details=True)
            return flow.create_dispatch(ref, inputs, throw=True)

        missing = f"no workflow {workflow} with a workflow_dispatch trigger on {ref} in {self.repo}"
        result = self._call(f"dispatch workflow {workflow} on {ref}", send, not_found=missing)
        run_id = getattr(result, "id", None) if result is not True else None
        if isinstance(run_id, int):
            return WorkflowRunLink(str(result.html_url), run_id, "returned")
        found = self.find_run(workflow, run_name_contains, timeout_s=find_timeout_s, poll_s=poll_s)
        if found is not None:
            return found
        return WorkflowRunLink(f"{self.html_url()}/actions/workflows/{quote(workflow)}", None, "not found")

    def find_run(self, workflow: str, text: str, *, timeout_s: float, poll_s: float = 2.0) -> WorkflowRunLink | None:
        """The newest dispatched run of `workflow` whose run-name contains `text`, waiting up to `timeout_s`
        for it to appear (a run shows up in the list seconds after its dispatch)."""
        if not text:
            raise ValueError("find_run needs the text its run-name carries")
        flow = self._repo.get_workflow(workflow)
        deadline = time.monotonic() + timeout_s

        def look() -> WorkflowRunLink | None:
            for seen, run in enumerate(flow.get_runs(event="workflow_dispatch")):  # newest first
                if seen >= PER_PAGE:
                    break
                if text in (run.display_title or ""):
                    return WorkflowRunLink(str(run.html_url), int(run.id), "found")
            return None

        while True:
            found = self._call(f"list runs of workflow {workflow}", look, not_found=f"no workflow {workflow}")
            remaining = deadline - time.monotonic()
            if found is not None or remaining <= 0:
                return found
            time.sleep(min(poll_s, remaining))

    def html_url(self) -> str:
        """The repository's web page (GitHub Enterprise has its own host)."""
        return self._call(f"GET repository {self.repo}", lambda: str(self._repo.html_url))

    def react(self, comment_id: int, content: str) -> None:
        """A reaction on an issue or pull request comment (GitHub keeps one per person and kind: idempotent)."""
        if content not in REACTIONS:
            raise ValueError(f"reaction must be one of {sorted(REACTIONS)}, got {content!r}")

        def post() -> None:
            url = f"{self._repo.url}/issues/comments/{int(comment_id)}/reactions"
            self._gh.requester.requestJsonAndCheck("POST", url, input={"content": content})

        missing = f"no comment {comment_id} in {self.repo}"
        self._call(f"react {content} to comment {comment_id}", post, not_found=missing)

    def role(self, login: str) -> str:
        """The person's role on the repository: admin, maintain, write, triage, read or none."""

        def read() -> str:
            url = f"{self._repo.url}/collaborators/{quote(login, safe='')}/permission"
            _, data = self._gh.requester.requestJsonAndCheck("GET", url)
            data = data if isinstance(data, dict) else {}
            return str(data.get("role_name") or data.get("permission") or "none").lower()

        try:
            return self._call(f"read the permission of {login} on {self.repo}", read)
        except UpstreamError as exc:
            if exc.status_code == 404:  # not a collaborator (or no such user): no role at all
                return "none"
            raise

    def reply(self, pr: int, body: str) -> str:
        """A new comment on the pull request (an answer to a person); returns its web URL."""
        if len(body) > COMMENT_LIMIT:
            body = body[: COMMENT_LIMIT - 1] + "…"

        def post() -> str:
            return str(self._repo.get_issue(pr).create_comment(body).html_url)

        return self._call(f"comment on #{pr}", post, not_found=f"no pull request #{pr} in {self.repo}")
