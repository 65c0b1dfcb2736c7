"""A loopback IAM policy simulator: moto has no SimulatePrincipalPolicy, so this fake answers it.

It speaks IAM's query protocol (a form POST to `/`, XML back) so that a real boto3 IAM client reaches
it through `AWS_ENDPOINT_URL_IAM`. Decisions are rules set by the test or the demo:
`allow`, `deny(..., explicit=...)` or `refuse(...)` (the call itself is denied: AccessDenied, 403),
each optionally limited to some actions and some resources (names or ARNs). The last matching rule
wins; with no rule, every action is `allowed`. Any other IAM action (GetRole, ...) is passed through
to `upstream_url` (moto) when one is given, unless `refuse_call("GetRole")` makes it AccessDenied.

Requests are recorded as for every fake (`requests`, `received()`), and each simulation's parsed
arguments in `simulations`.
"""

from __future__ import annotations

import fnmatch
import re
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Literal, Self
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from integrations.sandbox.http import FakeUpstream, Request, Response

Decision = Literal["allowed", "implicitDeny", "explicitDeny", "refuse"]
DECISIONS: tuple[str, ...] = ("allowed", "implicitDeny", "explicitDeny", "refuse")
XMLNS = "https://iam.amazonaws.com/doc/2010-05-08/"
_PRINCIPAL = re.compile(r"arn:aws[\w-]*:iam::\d{12}:(role|user|group)/.+")


@dataclass(frozen=True)
class IamRule:
    decision: Decision
    actions: tuple[str, ...] = ()  # e.g. "ssm:PutParameter" or "ssm:*"; empty: every action
    resources: tuple[str, ...] = ()  # names or ARNs, e.g. "/rp-mw/prod/outbound_enabled"; empty: every resource

    def matches(self, action: str, resource: str) -> bool:
        if self.actions and not any(fnmatch.fnmatch(action.lower(), a.lower()) for a in self.actions):
            return False
        return not self.resources or any(_names(resource, r) for r in self.resources)


@dataclass(frozen=True)
class Simulation:
    policy_source_arn: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]


def _names(arn: str, ident: str) -> bool:
    """`ident` (a name or an ARN) names the resource `arn`: the whole ARN, or its last segment(s).

    An `ident` ending in "/" is a prefix: "rp-mw/prod/" names every secret and parameter under it.
    """
    if arn == ident or ident == "*":
        return True
    at = arn.find(ident)
    while at >= 0:
        before = arn[at - 1] if at > 0 else ":"
        after_i = at + len(ident)
        after = arn[after_i] if after_i < len(arn) else ""
        if (before in ":/" or ident.startswith("/")) and (after in ("", ":") or ident.endswith("/")):
            return True
        at = arn.find(ident, at + 1)
    return False


