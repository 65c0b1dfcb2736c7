"""The embedded store: one SQLite file, safe for several threads and processes on one host.

WAL mode (readers never block the writer), a busy timeout (writers wait for each other instead of
failing), and every read-modify-write inside `BEGIN IMMEDIATE` (the write lock is taken before the
read, so two processes cannot both see "free" and both take the lock). A connection per call:
sqlite3 connections must not cross threads or forks, and opening one costs well under a millisecond.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from commands.state import common
from commands.state.model import (
    Approval,
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
    utc_now,
)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT NOT NULL, env TEXT NOT NULL, command TEXT NOT NULL, status TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT, requested_by TEXT NOT NULL, surface TEXT NOT NULL,
    pr INTEGER, head_sha TEXT, evidence_url TEXT, evidence_sha256 TEXT, summary TEXT NOT NULL DEFAULT '',
    dry_run INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (env, run_id)
);
CREATE INDEX IF NOT EXISTS runs_by_command ON runs (env, command, started_at);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (env, started_at);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, env TEXT NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, surface TEXT NOT NULL, run_id TEXT, detail TEXT NOT NULL DEFAULT '', evidence_url TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_env ON audit (env, seq);
CREATE TABLE IF NOT EXISTS locks (
    env TEXT PRIMARY KEY, token TEXT NOT NULL, holder TEXT NOT NULL, since TEXT NOT NULL, expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY, env TEXT NOT NULL, status TEXT NOT NULL, expires_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_by_env ON approvals (env, status, expires_at);
CREATE TABLE IF NOT EXISTS watches (env TEXT NOT NULL, run_id TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (env, run_id));
CREATE TABLE IF NOT EXISTS confirmations (run_id TEXT NOT NULL, step TEXT NOT NULL, env TEXT NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (run_id, step));
"""

_RUN_COLUMNS = (
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


# Column names are this module's constants and every value is bound: no text from outside reaches the SQL.
_INSERT_RUN = f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(_RUN_COLUMNS))})"  # noqa: S608
_ts = common.ts
_parse_ts = common.parse_ts


