"""The shared store: one DynamoDB table, for several bot processes and GitHub Actions runners.

Single-table layout (string keys `pk`, `sk`; times are fixed-width UTC strings, so they compare as text):

| item | pk | sk | notes |
|---|---|---|---|
| run | `ENV#<env>` | `RUN#<run_id>` | `run_at`, `run_cmd_at` (below) |
| lock | `ENV#<env>` | `LOCK` | `token`, `holder` (JSON), `since`, `expires_at` |
| approval | `APPROVAL#<id>` | `APPROVAL` | every field; `params` as JSON |
| approval pointer | `ENV#<env>` | `APPROVAL#<expires_at>#<id>` | lists an env's unexpired approvals |
| watch | `WATCHES` | `<env>#<run_id>` | `body` (JSON) |
| confirmation | `RUN#<run_id>` | `CONFIRM#<step>` | `body` (JSON) |
| audit entry | `AUDIT#<env>` | `<at>#<random>` | newest last in key order |

A run also carries `run_at` = `<started>#<run_id>` (sort key of the LSI `by_time`) and
`run_cmd_at` = `<command>#<started>#<run_id>` (sort key of the LSI `by_command`).

The two local secondary indexes must exist when the table is created (`create_table_if_missing`
makes them); local indexes allow strongly consistent queries, which a phase check needs (a PASS
preflight written a second ago must be seen). Every transition is one TransactWriteItems: the
conditional write and its audit entry land together or not at all. Every read is consistent.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from commands.state import common
from commands.state.model import (
    Approval,
    ApprovalError,
    ApprovalNotFound,
    ApprovalRequest,
    ApprovalStatus,
    AuditEntry,
    Confirmation,
    Decision,
    Lease,
    LockHeld,
    LockHolder,
    LockInfo,
    LockLost,
    RunAlreadyFinished,
    RunNotFound,
    RunRecord,
    RunStatus,
    StateError,
    StoreUnavailable,
    WatchState,
    as_utc,
)
from integrations.dynamodb_table import (
    ConditionFailed,
    Delete,
    DynamoTable,
    Operation,
    Put,
    TransactionConflict,
    Update,
)
from integrations.errors import UpstreamError

BY_TIME = "by_time"
BY_COMMAND = "by_command"
LOCAL_INDEXES = {BY_TIME: "run_at", BY_COMMAND: "run_cmd_at"}
_ATTEMPTS = 12  # a contended item is read again and the write retried at most this often
_ts = common.ts
_parse_ts = common.parse_ts
T = TypeVar("T")

_RUN_FIELDS = (
    "run_id",
    "env",
    "command",
    "status",
    "started_at",
    "finished_at",
    "requested_by",
    "surface",
    "pr",
    "head_sha",
    "evidence_url",
    "evidence_sha256",
    "summary",
    "dry_run",
)
_APPROVAL_TIMES = ("expires_at", "created_at", "decided_at", "used_at")


def _env_pk(env: str) -> str:
    return f"ENV#{env}"


def _run_key(env: str, run_id: str) -> dict[str, str]:
    return {"pk": _env_pk(env), "sk": f"RUN#{run_id}"}


def _lock_key(env: str) -> dict[str, str]:
    return {"pk": _env_pk(env), "sk": "LOCK"}


def _approval_key(approval_id: str) -> dict[str, str]:
    return {"pk": f"APPROVAL#{approval_id}", "sk": "APPROVAL"}


def _backoff(attempt: int) -> None:
    time.sleep(min(0.2, 0.005 * (2**attempt)) * (0.5 + secrets.randbelow(1000) / 1000))


class DynamoStore:
    """`DynamoStore("cutover-state")`; region and endpoint as boto3 resolves them (AWS_ENDPOINT_URL included)."""

    def __init__(self, table: str | DynamoTable, *, url: str | None = None, region: str | None = None) -> None:
        self.table = table if isinstance(table, DynamoTable) else DynamoTable(table, region=region)
        self.url = url or f"dynamodb://{self.table.name}"

    def close(self) -> None:
        """Nothing to close: the boto3 client's pool closes with the process."""

    def create_table_if_missing(self) -> bool:
        """For tests and the demo (production creates the table with its infrastructure)."""
        return self._upstream(lambda: self.table.create_if_missing(local_indexes=LOCAL_INDEXES))

    def check_reachable(self) -> None:
        """A consistent query on a local index: the table exists, answers, and has its indexes."""
        self._upstream(lambda: self.table.query("pk = :pk", values={":pk": "CHECK#reachable"}, index=BY_TIME, limit=1))

    # --- plumbing ------------------------------------------------------------------------------

    def _upstream(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except UpstreamError as exc:
            raise StoreUnavailable(f"the state store {self.url} is unavailable: {exc}") from exc

    def _transact(self, ops: list[Operation]) -> None:
        """ConditionFailed passes through; a TransactionConflict is retried here with a short backoff."""
        for attempt in range(_ATTEMPTS):
            try:
                self._upstream(lambda: self.table.transact(ops))
                return
            except TransactionConflict:
                _backoff(attempt)
        raise StoreUnavailable(f"the state store {self.url} kept reporting conflicting writes: try again")

    def _get(self, key: dict[str, str]) -> dict[str, Any] | None:
        return self._upstream(lambda: self.table.get(key))

    @staticmethod
    def _audit_put(
        env: str,
        actor: str,
        action: str,
        surface: str,
        run_id: str | None,
        detail: str,
        evidence_url: str | None,
        now: datetime,
    ) -> tuple[Put, AuditEntry]:
        entry = AuditEntry(
            at=now,
            env=env,
            actor=actor,
            action=action,
            surface=surface,
            run_id=run_id,
            detail=detail,
            evidence_url=evidence_url,
        )
        item = {
            "pk": f"AUDIT#{env}",
            "sk": f"{_ts(entry.at)}#{secrets.token_hex(6)}",
            "at": _ts(entry.at),
            "env": env,
            "actor": actor,
            "action": action,
            "surface": surface,
            "run_id": run_id,
            "detail": detail,
            "evidence_url": evidence_url,
        }
        return Put(item, condition="attribute_not_exists(pk)"), entry

    # --- audit ---------------------------------------------------------------------------------

    def audit(
        self,
        env: str,
        actor: str,
        action: str,
        surface: str,
        run_id: str | None = None,
        detail: str = "",
        evidence_url: str | None = None,
        *,
        now: datetime | None = None,
    ) -> AuditEntry:
        common.check_name("env", env)
        put, entry = self._audit_put(env, actor, action, surface, run_id, detail, evidence_url, as_utc(now))
        self._upstream(lambda: self.table.put(put))
        return entry

    def audit_trail(self, env: str, limit: int = 50) -> list[AuditEntry]:
        """Newest first."""
        items = self._upstream(
            lambda: self.table.query("pk = :pk", values={":pk": f"AUDIT#{env}"}, descending=True, limit=limit)
        )
        return [
            AuditEntry(
                at=_parse_ts(i["at"]),
                env=i["env"],
                actor=i["actor"],
                action=i["action"],
                surface=i["surface"],
                run_id=i.get("run_id"),
                detail=i.get("detail", ""),
                evidence_url=i.get("evidence_url"),
            )
            for i in items
        ]

    # --- runs ----------------------------------------------------------------------------------

    @staticmethod
    def _run_item(run: RunRecord) -> dict[str, Any]:
        started = _ts(run.started_at)
        item: dict[str, Any] = {
            **_run_key(run.env, run.run_id),
            "run_at": f"{started}#{run.run_id}",
            "run_cmd_at": f"{run.command}#{started}#{run.run_id}",
        }
        for name in _RUN_FIELDS:
            item[name] = getattr(run, name)
        item["status"] = run.status.value
        item["started_at"] = started
        item["finished_at"] = _ts(run.finished_at) if run.finished_at else None
        return item

    @staticmethod
    def _run_from_item(item: dict[str, Any]) -> RunRecord:
        data = {k: item.get(k) for k in _RUN_FIELDS}
        data["started_at"] = _parse_ts(data["started_at"])
        data["finished_at"] = _parse_ts(data["finished_at"])
        data["summary"] = data["summary"] or ""
        data["dry_run"] = bool(data["dry_run"])
        return RunRecord(**data)

    def record_run_start(self, run: RunRecord) -> RunRecord:
        """Store a new run (RUNNING, or already REFUSED for a refusal); run ids are unique per env."""
        common.check_name("env", run.env)
        common.check_name("run id", run.run_id)
        action = "run.refused" if run.status == RunStatus.REFUSED else "run.start"
        audit, _ = self._audit_put(
            run.env,
            run.requested_by,
            action,
            run.surface,
            run.run_id,
            common.run_start_detail(run.command, run.dry_run, run.summary),
            None,
            run.finished_at or run.started_at,
        )
        try:
            self._transact([Put(self._run_item(run), condition="attribute_not_exists(pk)"), audit])
        except ConditionFailed:
            raise StateError(f"run {run.run_id} is already recorded for {run.env}") from None
        return run

    def record_run_finish(
        self,
        env: str,
        run_id: str,
        status: RunStatus | str,
        *,
        finished_at: datetime | None = None,
        evidence_url: str | None = None,
        evidence_sha256: str | None = None,
        summary: str | None = None,
    ) -> RunRecord:
        status = RunStatus(status)
        if status == RunStatus.RUNNING:
            raise StateError("a run finishes as PASS, FAIL, INTERRUPTED or REFUSED, not RUNNING")
        finished = as_utc(finished_at)
        item = self._get(_run_key(env, run_id))
        if item is None:
            raise RunNotFound(f"no run {run_id} for {env} in the store")
        run = self._run_from_item(item)
        if run.status != RunStatus.RUNNING:
            raise RunAlreadyFinished(f"run {run_id} already finished as {run.status.value}")
        done = run.model_copy(
            update={
                "status": status,
                "finished_at": finished,
                "evidence_url": evidence_url if evidence_url is not None else run.evidence_url,
                "evidence_sha256": evidence_sha256 if evidence_sha256 is not None else run.evidence_sha256,
                "summary": summary if summary is not None else run.summary,
            }
        )
        sets = {"status": status.value, "finished_at": _ts(finished), "summary": done.summary}
        if done.evidence_url is not None:
            sets["evidence_url"] = done.evidence_url
        if done.evidence_sha256 is not None:
            sets["evidence_sha256"] = done.evidence_sha256
        names = {f"#{k}": k for k in sets}
        values: dict[str, Any] = {f":{k}": v for k, v in sets.items()}
        values[":running"] = RunStatus.RUNNING.value
        update = Update(
            _run_key(env, run_id),
            "SET " + ", ".join(f"#{k} = :{k}" for k in sets),
            condition="#status = :running",
            names=names,
            values=values,
        )
        detail = f"{run.command}: {status.value}" + (f": {done.summary}" if done.summary else "")
        audit, _ = self._audit_put(
            env, run.requested_by, "run.finish", run.surface, run_id, detail, done.evidence_url, finished
        )
        try:
            self._transact([update, audit])
        except ConditionFailed:
            again = self.get_run(env, run_id)
            raise RunAlreadyFinished(
                f"run {run_id} already finished as {again.status.value if again else 'unknown'}"
            ) from None
        return done

    def set_run_evidence(self, env: str, run_id: str, evidence_url: str, *, now: datetime | None = None) -> None:
        """The evidence link, known only once GitHub took it (after the run finished), with its audit entry."""
        item = self._get(_run_key(env, run_id))
        if item is None:
            raise RunNotFound(f"no run {run_id} for {env} in the store")
        run = self._run_from_item(item)
        update = Update(
            _run_key(env, run_id),
            "SET #evidence_url = :evidence_url",
            condition="attribute_exists(#run_id)",
            names={"#evidence_url": "evidence_url", "#run_id": "run_id"},
            values={":evidence_url": evidence_url},
        )
        audit, _ = self._audit_put(
            env, run.requested_by, "run.evidence", run.surface, run_id, "evidence attached", evidence_url, as_utc(now)
        )
        self._transact([update, audit])

    def get_run(self, env: str, run_id: str) -> RunRecord | None:
        item = self._get(_run_key(env, run_id))
        return self._run_from_item(item) if item else None

    def last_run(
        self, env: str, command: str, status: RunStatus | str | None = None, *, include_dry_run: bool = False
    ) -> RunRecord | None:
        """The newest run of `command` in `env` (by start time), optionally only with `status`; dry runs
        are left out unless asked for."""
        filters: list[str] = []
        names: dict[str, str] = {}
        values: dict[str, Any] = {":pk": _env_pk(env), ":prefix": f"{command}#"}
        if status is not None:
            filters.append("#status = :status")
            names["#status"] = "status"
            values[":status"] = RunStatus(status).value
        if not include_dry_run:
            filters.append("dry_run = :false")
            values[":false"] = False
        items = self._upstream(
            lambda: self.table.query(
                "pk = :pk AND begins_with(run_cmd_at, :prefix)",
                names=names,
                values=values,
                index=BY_COMMAND,
                descending=True,
                limit=1,
                filter_expression=" AND ".join(filters) or None,
                page_size=50,
            )
        )
        return self._run_from_item(items[0]) if items else None

    def runs(self, env: str, limit: int = 20, *, command: str | None = None) -> list[RunRecord]:
        """Newest first, dry runs included."""
        if command is None:
            query = lambda: self.table.query(  # noqa: E731
                "pk = :pk", values={":pk": _env_pk(env)}, index=BY_TIME, descending=True, limit=limit
            )
        else:
            query = lambda: self.table.query(  # noqa: E731
                "pk = :pk AND begins_with(run_cmd_at, :prefix)",
                values={":pk": _env_pk(env), ":prefix": f"{command}#"},
                index=BY_COMMAND,
                descending=True,
                limit=limit,
            )
        return [self._run_from_item(i) for i in self._upstream(query)]

    # --- the lock ------------------------------------------------------------------------------

    def _lock(self, env: str) -> tuple[str, LockInfo] | None:
        item = self._get(_lock_key(env))
        if item is None:
            return None
        info = LockInfo(
            env=env,
            holder=LockHolder.model_validate_json(item["holder"]),
            since=_parse_ts(item["since"]),
            expires_at=_parse_ts(item["expires_at"]),
        )
        return item["token"], info

    @staticmethod
    def _lock_put(lease: Lease, previous_token: str | None, *, must_be_expired_at: datetime | None) -> Put:
        item = {
            **_lock_key(lease.env),
            "token": lease.token,
            "holder": lease.holder.model_dump_json(),
            "since": _ts(lease.since),
            "expires_at": _ts(lease.expires_at),
        }
        if previous_token is None:
            return Put(item, condition="attribute_not_exists(pk)")
        if must_be_expired_at is None:
            return Put(item, condition="#token = :prev", names={"#token": "token"}, values={":prev": previous_token})
        return Put(
            item,
            condition="#token = :prev AND expires_at <= :now",
            names={"#token": "token"},
            values={":prev": previous_token, ":now": _ts(must_be_expired_at)},
        )

    def acquire(self, env: str, holder: LockHolder, lease_s: float, *, now: datetime | None = None) -> Lease:
        common.check_name("env", env)
        now = as_utc(now)
        lease = Lease(
            env=env, token=common.new_token(), holder=holder, since=now, expires_at=now + timedelta(seconds=lease_s)
        )
        for attempt in range(_ATTEMPTS):
            current = self._lock(env)
            previous = current[1] if current else None
            if previous is not None and previous.expires_at > now:
                raise LockHeld(env, previous.holder, previous.since, previous.expires_at)
            audit, _ = self._audit_put(
                env,
                holder.requested_by,
                "lock.take",
                holder.surface,
                holder.run_id,
                common.lock_taken_detail(previous, now),
                None,
                now,
            )
            put = self._lock_put(lease, current[0] if current else None, must_be_expired_at=now if current else None)
            try:
                self._transact([put, audit])
                return lease
            except ConditionFailed:
                _backoff(attempt)  # someone else wrote the lock since we read it: read again
        raise StoreUnavailable(f"the lock on {env} kept changing while it was being taken: try again")

    def renew(self, lease: Lease, lease_s: float | None = None, *, now: datetime | None = None) -> Lease:
        """Extend our lease; LockLost when the lock is no longer ours (preempted, or expired and taken)."""
        now = as_utc(now)
        seconds = lease_s if lease_s is not None else (lease.expires_at - lease.since).total_seconds()
        renewed = lease.model_copy(update={"expires_at": now + timedelta(seconds=seconds)})
        update = Update(
            _lock_key(lease.env),
            "SET expires_at = :exp",
            condition="#token = :token",
            names={"#token": "token"},
            values={":exp": _ts(renewed.expires_at), ":token": lease.token},
        )
        try:
            self._upstream(lambda: self.table.update(update))
        except ConditionFailed:
            current = self._lock(lease.env)
            raise LockLost(lease, current[1] if current else None) from None
        return renewed

    def release(self, lease: Lease, *, now: datetime | None = None) -> bool:
        """Free the lock if it is still ours; False (and nothing changed) when it is not."""
        now = as_utc(now)
        delete = Delete(
            _lock_key(lease.env), condition="#token = :token", names={"#token": "token"}, values={":token": lease.token}
        )
        audit, _ = self._audit_put(
            lease.env,
            lease.holder.requested_by,
            "lock.release",
            lease.holder.surface,
            lease.holder.run_id,
            "lock released",
            None,
            now,
        )
        try:
            self._transact([delete, audit])
        except ConditionFailed:
            return False
        return True

    def preempt(self, env: str, holder: LockHolder, lease_s: float, *, now: datetime | None = None) -> Lease:
        """Take the lock whoever holds it (rollback); the previous holder is recorded and returned."""
        common.check_name("env", env)
        now = as_utc(now)
        token = common.new_token()
        for attempt in range(_ATTEMPTS * 4):  # rollback must get through: retry longer than acquire does
            current = self._lock(env)
            previous = current[1] if current else None
            lease = Lease(
                env=env,
                token=token,
                holder=holder,
                since=now,
                expires_at=now + timedelta(seconds=lease_s),
                preempted=previous if previous is not None and previous.expires_at > now else None,
            )
            audit, _ = self._audit_put(
                env,
                holder.requested_by,
                "lock.preempt",
                holder.surface,
                holder.run_id,
                common.preempt_detail(previous, now),
                None,
                now,
            )
            try:
                self._transact([self._lock_put(lease, current[0] if current else None, must_be_expired_at=None), audit])
                return lease
            except ConditionFailed:
                _backoff(min(attempt, 5))
        raise StoreUnavailable(f"the lock on {env} kept changing while rollback was taking it: try again")

    def is_current(self, lease: Lease, *, now: datetime | None = None) -> bool:
        """True while the lock is ours and our lease has not run out (renew to keep it)."""
        now = as_utc(now)
        current = self._lock(lease.env)
        return current is not None and current[0] == lease.token and current[1].expires_at > now

    def lock_holder(self, env: str, *, now: datetime | None = None) -> LockInfo | None:
        """The live holder, or None (an expired lease is no holder)."""
        now = as_utc(now)
        current = self._lock(env)
        if current is None or current[1].expires_at <= now:
            return None
        return current[1]

    # --- approvals -----------------------------------------------------------------------------

    @staticmethod
    def _approval_item(a: Approval) -> dict[str, Any]:
        item: dict[str, Any] = {**_approval_key(a.approval_id)}
        data = a.model_dump(mode="python")
        for name, value in data.items():
            if name in _APPROVAL_TIMES:
                item[name] = _ts(value) if value is not None else None
            elif name == "params":
                item[name] = json.dumps(value, sort_keys=True)
            elif name == "status":
                item[name] = a.status.value
            else:
                item[name] = value
        return item

    @staticmethod
    def _approval_from_item(item: dict[str, Any]) -> Approval:
        data = {k: v for k, v in item.items() if k not in ("pk", "sk")}
        for name in _APPROVAL_TIMES:
            data[name] = _parse_ts(data.get(name))
        data["params"] = json.loads(data.get("params") or "{}")
        return Approval(**data)

    def _approval(self, approval_id: str) -> Approval:
        item = self._get(_approval_key(approval_id))
        if item is None:
            raise ApprovalNotFound(approval_id)
        return self._approval_from_item(item)

    def create_approval(self, request: ApprovalRequest, *, now: datetime | None = None) -> Approval:
        common.check_name("approval id", request.approval_id)
        common.check_name("env", request.env)
        json.dumps(request.params)  # JSON values only: fail here, not when it is read back
        now = as_utc(now)
        approval = Approval(**request.model_dump(), created_at=now)
        pointer = Put(
            {
                "pk": _env_pk(request.env),
                "sk": f"APPROVAL#{_ts(approval.expires_at)}#{request.approval_id}",
                "approval_id": request.approval_id,
            }
        )
        audit, _ = self._audit_put(
            request.env,
            request.requested_by,
            "approval.request",
            "slack",
            None,
            common.approval_request_detail(request),
            None,
            now,
        )
        try:
            self._transact([Put(self._approval_item(approval), condition="attribute_not_exists(pk)"), pointer, audit])
        except ConditionFailed:
            raise StateError(f"approval {request.approval_id} already exists") from None
        return approval

    def get_approval(self, approval_id: str) -> Approval | None:
        item = self._get(_approval_key(approval_id))
        return self._approval_from_item(item) if item else None

    def _transition(
        self,
        approval_id: str,
        actor: str,
        surface: str,
        run_id: str | None,
        now: datetime,
        refuse: Callable[[Approval], ApprovalError | None],
        write: Callable[[Approval], tuple[Update, Approval, str, str]],
    ) -> Approval:
        """Read, check, conditionally write with an audit entry; on a lost race read again and say why."""
        for attempt in range(_ATTEMPTS):
            current = self._approval(approval_id)
            refusal = refuse(current)
            if refusal is not None:
                put, _ = self._audit_put(
                    current.env, actor, "approval.refused", surface, run_id, str(refusal), None, now
                )
                self._upstream(lambda put=put: self.table.put(put))
                raise refusal
            update, after, action, detail = write(current)
            audit, _ = self._audit_put(current.env, actor, action, surface, run_id, detail, None, now)
            try:
                self._transact([update, audit])
                return after
            except ConditionFailed:
                _backoff(attempt)  # someone else decided, used or voided it first: the next read says who
        raise StoreUnavailable(f"approval {approval_id} kept changing while it was being updated: try again")

    def decide(
        self,
        approval_id: str,
        decided_by: str,
        decision: Decision,
        now: datetime | None = None,
        *,
        surface: str = "slack",
    ) -> Approval:
        """pending -> approved|rejected, once, before expiry; a second decider gets AlreadyDecided."""
        common.check_decision(decision)
        now = as_utc(now)

        def write(a: Approval) -> tuple[Update, Approval, str, str]:
            update = Update(
                _approval_key(approval_id),
                "SET #status = :decision, decided_by = :by, decided_at = :now",
                condition="#status = :pending AND expires_at > :now",
                names={"#status": "status"},
                values={":decision": decision, ":by": decided_by, ":now": _ts(now), ":pending": "pending"},
            )
            after = a.model_copy(
                update={"status": ApprovalStatus(decision), "decided_by": decided_by, "decided_at": now}
            )
            detail = f"approval {approval_id} {decision} for {a.command} requested by {a.requested_by}"
            return update, after, "approval.decide", detail

        return self._transition(
            approval_id,
            decided_by,
            surface,
            None,
            now,
            lambda a: common.why_not_decide(a, decided_by, decision, now),
            write,
        )

    def consume(
        self,
        approval_id: str,
        run_id: str,
        *,
        actor: str | None = None,
        surface: str = "cli",
        now: datetime | None = None,
        max_age_s: float | None = None,
    ) -> Approval:
        """Use an approved approval for one run, once; any later use is refused (ApprovalUsed)."""
        now = as_utc(now)
        current = self._approval(approval_id)
        who = actor or current.requested_by

        def write(a: Approval) -> tuple[Update, Approval, str, str]:
            update = Update(
                _approval_key(approval_id),
                "SET used_by_run = :run, used_at = :now",
                condition="#status = :approved AND attribute_not_exists(used_by_run)",
                names={"#status": "status"},
                values={":run": run_id, ":now": _ts(now), ":approved": "approved"},
            )
            after = a.model_copy(update={"used_by_run": run_id, "used_at": now})
            detail = f"approval {approval_id} (approved by {a.decided_by}) used by run {run_id}"
            return update, after, "approval.use", detail

        return self._transition(
            approval_id, who, surface, run_id, now, lambda a: common.why_not_consume(a, now, max_age_s), write
        )

    def void(
        self, approval_id: str, reason: str, *, actor: str = "cutover-bot", now: datetime | None = None
    ) -> Approval:
        """No longer usable (expired message, superseded, cancelled); voiding twice is a no-op."""
        now = as_utc(now)
        for attempt in range(_ATTEMPTS):
            current = self._approval(approval_id)
            if current.status == ApprovalStatus.VOID:
                return current
            refusal = common.why_not_void(current)
            if refusal is not None:
                raise refusal
            update = Update(
                _approval_key(approval_id),
                "SET #status = :void, void_reason = :reason",
                condition="#status IN (:pending, :approved) AND attribute_not_exists(used_by_run)",
                names={"#status": "status"},
                values={":void": "void", ":reason": reason, ":pending": "pending", ":approved": "approved"},
            )
            audit, _ = self._audit_put(
                current.env, actor, "approval.void", "bot", None, f"approval {approval_id} voided: {reason}", None, now
            )
            try:
                self._transact([update, audit])
                return current.model_copy(update={"status": ApprovalStatus.VOID, "void_reason": reason})
            except ConditionFailed:
                _backoff(attempt)
        raise StoreUnavailable(f"approval {approval_id} kept changing while it was being voided: try again")

    def pending_approvals(self, env: str, *, now: datetime | None = None) -> list[Approval]:
        """Pending and not yet expired, oldest first."""
        now = as_utc(now)
        pointers = self._upstream(
            lambda: self.table.query(
                "pk = :pk AND sk BETWEEN :from AND :to",
                values={":pk": _env_pk(env), ":from": f"APPROVAL#{_ts(now)}", ":to": "APPROVAL#~"},
            )
        )
        found = []
        for pointer in pointers:
            approval = self.get_approval(pointer["approval_id"])
            if approval is not None and approval.status == ApprovalStatus.PENDING and not approval.expired(now):
                found.append(approval)
        return sorted(found, key=lambda a: a.created_at)

    def set_approval_message(self, approval_id: str, channel: str, ts: str) -> None:
        update = Update(
            _approval_key(approval_id),
            "SET #channel = :channel, #ts = :ts",
            condition="attribute_exists(pk)",
            names={"#channel": "channel", "#ts": "message_ts"},
            values={":channel": channel, ":ts": ts},
        )
        try:
            self._upstream(lambda: self.table.update(update))
        except ConditionFailed:
            raise ApprovalNotFound(approval_id) from None

    # --- watches -------------------------------------------------------------------------------

    def save_watch(self, watch: WatchState) -> None:
        common.check_name("env", watch.env)
        common.check_name("run id", watch.run_id)
        put = Put({"pk": "WATCHES", "sk": f"{watch.env}#{watch.run_id}", "body": watch.model_dump_json()})
        self._upstream(lambda: self.table.put(put))

    def active_watches(self) -> list[WatchState]:
        items = self._upstream(lambda: self.table.query("pk = :pk", values={":pk": "WATCHES"}))
        return [WatchState.model_validate_json(i["body"]) for i in items]

    def clear_watch(self, env: str, run_id: str) -> bool:
        delete = Delete({"pk": "WATCHES", "sk": f"{env}#{run_id}"}, condition="attribute_exists(pk)")
        try:
            self._upstream(lambda: self.table.delete(delete))
        except ConditionFailed:
            return False
        return True

    # --- confirmations -------------------------------------------------------------------------

    def record_confirmation(
        self, env: str, run_id: str, step: str, confirmed_by: str, surface: str, *, now: datetime | None = None
    ) -> Confirmation:
        """The first confirmation of a step counts; a repeat returns that first one unchanged."""
        common.check_name("env", env)
        common.check_name("run id", run_id)
        common.check_name("step", step)
        now = as_utc(now)
        confirmation = Confirmation(
            env=env, run_id=run_id, step=step, confirmed_by=confirmed_by, surface=surface, at=now
        )
        put = Put(
            {"pk": f"RUN#{run_id}", "sk": f"CONFIRM#{step}", "body": confirmation.model_dump_json()},
            condition="attribute_not_exists(pk)",
        )
        audit, _ = self._audit_put(
            env, confirmed_by, "confirm", surface, run_id, f"{step} confirmed by {confirmed_by}", None, now
        )
        try:
            self._transact([put, audit])
        except ConditionFailed:
            existing = self.confirmation(run_id, step)
            if existing is None:  # pragma: no cover - a confirmation is never deleted
                raise StoreUnavailable(f"confirmation {step} for run {run_id} could not be recorded") from None
            return existing
        return confirmation

    def confirmation(self, run_id: str, step: str) -> Confirmation | None:
        item = self._get({"pk": f"RUN#{run_id}", "sk": f"CONFIRM#{step}"})
        return Confirmation.model_validate_json(item["body"]) if item else None
