"""A loopback GitHub: enough of the REST API for PyGithub to comment, set statuses and commit evidence.

State lives in memory: pull requests (open, closed or merged; from a branch of this repository or
of a fork, into any base), comments (each with the login of the token that wrote it), statuses,
and a small git object store (blobs, flat trees, commits, branch refs), so a test can read back
exactly what was committed. Faults come from `FakeUpstream.inject` (per path regex), e.g.
`Fault("status", status=500, times=1)` on `/git/commits$`.

Identities: every token maps to a login. A login ending in `[bot]` is a GitHub App installation
(as on GitHub, `GET /user` then answers 403 and only GraphQL `viewer { login }` names it); any
other login is a user, and `GET /user` answers with it.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from integrations.sandbox.http import FakeUpstream, Request, Response

SANDBOX_TOKEN = "ghp_sandboxtoken0000000000000000000000"
SANDBOX_LOGIN = "cutover-bot"  # the user a `ghp_`/`github_pat_` sandbox token belongs to
SANDBOX_APP_LOGIN = "cutover-bot[bot]"  # the app a `ghs_` (installation) sandbox token belongs to
PR_STATES = ("open", "closed", "merged")
COMMENT_LIMIT = 65_536
STATUS_STATES = {"error", "failure", "pending", "success"}
MAX_DISPATCH_INPUTS = 25
REACTIONS = {"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"}
COLLABORATOR_ROLES = {"admin", "maintain", "write", "triage", "read"}
DEPLOYMENT_STATES = {"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}


def blob_sha(content: bytes) -> str:
    """Git's own blob id, so a test can compare with `git hash-object`."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_found() -> Response:
    return Response(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})


def _invalid(message: str) -> Response:
    return Response(422, {"message": message, "documentation_url": "https://docs.github.com/rest"})