class IamFake(FakeUpstream):
    name = "iam"

    def __init__(self, *, upstream_url: str | None = None, known_principals: set[str] | None = None) -> None:
        super().__init__()
        self.upstream_url = upstream_url  # moto, for every action but SimulatePrincipalPolicy
        self.known_principals = known_principals  # None: any well-formed role or user ARN exists
        self.rules: list[IamRule] = []
        self.simulations: list[Simulation] = []
        self.page_size = 1000  # results per answer when the caller gives no MaxItems (lower it to test paging)
        self._rules_lock = threading.Lock()
        self.refused_calls: set[str] = set()  # IAM API actions (e.g. "GetRole") answered AccessDenied, not passed on
        self.route("POST", r"/", self._handle)

    def start(self) -> Self:
        super().start()
        return self

    def __enter__(self) -> Self:
        return self.start()

    # --- what a test or the demo sets ----------------------------------------------------------
    def allow(self, *, actions: tuple[str, ...] = (), resources: tuple[str, ...] = ()) -> None:
        self._add(IamRule("allowed", tuple(actions), tuple(resources)))

    def deny(self, *, actions: tuple[str, ...] = (), resources: tuple[str, ...] = (), explicit: bool = False) -> None:
        self._add(IamRule("explicitDeny" if explicit else "implicitDeny", tuple(actions), tuple(resources)))

    def refuse(self, *, resources: tuple[str, ...] = ()) -> None:
        """The caller may not simulate at all (no iam:SimulatePrincipalPolicy): AccessDenied, 403."""
        self._add(IamRule("refuse", (), tuple(resources)))

    def set_rule(self, decision: str, *, actions: tuple[str, ...] = (), resources: tuple[str, ...] = ()) -> None:
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
        self._add(IamRule(decision, tuple(actions), tuple(resources)))  # type: ignore[arg-type]

    def refuse_call(self, *actions: str) -> None:
        """The caller may not call these other IAM actions (e.g. "GetRole"): AccessDenied, 403."""
        with self._rules_lock:
            self.refused_calls.update(actions)

    def clear_rules(self) -> None:
        with self._rules_lock:
            self.rules.clear()
            self.refused_calls.clear()

    def reset(self) -> None:
        super().reset()
        self.clear_rules()
        with self._rules_lock:
            self.simulations.clear()

    def decision(self, action: str, resource: str) -> str:
        with self._rules_lock:
            rules = list(self.rules)
        for rule in reversed(rules):
            if rule.matches(action, resource):
                return rule.decision
        return "allowed"

    def _add(self, rule: IamRule) -> None:
        with self._rules_lock:
            self.rules.append(rule)

    # --- the protocol -------------------------------------------------------------------------
    def _handle(self, request: Request) -> Response:
        form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        action = (form.get("Action") or [""])[-1]
        if action in self.refused_calls:
            return _error(403, "AccessDenied", f"The caller is not authorized to perform: iam:{action}")
        if action != "SimulatePrincipalPolicy":
            return self._pass_through(request, action)
        source = (form.get("PolicySourceArn") or [""])[-1]
        actions = _members(form, "ActionNames")
        resources = _members(form, "ResourceArns") or ["*"]
        with self._rules_lock:
            self.simulations.append(Simulation(source, tuple(actions), tuple(resources)))
        if not actions:
            return _error(400, "ValidationError", "1 validation error detected: ActionNames must not be empty")
        if not _PRINCIPAL.fullmatch(source):
            return _error(
                400, "InvalidInput", "Invalid value for parameter PolicySourceArn: must be a role or user ARN"
            )
        if self.known_principals is not None and source not in self.known_principals:
            return _error(404, "NoSuchEntity", f"The principal {source} cannot be found.")
        pairs = [(a, r) for a in actions for r in resources]
        decisions = [self.decision(a, r) for a, r in pairs]
        if "refuse" in decisions:
            return _error(
                403,
                "AccessDenied",
                f"User: {source} is not authorized to perform: iam:SimulatePrincipalPolicy on resource: {source}",
            )
        start = int((form.get("Marker") or ["0"])[-1] or 0)
        max_items = int((form.get("MaxItems") or [str(self.page_size)])[-1] or self.page_size)
        page = list(zip(pairs, decisions, strict=True))[start : start + max_items]
        truncated = start + max_items < len(pairs)
        members = "".join(
            "<member>"
            f"<EvalActionName>{escape(a)}</EvalActionName>"
            f"<EvalResourceName>{escape(r)}</EvalResourceName>"
            f"<EvalDecision>{d}</EvalDecision>"
            "<MatchedStatements/><MissingContextValues/>"
            "</member>"
            for (a, r), d in page
        )
        marker = f"<Marker>{start + max_items}</Marker>" if truncated else ""
        body = (
            f'<SimulatePrincipalPolicyResponse xmlns="{XMLNS}">'
            "<SimulatePrincipalPolicyResult>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{marker}"
            f"<EvaluationResults>{members}</EvaluationResults>"
            "</SimulatePrincipalPolicyResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</SimulatePrincipalPolicyResponse>"
        )
        return Response(200, body.encode(), {"Content-Type": "text/xml"})

    def _pass_through(self, request: Request, action: str) -> Response:
        if not self.upstream_url:
            return _error(400, "InvalidAction", f"The action {action or '(none)'} is not valid for this endpoint.")
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length", "connection")}
        upstream = urllib.request.Request(self.upstream_url + request.path, data=request.body, headers=headers)
        try:
            with urllib.request.urlopen(upstream, timeout=10) as resp:
                return Response(resp.status, resp.read(), {"Content-Type": resp.headers.get("Content-Type", "")})
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read(), {"Content-Type": exc.headers.get("Content-Type", "text/xml")})


def _members(form: dict[str, list[str]], name: str) -> list[str]:
    prefix = f"{name}.member."
    indexed = [
        (int(k[len(prefix) :]), v[-1]) for k, v in form.items() if k.startswith(prefix) and k[len(prefix) :].isdigit()
    ]
    return [v for _, v in sorted(indexed)]


def _error(status: int, code: str, message: str) -> Response:
    kind = "Sender" if status < 500 else "Receiver"
    body = (
        f'<ErrorResponse xmlns="{XMLNS}">'
        f"<Error><Type>{kind}</Type><Code>{code}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId>"
        "</ErrorResponse>"
    )
    return Response(status, body.encode(), {"Content-Type": "text/xml"})
