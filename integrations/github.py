"""GitHub through PyGithub: the evidence sink a pull request gets (sticky comment, commit status, proof files).

Configured so that a write is never sent twice by the library: PyGithub's default `GithubRetry` retries
POSTs on 5xx, which can post a comment twice. Here only GETs are retried (and only on 502/503/504);
a failed write surfaces as an `UpstreamError` and the caller's outbox decides what to resend, knowing
which steps already succeeded. The artificial delays between requests are off: the commands write a
handful of times per run, far below GitHub's secondary limits.

Nothing here imports `commands`: the domain talks to this class through its `EvidenceSink` protocol.
"""

from __future__ import annotations

import math
import os
import posixpath
import threading
import time
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
from github import Auth, Github, GithubException, InputGitTreeElement, RateLimitExceededException
from github.GitRef import GitRef
from github.Repository import Repository
from urllib3.util.retry import Retry

from integrations.errors import DEFAULT_READ_TIMEOUT_S, UpstreamError

DEFAULT_BASE_URL = "https://api.github.com"
COMMENT_LIMIT = 65_536  # GitHub answers 422 past this many characters
STATUS_DESCRIPTION_LIMIT = 140
STATUS_STATES = frozenset({"error", "failure", "pending", "success"})
FIND_REUSE_S = 10.0  # how long upsert_comment may trust the same thread's find_comment answer
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


@dataclass(frozen=True)
class CommitRef:
    sha: str
    url: str  # the commit's web page


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

    def __init__(self, *, repo: str, token: str, base_url: str = DEFAULT_BASE_URL, timeout_s: float = 10.0) -> None:
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
        self._local = threading.local()  # per thread: the last find_comment answer, for the upsert after it

    @classmethod
    def from_env(cls, *, repo: str, timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> GitHubEvidence:
        """`GITHUB_TOKEN` and `GITHUB_API_URL` (as GitHub Actions sets them)."""
        token = os.environ.get("GITHUB_TOKEN", "")
        base_url = os.environ.get("GITHUB_API_URL") or DEFAULT_BASE_URL
        return cls(repo=repo, token=token, base_url=base_url, timeout_s=timeout_s)

    @property
    def calls(self) -> int:
        """HTTP requests made so far (retries of a read by urllib3 excluded)."""
        return self._auth.calls

    def close(self) -> None:
        self._gh.close()

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
            return PullHead(pr, head.sha, head.ref, pull.html_url, read_only=bool(reason), reason=reason)

        return self._call(action, load, not_found=f"no pull request #{pr} in {self.repo}: check the PR number")

    def _push_allowed(self) -> bool:
        if self._can_push is None:
            perms = self._repo.permissions  # GET /repos/{o}/{r}: what this token may do
            # No permissions block (some app tokens): unknown, so try; a refused write is reported then.
            self._can_push = True if perms is None else bool(perms.push or perms.admin or perms.maintain)
        return self._can_push

    # --- the sticky comment ------------------------------------------------------------
    def find_comment(self, pr: int, marker: str) -> tuple[int, str] | None:
        """The oldest comment whose body starts with `marker` (a quote of it starts with '>', so it never matches)."""

        def find() -> tuple[int, str] | None:
            for comment in self._repo.get_issue(pr).get_comments():
                body = comment.body or ""
                if body.lstrip().startswith(marker):
                    return comment.id, body
            return None

        found = self._call(f"list comments of #{pr}", find, not_found=f"no pull request #{pr} in {self.repo}")
        self._local.found = ((pr, marker), found, time.monotonic())
        return found

    def upsert_comment(self, pr: int, marker: str, body: str) -> str:
        """Edit the comment carrying `marker` in place, or create it. Returns its web URL."""
        if not body.lstrip().startswith(marker):
            body = f"{marker}\n{body}"
        if len(body) > COMMENT_LIMIT:
            raise UpstreamError(
                "github", f"comment on #{pr}", f"body is {len(body)} characters; GitHub accepts {COMMENT_LIMIT}"
            )
        # A caller that just looked (to build the body from the old one) is not made to list the comments again.
        last, self._local.found = getattr(self._local, "found", None), None
        fresh = last is not None and last[0] == (pr, marker) and time.monotonic() - last[2] < FIND_REUSE_S
        found = last[1] if fresh else self.find_comment(pr, marker)
        self._local.found = None  # used once: a later upsert looks again

        def write() -> str:
            issue = self._repo.get_issue(pr)
            if found is None:
                return issue.create_comment(body).html_url
            comment = issue.get_comment(found[0])
            if found[1] == body:  # nothing changed (a retried job): no write at all
                return comment.html_url
            comment.edit(body)
            return comment.html_url

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
        """The latest status per context on `sha`: context -> (state, description, target_url)."""

        def read() -> dict[str, tuple[str, str, str | None]]:
            latest: dict[str, tuple[str, str, str | None]] = {}
            for s in self._repo.get_commit(sha).get_statuses():  # newest first
                latest.setdefault(s.context, (s.state, s.description or "", s.target_url))
            return latest

        return self._call(f"list statuses of {sha[:12]}", read)

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
                if head.message == message:
                    return CommitRef(head.sha, head.html_url)
                tree = self._repo.create_git_tree([self._element(p, b) for p, b in sorted(files.items())], head.tree)
                new = self._repo.create_git_commit(message, tree, [head])
                try:
                    ref.edit(new.sha)  # fast-forward only: never overwrites someone else's push
                except GithubException as exc:
                    if attempt == 0 and exc.status == 422:
                        continue
                    raise
                return CommitRef(new.sha, new.html_url)
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


def _http_error(action: str, exc: GithubException, not_found: str | None) -> UpstreamError:
    status = exc.status
    data = exc.data if isinstance(exc.data, dict) else {}
    message = str(data.get("message") or "")[:200]
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
        reason = "forbidden: the token needs contents, pull-requests and statuses write access"
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