class GitHubFake(FakeUpstream):
    name = "github"

    def __init__(
        self,
        *,
        repo: str = "acme/rp-mw",
        token: str = SANDBOX_TOKEN,
        can_push: bool = True,
        default_branch: str = "main",
        login: str | None = None,
    ) -> None:
        super().__init__()
        self.repo = repo
        self.token = token
        # token -> login; `login` defaults by the token's kind (an installation token is an app's bot)
        self.logins: dict[str, str] = {
            token: login or (SANDBOX_APP_LOGIN if token.startswith("ghs_") else SANDBOX_LOGIN)
        }
        self.can_push = can_push
        self.default_branch = default_branch
        self._state = threading.RLock()
        self._ids = itertools.count(1001)
        self.blobs: dict[str, bytes] = {}
        self.trees: dict[str, dict[str, str]] = {}  # tree sha -> {full path: blob sha} (flat, enough here)
        self.commits: dict[str, dict[str, Any]] = {}
        self.refs: dict[str, str] = {}  # branch -> commit sha
        self.pulls: dict[int, dict[str, Any]] = {}
        self._comments: dict[int, dict[str, Any]] = {}
        self._statuses: list[dict[str, Any]] = []
        self.dispatches: list[dict[str, Any]] = []
        # GitHub Actions: the runs dispatches start, named by the workflow's `run-name` (set
        # `run_name_template` to it: `${{ inputs.x }}` is filled in); `run_details` False plays an older
        # GitHub that answers a dispatch 204 without naming the run.
        self.workflow_runs: list[dict[str, Any]] = []
        self.run_name_template: str | None = None
        self.run_details = True
        self.roles: dict[str, str] = {}  # login (lower case) -> admin | maintain | write | triage | read
        self._reactions: list[dict[str, Any]] = []
        self._deployments: dict[int, dict[str, Any]] = {}
        self._deployment_statuses: list[dict[str, Any]] = []
        root = self._make_commit({"README.md": b"# rp-mw\n"}, parents=[], message="initial commit")
        self.refs[default_branch] = root
        self._register_routes()

    def start(self) -> GitHubFake:
        super().start()
        # Headers and body leave in two writes; with Nagle on, each answer waits ~40 ms for a delayed ACK.
        assert self._server is not None
        self._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        return self

    # --- helpers for tests -------------------------------------------------------------
    @property
    def login(self) -> str:
        """The login of the fake's own token (the bot's identity)."""
        return self.logins[self.token]

    def add_token(self, token: str, login: str) -> None:
        """Another identity that may call the API, e.g. a person who comments on the PR."""
        with self._state:
            self.logins[token] = login

    def add_pr(
        self,
        number: int,
        branch: str,
        sha: str | None = None,
        *,
        fork: str | None = None,
        base: str | None = None,
        state: str = "open",
    ) -> dict[str, Any]:
        """A pull request from `branch` (in this repo, or in the fork `fork`) into `base` (the default branch).

        For a same-repo PR the branch is created (one commit on the default branch) unless it exists;
        `sha` names that commit, so a test can refer to the head it expects. `state` is open, closed
        or merged (`set_pr_state` changes it later).
        """
        with self._state:
            head_sha = sha
            if fork is None and branch not in self.refs:
                root = self.refs[self.default_branch]
                head_sha = self._make_commit({}, parents=[root], message=f"work on {branch}", sha=sha)
                self.refs[branch] = head_sha
            elif fork is None:
                head_sha = self.refs[branch]
            base = base or self.default_branch
            if base not in self.refs:
                self.refs[base] = self.refs[self.default_branch]
            self.pulls[number] = {
                "number": number,
                "branch": branch,
                "fork": fork,
                "fork_sha": head_sha or hashlib.sha1(f"fork-{number}".encode()).hexdigest(),
                "base": base,
            }
            self.set_pr_state(number, state)
            return self.pulls[number]

    def set_pr_state(self, number: int, state: str) -> None:
        """open, closed (without merging) or merged."""
        if state not in PR_STATES:
            raise ValueError(f"state must be one of {PR_STATES}, got {state!r}")
        with self._state:
            pull = self.pulls[number]
            pull["state"] = state
            pull["closed_at"] = None if state == "open" else _now()

    def git_writes(self) -> list[Any]:
        """Every request that wrote to the git database or moved a ref (blobs, trees, commits, refs, contents)."""
        return [
            r
            for r in self.received()
            if r.method in ("POST", "PATCH", "PUT", "DELETE") and ("/git/" in r.path or "/contents/" in r.path)
        ]

    def comments(self, pr: int) -> list[dict[str, Any]]:
        with self._state:
            return [dict(c) for c in self._comments.values() if c["pr"] == pr]

    def statuses(self, sha: str) -> list[dict[str, Any]]:
        """Every status posted on `sha`, oldest first."""
        with self._state:
            return [dict(s) for s in self._statuses if s["sha"] == sha]

    def deployments(self, environment: str | None = None) -> list[dict[str, Any]]:
        """Every deployment (to `environment`), oldest first, each with its `statuses` oldest first."""
        with self._state:
            return [
                {**d, "statuses": [dict(s) for s in self._deployment_statuses if s["deployment_id"] == d["id"]]}
                for d in self._deployments.values()
                if environment is None or d["environment"] == environment
            ]

    def commits_on(self, branch: str) -> list[dict[str, Any]]:
        """The branch's first-parent history, newest first, each with its `sha`."""
        out = []
        with self._state:
            sha: str | None = self.refs.get(branch)
            while sha:
                commit = self.commits[sha]
                out.append({"sha": sha, **commit})
                sha = commit["parents"][0] if commit["parents"] else None
        return out

    def files_at(self, branch_or_sha: str) -> dict[str, bytes]:
        with self._state:
            sha = self.refs.get(branch_or_sha, branch_or_sha)
            tree = self.trees[self.commits[sha]["tree"]]
            return {path: self.blobs[b] for path, b in tree.items()}

    def head_sha(self, branch: str) -> str:
        with self._state:
            return self.refs[branch]

    def push(self, branch: str, files: dict[str, bytes] | None = None, *, message: str = "a new commit") -> str:
        """Someone pushes one commit onto `branch` (as a person would to a PR's branch); returns its sha."""
        with self._state:
            sha = self._make_commit(files or {}, parents=[self.refs[branch]], message=message)
            self.refs[branch] = sha
            return sha

    # --- git object store --------------------------------------------------------------
    def _put_blob(self, content: bytes) -> str:
        sha = blob_sha(content)
        self.blobs[sha] = content
        return sha

    def _put_tree(self, entries: dict[str, str]) -> str:
        sha = hashlib.sha1(json.dumps(sorted(entries.items())).encode()).hexdigest()
        self.trees[sha] = dict(entries)
        return sha

    def _make_commit(self, files: dict[str, bytes], *, parents: list[str], message: str, sha: str | None = None) -> str:
        base = dict(self.trees[self.commits[parents[0]]["tree"]]) if parents else {}
        base.update({path: self._put_blob(body) for path, body in files.items()})
        return self._store_commit(self._put_tree(base), parents, message, sha=sha)

    def _store_commit(self, tree: str, parents: list[str], message: str, *, sha: str | None = None) -> str:
        seq = next(self._ids)
        sha = sha or hashlib.sha1(json.dumps([tree, parents, message, seq]).encode()).hexdigest()
        person = {"name": "cutover-bot", "email": "cutover-bot@example.invalid", "date": _now()}
        self.commits[sha] = {"tree": tree, "parents": list(parents), "message": message, "author": person}
        return sha

    def _is_ancestor(self, old: str, new: str) -> bool:
        todo, seen = [new], set()
        while todo:
            sha = todo.pop()
            if sha == old:
                return True
            if sha in seen or sha not in self.commits:
                continue
            seen.add(sha)
            todo.extend(self.commits[sha]["parents"])
        return False

    # --- JSON shapes PyGithub reads ----------------------------------------------------
    @property
    def api(self) -> str:
        return f"{self.url}/repos/{self.repo}"

    @property
    def html(self) -> str:
        return f"{self.url}/{self.repo}"

    def _repo_json(self, full_name: str | None = None) -> dict[str, Any]:
        full_name = full_name or self.repo
        owner, name = full_name.split("/")
        return {
            "id": abs(hash(full_name)) % 10**8,
            "node_id": f"R_{name}",
            "name": name,
            "full_name": full_name,
            "owner": {"login": owner, "id": 1, "type": "Organization"},
            "private": True,
            "fork": full_name != self.repo,
            "url": f"{self.url}/repos/{full_name}",
            "html_url": f"{self.url}/{full_name}",
            "default_branch": self.default_branch,
            "permissions": {
                "admin": False,
                "maintain": False,
                "push": self.can_push,
                "triage": True,
                "pull": True,
            },
        }

    def _commit_json(self, sha: str) -> dict[str, Any]:
        c = self.commits[sha]
        return {
            "sha": sha,
            "node_id": f"C_{sha[:10]}",
            "url": f"{self.api}/git/commits/{sha}",
            "html_url": f"{self.html}/commit/{sha}",
            "author": c["author"],
            "committer": c["author"],
            "message": c["message"],
            "tree": {"sha": c["tree"], "url": f"{self.api}/git/trees/{c['tree']}"},
            "parents": [
                {"sha": p, "url": f"{self.api}/git/commits/{p}", "html_url": f"{self.html}/commit/{p}"}
                for p in c["parents"]
            ],
            "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None},
        }

    def _ref_json(self, branch: str) -> dict[str, Any]:
        sha = self.refs[branch]
        return {
            "ref": f"refs/heads/{branch}",
            "node_id": f"REF_{branch}",
            "url": f"{self.api}/git/refs/heads/{branch}",
            "object": {"sha": sha, "type": "commit", "url": f"{self.api}/git/commits/{sha}"},
        }

    def _pull_json(self, number: int) -> dict[str, Any]:
        p = self.pulls[number]
        head_repo = p["fork"] or self.repo
        head_sha = p["fork_sha"] if p["fork"] else self.refs.get(p["branch"], p["fork_sha"])
        owner = head_repo.split("/")[0]
        base_sha = self.refs[p["base"]]
        merged = p["state"] == "merged"
        return {
            "id": 500_000 + number,
            "node_id": f"PR_{number}",
            "number": number,
            "state": "open" if p["state"] == "open" else "closed",
            "closed_at": p["closed_at"],
            "merged_at": p["closed_at"] if merged else None,
            "title": f"Cutover evidence #{number}",
            "url": f"{self.api}/pulls/{number}",
            "html_url": f"{self.html}/pull/{number}",
            "issue_url": f"{self.api}/issues/{number}",
            "comments_url": f"{self.api}/issues/{number}/comments",
            "statuses_url": f"{self.api}/statuses/{head_sha}",
            "user": {"login": owner, "id": 2, "type": "User"},
            "maintainer_can_modify": False,
            "merged": merged,
            "draft": False,
            "head": {
                "label": f"{owner}:{p['branch']}",
                "ref": p["branch"],
                "sha": head_sha,
                "repo": self._repo_json(head_repo),
                "user": {"login": owner, "id": 2, "type": "User"},
            },
            "base": {
                "label": f"{self.repo.split('/')[0]}:{p['base']}",
                "ref": p["base"],
                "sha": base_sha,
                "repo": self._repo_json(),
                "user": {"login": self.repo.split("/")[0], "id": 1, "type": "Organization"},
            },
        }

    def _comment_json(self, c: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": c["id"],
            "node_id": f"IC_{c['id']}",
            "url": f"{self.api}/issues/comments/{c['id']}",
            "html_url": f"{self.html}/pull/{c['pr']}#issuecomment-{c['id']}",
            "issue_url": f"{self.api}/issues/{c['pr']}",
            "body": c["body"],
            "user": self._user_json(c["author"]),
            "created_at": c["created_at"],
            "updated_at": c["updated_at"],
        }

    def _status_json(self, s: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": s["id"],
            "node_id": f"ST_{s['id']}",
            "url": f"{self.api}/statuses/{s['sha']}",
            "state": s["state"],
            "description": s["description"],
            "target_url": s["target_url"],
            "context": s["context"],
            "created_at": s["created_at"],
            "updated_at": s["created_at"],
            "creator": self._user_json(s["creator"]),
        }

    def _user_json(self, login: str) -> dict[str, Any]:
        bot = login.endswith("[bot]")
        uid = int(hashlib.sha1(login.encode()).hexdigest()[:7], 16)
        return {
            "login": login,
            "id": uid,
            "node_id": f"U_{uid}",
            "type": "Bot" if bot else "User",
            "url": f"{self.url}/users/{login}",
            "html_url": f"{self.url}/{'apps/' + login[:-5] if bot else login}",
            "site_admin": False,
        }

    # --- routes ------------------------------------------------------------------------
    def _register_routes(self) -> None:
        r = "/repos/" + self.repo.replace(".", r"\.")
        routes = [
            ("GET", r"/user", self._get_user),
            ("POST", r"/graphql", self._graphql),
            ("GET", rf"{r}", self._get_repo),
            ("GET", rf"{r}/pulls/(?P<n>\d+)", self._get_pull),
            ("GET", rf"{r}/issues/(?P<n>\d+)/comments", self._list_comments),
            ("POST", rf"{r}/issues/(?P<n>\d+)/comments", self._create_comment),
            ("GET", rf"{r}/issues/comments/(?P<id>\d+)", self._get_comment),
            ("PATCH", rf"{r}/issues/comments/(?P<id>\d+)", self._edit_comment),
            ("POST", rf"{r}/statuses/(?P<sha>[0-9a-f]{{40}})", self._create_status),
            ("GET", rf"{r}/commits/(?P<sha>[^/]+)/statuses", self._list_statuses),
            ("GET", rf"{r}/statuses/(?P<sha>[^/]+)", self._list_statuses),  # the older path PyGithub uses
            ("GET", rf"{r}/git/refs?/heads/(?P<branch>.+)", self._get_ref),
            ("PATCH", rf"{r}/git/refs/heads/(?P<branch>.+)", self._update_ref),
            ("GET", rf"{r}/git/commits/(?P<sha>[0-9a-f]{{40}})", self._get_commit),
            ("POST", rf"{r}/git/blobs", self._create_blob),
            ("POST", rf"{r}/git/trees", self._create_tree),
            ("POST", rf"{r}/git/commits", self._create_commit),
            ("GET", rf"{r}/contents/(?P<path>.+)", self._get_contents),
            ("POST", rf"{r}/actions/workflows/(?P<wf>[^/]+)/dispatches", self._dispatch),
            ("GET", rf"{r}/actions/workflows/(?P<wf>[^/]+)/runs", self._list_workflow_runs),
            ("GET", rf"{r}/actions/runs/(?P<id>\d+)", self._get_workflow_run),
            ("POST", rf"{r}/issues/comments/(?P<id>\d+)/reactions", self._create_reaction),
            ("GET", rf"{r}/collaborators/(?P<login>[^/]+)/permission", self._collaborator_permission),
            ("GET", rf"{r}/deployments", self._list_deployments),
            ("POST", rf"{r}/deployments", self._create_deployment),
            ("GET", rf"{r}/deployments/(?P<id>\d+)", self._get_deployment),
            ("GET", rf"{r}/deployments/(?P<id>\d+)/statuses", self._list_deployment_statuses),
            ("POST", rf"{r}/deployments/(?P<id>\d+)/statuses", self._create_deployment_status),
        ]
        for method, pattern, handler in routes:
            self.route(method, pattern, self._authorized(handler))

    def _authorized(self, handler: Any) -> Any:
        def wrapped(req: Request) -> Response:
            if self._caller(req) is None:
                return Response(
                    401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
                )
            with self._state:
                return handler(req)

        return wrapped

    def _caller(self, req: Request) -> str | None:
        """The login behind the request's token, or None for an unknown token."""
        scheme, _, token = (req.header("authorization") or "").partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return None
        return self.logins.get(token)

    def _get_user(self, req: Request) -> Response:
        login = self._caller(req) or ""
        if login.endswith("[bot]"):  # an installation token is not a user
            return Response(
                403,
                {
                    "message": "Resource not accessible by integration",
                    "documentation_url": "https://docs.github.com/rest/users/users#get-the-authenticated-user",
                },
            )
        return Response(200, {**self._user_json(login), "name": login})

    def _graphql(self, req: Request) -> Response:
        query = str((req.json() or {}).get("query") or "")
        if "viewer" not in query:
            return Response(200, {"errors": [{"message": "the sandbox answers only `viewer { login }`"}]})
        return Response(200, {"data": {"viewer": {"login": self._caller(req)}}})

    def _get_repo(self, req: Request) -> Response:
        return Response(200, self._repo_json())

    def _get_pull(self, req: Request) -> Response:
        n = int(req.match["n"])
        return Response(200, self._pull_json(n)) if n in self.pulls else _not_found()

    def _list_comments(self, req: Request) -> Response:
        n = int(req.match["n"])
        if n not in self.pulls:
            return _not_found()
        items = [self._comment_json(c) for c in self._comments.values() if c["pr"] == n]
        per_page = min(int(req.query.get("per_page", ["30"])[-1]), 100)
        page = int(req.query.get("page", ["1"])[-1])
        chunk = items[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(items) // per_page))
        headers = {}
        if page < last:
            link = f"{self.api}/issues/{n}/comments?per_page={per_page}&page="
            headers["Link"] = f'<{link}{page + 1}>; rel="next", <{link}{last}>; rel="last"'
        return Response(200, chunk, headers)

    def _create_comment(self, req: Request) -> Response:
        n = int(req.match["n"])
        if n not in self.pulls:
            return _not_found()
        body = (req.json() or {}).get("body")
        if not isinstance(body, str) or not body:
            return _invalid("Validation Failed: body is missing")
        if len(body) > COMMENT_LIMIT:
            return _invalid("Validation Failed: body is too long (maximum is 65536 characters)")
        cid = next(self._ids)
        now = _now()
        author = self._caller(req)
        self._comments[cid] = {
            "id": cid,
            "pr": n,
            "body": body,
            "author": author,
            "created_at": now,
            "updated_at": now,
            "edits": 0,
        }
        return Response(201, self._comment_json(self._comments[cid]))

    def _get_comment(self, req: Request) -> Response:
        c = self._comments.get(int(req.match["id"]))
        return Response(200, self._comment_json(c)) if c else _not_found()

    def _edit_comment(self, req: Request) -> Response:
        c = self._comments.get(int(req.match["id"]))
        if c is None:
            return _not_found()
        caller = self._caller(req)
        # GitHub: the author edits, and so does anyone with write access (the bot's token here).
        if c["author"] != caller and not (caller == self.login and self.can_push):
            return Response(403, {"message": "Resource not accessible by integration"})
        body = (req.json() or {}).get("body")
        if not isinstance(body, str) or not body:
            return _invalid("Validation Failed: body is missing")
        if len(body) > COMMENT_LIMIT:
            return _invalid("Validation Failed: body is too long (maximum is 65536 characters)")
        c.update(body=body, updated_at=_now(), edits=c["edits"] + 1)
        return Response(200, self._comment_json(c))

    def _create_status(self, req: Request) -> Response:
        sha = req.match["sha"]
        if sha not in self.commits:
            return _invalid(f"No commit found for SHA: {sha}")
        data = req.json() or {}
        if data.get("state") not in STATUS_STATES:
            return _invalid("Validation Failed: state is not included in the list")
        description = data.get("description") or ""
        if len(description) > 140:
            return _invalid("Validation Failed: description is too long (maximum is 140 characters)")
        status = {
            "id": next(self._ids),
            "sha": sha,
            "state": data["state"],
            "description": description,
            "target_url": data.get("target_url"),
            "context": data.get("context") or "default",
            "created_at": _now(),
            "creator": self._caller(req),
        }
        self._statuses.append(status)
        return Response(201, self._status_json(status))

    def _list_statuses(self, req: Request) -> Response:
        sha = self.refs.get(unquote(req.match["sha"]), unquote(req.match["sha"]))
        items = [self._status_json(s) for s in reversed(self._statuses) if s["sha"] == sha]
        return Response(200, items)

    def _get_ref(self, req: Request) -> Response:
        branch = unquote(req.match["branch"])
        return Response(200, self._ref_json(branch)) if branch in self.refs else _not_found()

    def _update_ref(self, req: Request) -> Response:
        branch = unquote(req.match["branch"])
        if branch not in self.refs:
            return _invalid("Reference does not exist")
        data = req.json() or {}
        sha = data.get("sha")
        if sha not in self.commits:
            return _invalid("Object does not exist")
        if not self.can_push:
            return Response(403, {"message": "Resource not accessible by integration"})
        if not data.get("force") and not self._is_ancestor(self.refs[branch], sha):
            return _invalid("Update is not a fast forward")
        self.refs[branch] = sha
        return Response(200, self._ref_json(branch))

    def _get_commit(self, req: Request) -> Response:
        sha = req.match["sha"]
        return Response(200, self._commit_json(sha)) if sha in self.commits else _not_found()

    def _create_blob(self, req: Request) -> Response:
        data = req.json() or {}
        content = data.get("content", "")
        raw = base64.b64decode(content) if data.get("encoding") == "base64" else content.encode()
        sha = self._put_blob(raw)
        return Response(201, {"sha": sha, "url": f"{self.api}/git/blobs/{sha}"})

    def _create_tree(self, req: Request) -> Response:
        data = req.json() or {}
        base = data.get("base_tree")
        if base is not None and base not in self.trees:
            return _invalid("Invalid tree info: base_tree does not exist")
        entries = dict(self.trees[base]) if base else {}
        for item in data.get("tree") or []:
            path = item.get("path")
            if not path or path.startswith("/") or item.get("type") != "blob":
                return _invalid(f"Invalid tree info: {path!r}")
            if "content" in item:
                entries[path] = self._put_blob(item["content"].encode())
            elif item.get("sha") is None:
                entries.pop(path, None)
            elif item["sha"] in self.blobs:
                entries[path] = item["sha"]
            else:
                return _invalid(f"Invalid tree info: no blob {item['sha']}")
        sha = self._put_tree(entries)
        listing = [
            {"path": p, "mode": "100644", "type": "blob", "sha": b, "size": len(self.blobs[b])}
            for p, b in sorted(entries.items())
        ]
        return Response(201, {"sha": sha, "url": f"{self.api}/git/trees/{sha}", "tree": listing, "truncated": False})

    def _create_commit(self, req: Request) -> Response:
        data = req.json() or {}
        tree, parents = data.get("tree"), data.get("parents") or []
        if tree not in self.trees or any(p not in self.commits for p in parents):
            return _invalid("Invalid tree or parent SHA")
        sha = self._store_commit(tree, parents, data.get("message") or "")
        return Response(201, self._commit_json(sha))

    def _get_contents(self, req: Request) -> Response:
        ref = (req.query.get("ref") or [self.default_branch])[-1]
        sha = self.refs.get(ref, ref)
        if sha not in self.commits:
            return _not_found()
        path = unquote(req.match["path"]).strip("/")
        tree = self.trees[self.commits[sha]["tree"]]
        if path in tree:
            body = self.blobs[tree[path]]
            return Response(200, self._content_json(path, tree[path], body, ref))
        prefix = path + "/"
        children = sorted({p[len(prefix) :].split("/")[0] for p in tree if p.startswith(prefix)})
        if not children:
            return _not_found()
        listing = []
        for name in children:
            full = prefix + name
            if full in tree:
                listing.append(self._content_json(full, tree[full], None, ref))
            else:
                url = f"{self.api}/contents/{full}?ref={ref}"
                listing.append({"type": "dir", "name": name, "path": full, "sha": "0" * 40, "size": 0, "url": url})
        return Response(200, listing)

    def _content_json(self, path: str, sha: str, body: bytes | None, ref: str) -> dict[str, Any]:
        item = {
            "type": "file",
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "size": len(self.blobs[sha]),
            "url": f"{self.api}/contents/{path}?ref={ref}",
            "html_url": f"{self.html}/blob/{ref}/{path}",
            "git_url": f"{self.api}/git/blobs/{sha}",
            "download_url": f"{self.url}/raw/{self.repo}/{ref}/{path}",
        }
        if body is not None:
            item.update(encoding="base64", content=base64.b64encode(body).decode())
        return item

    def _dispatch(self, req: Request) -> Response:
        data = req.json() or {}
        ref = data.get("ref")
        if ref not in self.refs:
            return _invalid(f"No ref found for: {ref}")
        inputs = data.get("inputs") or {}
        if not isinstance(inputs, dict) or len(inputs) > MAX_DISPATCH_INPUTS:
            return _invalid(f"you may only define up to {MAX_DISPATCH_INPUTS} `inputs` for a `workflow_dispatch` event")
        for key, value in inputs.items():
            if not isinstance(value, str | bool | int | float):
                return _invalid(f"For 'properties/{key}', {json.dumps(value)} is not a string.")
        run_id = next(self._ids)
        workflow = unquote(req.match["wf"])
        self.dispatches.append({"workflow": workflow, "ref": ref, "inputs": inputs, "run_id": run_id})
        self.workflow_runs.append(
            {
                "id": run_id,
                "workflow": workflow,
                "ref": ref,
                "inputs": inputs,
                "display_title": self._run_name(workflow, inputs),
                "actor": self._caller(req),
                "created_at": _now(),
            }
        )
        if data.get("return_run_details") and self.run_details:
            run_url = f"{self.api}/actions/runs/{run_id}"
            return Response(
                200, {"workflow_run_id": run_id, "run_url": run_url, "html_url": f"{self.html}/actions/runs/{run_id}"}
            )
        return Response(204, None)

    # --- GitHub Actions runs, reactions, collaborators (commands from PR comments) -------
    def add_comment(self, pr: int, body: str, *, author: str) -> int:
        """A comment someone else wrote on the pull request; returns its id."""
        with self._state:
            if pr not in self.pulls:
                raise KeyError(f"no pull request #{pr}")
            cid = next(self._ids)
            now = _now()
            self._comments[cid] = {
                "id": cid,
                "pr": pr,
                "body": body,
                "author": author,
                "created_at": now,
                "updated_at": now,
                "edits": 0,
            }
            return cid

    def comment_json(self, comment_id: int) -> dict[str, Any]:
        """A comment as GitHub shows it (an `issue_comment` event carries this)."""
        with self._state:
            return self._comment_json(self._comments[comment_id])

    def set_role(self, login: str, role: str | None) -> None:
        """The person's role on the repository (None: not a collaborator)."""
        if role is not None and role not in COLLABORATOR_ROLES:
            raise ValueError(f"role must be one of {sorted(COLLABORATOR_ROLES)} or None, got {role!r}")
        with self._state:
            if role is None:
                self.roles.pop(login.lower(), None)
            else:
                self.roles[login.lower()] = role

    def reactions(self, comment_id: int) -> list[dict[str, Any]]:
        """Reactions on a comment, oldest first, each with `content` and `by`."""
        with self._state:
            return [dict(r) for r in self._reactions if r["comment_id"] == comment_id]

    def _run_name(self, workflow: str, inputs: dict[str, Any]) -> str:
        """The run-name with its expressions filled in, as far as a dispatch decides them: `inputs.X`,
        quoted literals and `a || b` (the first non-empty); any other context (github.*) is empty."""
        if self.run_name_template is None:
            return workflow

        def operand(text: str) -> str:
            text = text.strip()
            if text.startswith("inputs."):
                return str(inputs.get(text.removeprefix("inputs."), ""))
            if len(text) >= 2 and text[0] == text[-1] == "'":
                return text[1:-1]
            return ""

        def evaluate(m: re.Match[str]) -> str:
            return next((v for v in map(operand, m.group(1).split("||")) if v), "")

        return re.sub(r"\$\{\{(.*?)\}\}", evaluate, self.run_name_template)

    def _workflow_run_json(self, run: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": run["id"],
            "name": run["workflow"],
            "display_title": run["display_title"],
            "event": "workflow_dispatch",
            "status": "queued",
            "conclusion": None,
            "head_branch": run["ref"],
            "head_sha": self.refs.get(run["ref"], ""),
            "url": f"{self.api}/actions/runs/{run['id']}",
            "html_url": f"{self.html}/actions/runs/{run['id']}",
            "created_at": run["created_at"],
            "updated_at": run["created_at"],
            "actor": self._user_json(run["actor"] or "ghost"),
        }

    def _list_workflow_runs(self, req: Request) -> Response:
        workflow = unquote(req.match["wf"])
        event = (req.query.get("event") or [None])[-1]
        runs = [r for r in reversed(self.workflow_runs) if r["workflow"] == workflow]  # newest first
        if event not in (None, "workflow_dispatch"):
            runs = []
        per_page = min(int(req.query.get("per_page", ["30"])[-1]), 100)
        page = int(req.query.get("page", ["1"])[-1])
        chunk = runs[(page - 1) * per_page : page * per_page]
        return Response(200, {"total_count": len(runs), "workflow_runs": [self._workflow_run_json(r) for r in chunk]})

    def _get_workflow_run(self, req: Request) -> Response:
        wanted = int(req.match["id"])
        run = next((r for r in self.workflow_runs if r["id"] == wanted), None)
        return Response(200, self._workflow_run_json(run)) if run else _not_found()

    def _create_reaction(self, req: Request) -> Response:
        comment = self._comments.get(int(req.match["id"]))
        if comment is None:
            return _not_found()
        content = (req.json() or {}).get("content")
        if content not in REACTIONS:
            return _invalid("Validation Failed: content is not included in the list")
        by = self._caller(req)
        same = next(
            (r for r in self._reactions if (r["comment_id"], r["content"], r["by"]) == (comment["id"], content, by)),
            None,
        )
        if same is None:  # GitHub keeps one reaction per person and kind, answering 200 for a repeat
            same = {"id": next(self._ids), "comment_id": comment["id"], "content": content, "by": by}
            self._reactions.append(same)
            status = 201
        else:
            status = 200
        return Response(
            status,
            {"id": same["id"], "node_id": f"REA_{same['id']}", "content": content, "user": self._user_json(by or "")},
        )

    def _collaborator_permission(self, req: Request) -> Response:
        login = unquote(req.match["login"])
        role = self.roles.get(login.lower())
        if role is None:
            not_one = {"message": f"{login} is not a user", "documentation_url": "https://docs.github.com/rest"}
            return Response(404, not_one)
        legacy = {"maintain": "write", "triage": "read"}.get(role, role)  # `permission` is the older field
        return Response(200, {"permission": legacy, "role_name": role, "user": self._user_json(login)})

    # --- deployments -------------------------------------------------------------------
    # As GitHub validates them: `required_contexts` left out means every commit-status context on the
    # ref must be `success` (409 otherwise), a list names the contexts that must be, `[]` checks none;
    # `auto_merge` (default true) on a ref that lacks the default branch's head answers 409 here
    # (GitHub would try to merge the default branch into it). A `success` status with `auto_inactive`
    # (default true) marks the environment's earlier successful deployments `inactive`, only for
    # non-production, non-transient environments.

    def _resolve(self, ref: str) -> str | None:
        if ref in self.refs:
            return self.refs[ref]
        return ref if ref in self.commits else None

    def _context_states(self, sha: str) -> dict[str, str]:
        latest: dict[str, str] = {}
        for s in self._statuses:  # oldest first: the newest per context wins
            if s["sha"] == sha:
                latest[s["context"]] = s["state"]
        return latest

    def _create_deployment(self, req: Request) -> Response:
        data = req.json() or {}
        ref = data.get("ref")
        if not isinstance(ref, str) or not ref:
            return _invalid('Invalid request. "ref" wasn\'t supplied.')
        sha = self._resolve(ref)
        if sha is None:
            return _invalid(f"No ref found for: {ref}")
        description = data.get("description") or ""
        if len(description) > 140:
            return _invalid("Validation Failed: description is too long (maximum is 140 characters)")
        states = self._context_states(sha)
        required = data.get("required_contexts")
        wanted = sorted(states) if required is None else list(required)
        failing = [c for c in wanted if states.get(c) != "success"]
        if failing:
            return Response(
                409,
                {
                    "message": f"Conflict: Commit status checks failed for {ref}.",
                    "errors": [
                        {"contexts": [{"context": c, "state": states.get(c, "missing")} for c in failing],
                         "resource": "Deployment", "field": "required_contexts", "code": "invalid"}
                    ],
                },
            )  # fmt: skip
        if data.get("auto_merge", True) and not self._is_ancestor(self.refs[self.default_branch], sha):
            return Response(409, {"message": f"Conflict merging {self.default_branch} into {ref}."})
        payload = data.get("payload") or {}
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except ValueError:
                return _invalid("Validation Failed: payload is not valid JSON")
        environment = data.get("environment") or "production"
        did = next(self._ids)
        now = _now()
        self._deployments[did] = {
            "id": did,
            "sha": sha,
            "ref": ref,
            "task": data.get("task") or "deploy",
            "payload": payload,
            "environment": environment,
            "description": description,
            "transient_environment": bool(data.get("transient_environment", False)),
            "production_environment": bool(data.get("production_environment", environment == "production")),
            "auto_merge": data.get("auto_merge", True),
            "required_contexts": required,
            "creator": self._caller(req),
            "created_at": now,
            "updated_at": now,
        }
        return Response(201, self._deployment_json(self._deployments[did]))

    def _deployment_json(self, d: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": d["id"],
            "node_id": f"DE_{d['id']}",
            "url": f"{self.api}/deployments/{d['id']}",
            "sha": d["sha"],
            "ref": d["ref"],
            "task": d["task"],
            "payload": d["payload"],
            "original_environment": d["environment"],
            "environment": d["environment"],
            "description": d["description"],
            "creator": self._user_json(d["creator"]),
            "created_at": d["created_at"],
            "updated_at": d["updated_at"],
            "statuses_url": f"{self.api}/deployments/{d['id']}/statuses",
            "repository_url": self.api,
            "transient_environment": d["transient_environment"],
            "production_environment": d["production_environment"],
        }

    def _list_deployments(self, req: Request) -> Response:
        filters = {k: req.query[k][-1] for k in ("sha", "ref", "task", "environment") if k in req.query}
        items = [
            self._deployment_json(d)
            for d in reversed(self._deployments.values())  # newest first, as GitHub lists them
            if all(str(d.get(k)) == v for k, v in filters.items())
        ]
        per_page = min(int(req.query.get("per_page", ["30"])[-1]), 100)
        page = int(req.query.get("page", ["1"])[-1])
        return Response(200, items[(page - 1) * per_page : page * per_page])

    def _get_deployment(self, req: Request) -> Response:
        d = self._deployments.get(int(req.match["id"]))
        return Response(200, self._deployment_json(d)) if d else _not_found()

    def _deployment_status_json(self, s: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": s["id"],
            "node_id": f"DES_{s['id']}",
            "url": f"{self.api}/deployments/{s['deployment_id']}/statuses/{s['id']}",
            "state": s["state"],
            "creator": self._user_json(s["creator"]),
            "description": s["description"],
            "environment": s["environment"],
            "target_url": s["log_url"] or "",
            "log_url": s["log_url"] or "",
            "environment_url": s["environment_url"] or "",
            "created_at": s["created_at"],
            "updated_at": s["created_at"],
            "deployment_url": f"{self.api}/deployments/{s['deployment_id']}",
            "repository_url": self.api,
        }

    def _latest_state(self, deployment_id: int) -> str | None:
        found = [s["state"] for s in self._deployment_statuses if s["deployment_id"] == deployment_id]
        return found[-1] if found else None

    def _create_deployment_status(self, req: Request) -> Response:
        d = self._deployments.get(int(req.match["id"]))
        if d is None:
            return _not_found()
        data = req.json() or {}
        state = data.get("state")
        if state not in DEPLOYMENT_STATES:
            return _invalid("Validation Failed: state is not included in the list")
        description = data.get("description") or ""
        if len(description) > 140:
            return _invalid("Validation Failed: description is too long (maximum is 140 characters)")
        status = self._add_deployment_status(
            d,
            state,
            description=description,
            log_url=data.get("log_url") or data.get("target_url"),  # log_url replaces target_url
            environment_url=data.get("environment_url"),
            creator=self._caller(req),
        )
        if state == "success" and data.get("auto_inactive", True):
            for other in self._deployments.values():
                if (
                    other["id"] != d["id"]
                    and other["environment"] == d["environment"]
                    and not other["transient_environment"]
                    and not other["production_environment"]
                    and self._latest_state(other["id"]) == "success"
                ):
                    self._add_deployment_status(other, "inactive", creator=status["creator"])
        return Response(201, self._deployment_status_json(status))

    def _add_deployment_status(
        self,
        d: dict[str, Any],
        state: str,
        *,
        creator: str | None,
        description: str = "",
        log_url: str | None = None,
        environment_url: str | None = None,
    ) -> dict[str, Any]:
        status = {
            "id": next(self._ids),
            "deployment_id": d["id"],
            "state": state,
            "description": description,
            "environment": d["environment"],
            "log_url": log_url,
            "environment_url": environment_url,
            "creator": creator,
            "created_at": _now(),
        }
        self._deployment_statuses.append(status)
        d["updated_at"] = status["created_at"]
        return status

    def _list_deployment_statuses(self, req: Request) -> Response:
        did = int(req.match["id"])
        if did not in self._deployments:
            return _not_found()
        mine = [s for s in reversed(self._deployment_statuses) if s["deployment_id"] == did]  # newest first
        items = [self._deployment_status_json(s) for s in mine]
        return Response(200, items)