class SqliteStore:
    """`SqliteStore(Path("var/cutover.db"))`: the file and its directory are created on first use."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0, url: str | None = None) -> None:
        self.path = Path(path)
        self.url = url or f"sqlite:///{self.path}"
        self._busy_timeout_s = busy_timeout_s
        self._ready = False

    # --- connections -----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self._init()
        return self._raw_connect()

    def _raw_connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the state file {self.path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _init(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the directory for the state file {self.path}: {exc}") from exc
        conn = self._raw_connect()
        try:
            self._ensure_wal(conn)
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta (k, v) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot initialise the state file {self.path}: {exc}") from exc
        finally:
            conn.close()
        self._ready = True

    def _ensure_wal(self, conn: sqlite3.Connection) -> None:
        """WAL is a property of the file, set once. Switching needs a moment without other connections'
        transactions, and SQLite may answer "locked" at once rather than wait: retry until the busy timeout."""
        deadline = time.monotonic() + self._busy_timeout_s
        delay = 0.005
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() == "wal":
                    return
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() == "wal":
                    return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            if time.monotonic() >= deadline:
                raise StoreUnavailable(f"cannot switch the state file {self.path} to WAL mode: it stays locked")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"state file {self.path}: {exc}") from exc
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed when the block ends, rolled back if it raises.

        A StateError raised inside still commits what was written before it (a refusal's audit entry).
        """
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except StateError:
                conn.execute("COMMIT")
                raise
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"state file {self.path}: {exc}") from exc
        finally:
            conn.close()

    def close(self) -> None:
        """Nothing to close: connections live for one call."""

    def check_reachable(self) -> None:
        try:
            with self._write() as conn:
                conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('checked_at', ?)", (_ts(utc_now()),))
        except StoreUnavailable as exc:
            raise StoreUnavailable(f"the state store is not writable: {exc}") from exc

    # --- audit -------------------------------------------------------------------------------

    def _audit(
        self,
        conn: sqlite3.Connection,
        env: str,
        actor: str,
        action: str,
        surface: str,
        run_id: str | None,
        detail: str,
        evidence_url: str | None,
        now: datetime,
    ) -> AuditEntry:
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
        conn.execute(
            "INSERT INTO audit (env, at, actor, action, surface, run_id, detail, evidence_url)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (env, _ts(entry.at), actor, action, surface, run_id, detail, evidence_url),
        )
        return entry

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
        with self._write() as conn:
            return self._audit(conn, env, actor, action, surface, run_id, detail, evidence_url, as_utc(now))

    def audit_trail(self, env: str, limit: int = 50) -> list[AuditEntry]:
        """Newest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT * FROM audit WHERE env = ? ORDER BY seq DESC LIMIT ?", (env, int(limit))
            ).fetchall()
        return [
            AuditEntry(
                at=_parse_ts(r["at"]),
                env=r["env"],
                actor=r["actor"],
                action=r["action"],
                surface=r["surface"],
                run_id=r["run_id"],
                detail=r["detail"],
                evidence_url=r["evidence_url"],
            )
            for r in rows
        ]

    # --- runs --------------------------------------------------------------------------------

    @staticmethod
    def _run_from_row(row: sqlite3.Row) -> RunRecord:
        data = {k: row[k] for k in _RUN_COLUMNS}
        data["started_at"] = _parse_ts(data["started_at"])
        data["finished_at"] = _parse_ts(data["finished_at"])
        data["dry_run"] = bool(data["dry_run"])
        return RunRecord(**data)

    def record_run_start(self, run: RunRecord) -> RunRecord:
        """Store a new run (RUNNING, or already REFUSED for a refusal); run ids are unique per env."""
        common.check_name("env", run.env)
        common.check_name("run id", run.run_id)
        values = run.model_dump()
        values["status"] = run.status.value
        values["started_at"] = _ts(run.started_at)
        values["finished_at"] = _ts(run.finished_at) if run.finished_at else None
        values["dry_run"] = int(run.dry_run)
        action = "run.refused" if run.status == RunStatus.REFUSED else "run.start"
        with self._write() as conn:
            try:
                conn.execute(_INSERT_RUN, [values[k] for k in _RUN_COLUMNS])
            except sqlite3.IntegrityError:
                raise StateError(f"run {run.run_id} is already recorded for {run.env}") from None
            self._audit(
                conn,
                run.env,
                run.requested_by,
                action,
                run.surface,
                run.run_id,
                common.run_start_detail(run.command, run.dry_run, run.summary),
                None,
                run.finished_at or run.started_at,
            )
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
        with self._write() as conn:
            row = conn.execute("SELECT * FROM runs WHERE env = ? AND run_id = ?", (env, run_id)).fetchone()
            if row is None:
                raise RunNotFound(f"no run {run_id} for {env} in the store")
            run = self._run_from_row(row)
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
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, evidence_url = ?, evidence_sha256 = ?, summary = ?"
                " WHERE env = ? AND run_id = ?",
                (status.value, _ts(finished), done.evidence_url, done.evidence_sha256, done.summary, env, run_id),
            )
            detail = f"{run.command}: {status.value}" + (f": {done.summary}" if done.summary else "")
            self._audit(
                conn, env, run.requested_by, "run.finish", run.surface, run_id, detail, done.evidence_url, finished
            )
        return done

    def set_run_evidence(self, env: str, run_id: str, evidence_url: str, *, now: datetime | None = None) -> None:
        """The evidence link, known only once GitHub took it (after the run finished), with its audit entry."""
        with self._write() as conn:
            row = conn.execute("SELECT * FROM runs WHERE env = ? AND run_id = ?", (env, run_id)).fetchone()
            if row is None:
                raise RunNotFound(f"no run {run_id} for {env} in the store")
            run = self._run_from_row(row)
            conn.execute("UPDATE runs SET evidence_url = ? WHERE env = ? AND run_id = ?", (evidence_url, env, run_id))
            self._audit(
                conn, env, run.requested_by, "run.evidence", run.surface, run_id, "evidence attached", evidence_url,
                as_utc(now),
            )  # fmt: skip

    def get_run(self, env: str, run_id: str) -> RunRecord | None:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM runs WHERE env = ? AND run_id = ?", (env, run_id)).fetchone()
        return self._run_from_row(row) if row else None

    def last_run(
        self, env: str, command: str, status: RunStatus | str | None = None, *, include_dry_run: bool = False
    ) -> RunRecord | None:
        """The newest run of `command` in `env` (by start time), optionally only with `status`; dry runs
        are left out unless asked for."""
        sql = "SELECT * FROM runs WHERE env = ? AND command = ?"
        args: list[Any] = [env, command]
        if status is not None:
            sql += " AND status = ?"
            args.append(RunStatus(status).value)
        if not include_dry_run:
            sql += " AND dry_run = 0"
        sql += " ORDER BY started_at DESC, rowid DESC LIMIT 1"
        with self._read() as conn:
            row = conn.execute(sql, args).fetchone()
        return self._run_from_row(row) if row else None

    def runs(self, env: str, limit: int = 20, *, command: str | None = None) -> list[RunRecord]:
        """Newest first, dry runs included."""
        sql = "SELECT * FROM runs WHERE env = ?"
        args: list[Any] = [env]
        if command is not None:
            sql += " AND command = ?"
            args.append(command)
        sql += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        args.append(int(limit))
        with self._read() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [self._run_from_row(r) for r in rows]

    # --- the lock ----------------------------------------------------------------------------

    @staticmethod
    def _lock_row(conn: sqlite3.Connection, env: str) -> tuple[str, LockInfo] | None:
        row = conn.execute("SELECT * FROM locks WHERE env = ?", (env,)).fetchone()
        if row is None:
            return None
        info = LockInfo(
            env=env,
            holder=LockHolder.model_validate_json(row["holder"]),
            since=_parse_ts(row["since"]),
            expires_at=_parse_ts(row["expires_at"]),
        )
        return row["token"], info

    @staticmethod
    def _put_lock(conn: sqlite3.Connection, lease: Lease) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO locks (env, token, holder, since, expires_at) VALUES (?, ?, ?, ?, ?)",
            (lease.env, lease.token, lease.holder.model_dump_json(), _ts(lease.since), _ts(lease.expires_at)),
        )

    def acquire(self, env: str, holder: LockHolder, lease_s: float, *, now: datetime | None = None) -> Lease:
        common.check_name("env", env)
        now = as_utc(now)
        lease = Lease(
            env=env,
            token=common.new_token(),
            holder=holder,
            since=now,
            expires_at=now + timedelta(seconds=lease_s),
        )
        with self._write() as conn:
            current = self._lock_row(conn, env)
            previous = current[1] if current else None
            if previous is not None and previous.expires_at > now:
                raise LockHeld(env, previous.holder, previous.since, previous.expires_at)
            self._put_lock(conn, lease)
            self._audit(
                conn,
                env,
                holder.requested_by,
                "lock.take",
                holder.surface,
                holder.run_id,
                common.lock_taken_detail(previous, now),
                None,
                now,
            )
        return lease

    def renew(self, lease: Lease, lease_s: float | None = None, *, now: datetime | None = None) -> Lease:
        """Extend our lease; LockLost when the lock is no longer ours (preempted, or expired and taken)."""
        now = as_utc(now)
        seconds = lease_s if lease_s is not None else (lease.expires_at - lease.since).total_seconds()
        renewed = lease.model_copy(update={"expires_at": now + timedelta(seconds=seconds)})
        with self._write() as conn:
            current = self._lock_row(conn, lease.env)
            if current is None or current[0] != lease.token:
                raise LockLost(lease, current[1] if current else None)
            conn.execute(
                "UPDATE locks SET expires_at = ? WHERE env = ? AND token = ?",
                (_ts(renewed.expires_at), lease.env, lease.token),
            )
        return renewed

    def release(self, lease: Lease, *, now: datetime | None = None) -> bool:
        """Free the lock if it is still ours; False (and nothing changed) when it is not."""
        now = as_utc(now)
        with self._write() as conn:
            cur = conn.execute("DELETE FROM locks WHERE env = ? AND token = ?", (lease.env, lease.token))
            if cur.rowcount != 1:
                return False
            self._audit(
                conn,
                lease.env,
                lease.holder.requested_by,
                "lock.release",
                lease.holder.surface,
                lease.holder.run_id,
                "lock released",
                None,
                now,
            )
        return True

    def preempt(self, env: str, holder: LockHolder, lease_s: float, *, now: datetime | None = None) -> Lease:
        """Take the lock whoever holds it (rollback); the previous holder is recorded and returned."""
        common.check_name("env", env)
        now = as_utc(now)
        with self._write() as conn:
            current = self._lock_row(conn, env)
            previous = current[1] if current else None
            lease = Lease(
                env=env,
                token=common.new_token(),
                holder=holder,
                since=now,
                expires_at=now + timedelta(seconds=lease_s),
                preempted=previous if previous is not None and previous.expires_at > now else None,
            )
            self._put_lock(conn, lease)
            self._audit(
                conn,
                env,
                holder.requested_by,
                "lock.preempt",
                holder.surface,
                holder.run_id,
                common.preempt_detail(previous, now),
                None,
                now,
            )
        return lease

    def is_current(self, lease: Lease, *, now: datetime | None = None) -> bool:
        """True while the lock is ours and our lease has not run out (renew to keep it)."""
        now = as_utc(now)
        with self._read() as conn:
            current = self._lock_row(conn, lease.env)
        return current is not None and current[0] == lease.token and current[1].expires_at > now

    def lock_holder(self, env: str, *, now: datetime | None = None) -> LockInfo | None:
        """The live holder, or None (an expired lease is no holder)."""
        now = as_utc(now)
        with self._read() as conn:
            current = self._lock_row(conn, env)
        if current is None or current[1].expires_at <= now:
            return None
        return current[1]

    # --- approvals ---------------------------------------------------------------------------

    @staticmethod
    def _approval(conn: sqlite3.Connection, approval_id: str) -> Approval | None:
        row = conn.execute("SELECT body FROM approvals WHERE approval_id = ?", (approval_id,)).fetchone()
        return Approval.model_validate_json(row["body"]) if row else None

    @staticmethod
    def _put_approval(conn: sqlite3.Connection, a: Approval) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO approvals (approval_id, env, status, expires_at, body) VALUES (?, ?, ?, ?, ?)",
            (a.approval_id, a.env, a.status.value, _ts(a.expires_at), a.model_dump_json()),
        )

    def create_approval(self, request: ApprovalRequest, *, now: datetime | None = None) -> Approval:
        common.check_name("approval id", request.approval_id)
        common.check_name("env", request.env)
        json.dumps(request.params)  # JSON values only: fail here, not when it is read back
        now = as_utc(now)
        approval = Approval(**request.model_dump(), created_at=now)
        with self._write() as conn:
            if self._approval(conn, request.approval_id) is not None:
                raise StateError(f"approval {request.approval_id} already exists")
            self._put_approval(conn, approval)
            self._audit(
                conn,
                request.env,
                request.requested_by,
                "approval.request",
                "slack",
                None,
                common.approval_request_detail(request),
                None,
                now,
            )
        return approval

    def get_approval(self, approval_id: str) -> Approval | None:
        with self._read() as conn:
            return self._approval(conn, approval_id)

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
        with self._write() as conn:
            current = self._approval(conn, approval_id)
            if current is None:
                raise ApprovalNotFound(approval_id)
            refusal = common.why_not_decide(current, decided_by, decision, now)
            if refusal is not None:
                self._audit(conn, current.env, decided_by, "approval.refused", surface, None, str(refusal), None, now)
                raise refusal
            decided = current.model_copy(
                update={"status": ApprovalStatus(decision), "decided_by": decided_by, "decided_at": now}
            )
            self._put_approval(conn, decided)
            self._audit(
                conn,
                current.env,
                decided_by,
                "approval.decide",
                surface,
                None,
                f"approval {approval_id} {decision} for {current.command} requested by {current.requested_by}",
                None,
                now,
            )
        return decided

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
        with self._write() as conn:
            current = self._approval(conn, approval_id)
            if current is None:
                raise ApprovalNotFound(approval_id)
            who = actor or current.requested_by
            refusal = common.why_not_consume(current, now, max_age_s)
            if refusal is not None:
                self._audit(conn, current.env, who, "approval.refused", surface, run_id, str(refusal), None, now)
                raise refusal
            used = current.model_copy(update={"used_by_run": run_id, "used_at": now})
            self._put_approval(conn, used)
            self._audit(
                conn,
                current.env,
                who,
                "approval.use",
                surface,
                run_id,
                f"approval {approval_id} (approved by {current.decided_by}) used by run {run_id}",
                None,
                now,
            )
        return used

    def void(
        self, approval_id: str, reason: str, *, actor: str = "cutover-bot", now: datetime | None = None
    ) -> Approval:
        """No longer usable (expired message, superseded, cancelled); voiding twice is a no-op."""
        now = as_utc(now)
        with self._write() as conn:
            current = self._approval(conn, approval_id)
            if current is None:
                raise ApprovalNotFound(approval_id)
            if current.status == ApprovalStatus.VOID:
                return current
            refusal = common.why_not_void(current)
            if refusal is not None:
                raise refusal
            voided = current.model_copy(update={"status": ApprovalStatus.VOID, "void_reason": reason})
            self._put_approval(conn, voided)
            self._audit(
                conn,
                current.env,
                actor,
                "approval.void",
                "bot",
                None,
                f"approval {approval_id} voided: {reason}",
                None,
                now,
            )
        return voided

    def pending_approvals(self, env: str, *, now: datetime | None = None) -> list[Approval]:
        """Pending and not yet expired, oldest first."""
        now = as_utc(now)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT body FROM approvals WHERE env = ? AND status = 'pending' AND expires_at > ?"
                " ORDER BY expires_at",
                (env, _ts(now)),
            ).fetchall()
        return sorted((Approval.model_validate_json(r["body"]) for r in rows), key=lambda a: a.created_at)

    def set_approval_message(self, approval_id: str, channel: str, ts: str) -> None:
        with self._write() as conn:
            current = self._approval(conn, approval_id)
            if current is None:
                raise ApprovalNotFound(approval_id)
            self._put_approval(conn, current.model_copy(update={"channel": channel, "message_ts": ts}))

    # --- watches -----------------------------------------------------------------------------

    def save_watch(self, watch: WatchState) -> None:
        common.check_name("env", watch.env)
        common.check_name("run id", watch.run_id)
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO watches (env, run_id, body) VALUES (?, ?, ?)",
                (watch.env, watch.run_id, watch.model_dump_json()),
            )

    def active_watches(self) -> list[WatchState]:
        with self._read() as conn:
            rows = conn.execute("SELECT body FROM watches ORDER BY env, run_id").fetchall()
        return [WatchState.model_validate_json(r["body"]) for r in rows]

    def clear_watch(self, env: str, run_id: str) -> bool:
        with self._write() as conn:
            cur = conn.execute("DELETE FROM watches WHERE env = ? AND run_id = ?", (env, run_id))
            return cur.rowcount == 1

    # --- confirmations -----------------------------------------------------------------------

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
        with self._write() as conn:
            row = conn.execute(
                "SELECT body FROM confirmations WHERE run_id = ? AND step = ?", (run_id, step)
            ).fetchone()
            if row is not None:
                return Confirmation.model_validate_json(row["body"])
            conn.execute(
                "INSERT INTO confirmations (run_id, step, env, body) VALUES (?, ?, ?, ?)",
                (run_id, step, env, confirmation.model_dump_json()),
            )
            self._audit(
                conn, env, confirmed_by, "confirm", surface, run_id, f"{step} confirmed by {confirmed_by}", None, now
            )
        return confirmation

    def confirmation(self, run_id: str, step: str) -> Confirmation | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT body FROM confirmations WHERE run_id = ? AND step = ?", (run_id, step)
            ).fetchone()
        return Confirmation.model_validate_json(row["body"]) if row else None
