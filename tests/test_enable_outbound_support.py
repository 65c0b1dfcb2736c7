"""Shared pieces of the /enable-outbound tests (no tests here): envs added to the session sandbox, a map
with per-env watch settings, the phases a run needs (recorded in the store as the preflight and canary
would), waits on positive signals, and reads of the lever straight from moto."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from commands.report import new_run_id
from commands.state import RunRecord, RunStatus, StateStore
from integrations.sandbox.env import ENGINEER, Sandbox, Scenario, outbound_parameter
from tests import waiting

# The cutover's own waits (watch, quiet window) run inside these: a longer default than other tests.
wait_for = partial(waiting.wait_for, timeout_s=20.0, poll_s=0.05)


def add_envs(sandbox: Sandbox, scenarios: dict[str, Scenario]) -> None:
    for name, scenario in scenarios.items():
        if name not in sandbox.envs:
            sandbox.add_env(name, scenario)


def write_map(
    sandbox: Sandbox,
    directory: Path,
    *,
    watch: dict[str, dict[str, Any]] | None = None,
    propagation: dict[str, float] | None = None,
) -> Path:
    """The sandbox's map (state and evidence in `directory`), with some envs' [watch] and
    outbound_flag.propagation_seconds set for a test."""
    text = sandbox.config_toml(
        evidence_dir=str(directory / "evidence"), state=f"sqlite:///{(directory / 'state.db').resolve()}"
    )
    for env, settings in (watch or {}).items():
        block = {"minutes": 0.1, "poll_seconds": 0.5, **settings}
        lines = "".join(f"{k} = {_toml(v)}\n" for k, v in block.items())
        pattern = re.compile(rf"^\[envs\.{re.escape(env)}\.watch\]\n(?:[a-z_]+ = .*\n)*", re.MULTILINE)
        section = f"[envs.{env}.watch]\n{lines}"
        text, count = pattern.subn(lambda _, section=section: section, text)
        assert count == 1, f"no [envs.{env}.watch] in the sandbox map"
    for env, seconds in (propagation or {}).items():
        old = f'ssm_parameter = "{outbound_parameter(env)}", propagation_seconds = 0.5'
        assert old in text, f"no SSM lever line for {env}"
        text = text.replace(old, f'ssm_parameter = "{outbound_parameter(env)}", propagation_seconds = {seconds}')
    # An automatic rollback's quiet window, shorter than the sandbox's (still whole seconds): faster tests.
    text = text.replace("quiet_minutes = 0.05", "quiet_minutes = 0.02")
    path = directory / "cutover.sandbox.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _toml(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def record_phases(store: StateStore, env: str, *commands: str, status: RunStatus = RunStatus.PASS) -> list[str]:
    """Runs finished in this order (a second apart, the newest just now), as the real commands record them."""
    ids = []
    now = datetime.now(UTC)
    for i, command in enumerate(commands):
        run_id = new_run_id()
        at = now - timedelta(seconds=len(commands) - i)
        store.record_run_start(RunRecord(run_id=run_id, env=env, command=command, started_at=at, requested_by=ENGINEER))
        store.record_run_finish(env, run_id, status, finished_at=at + timedelta(milliseconds=500))
        ids.append(run_id)
    return ids


def lever(sandbox: Sandbox, env: str) -> tuple[str, int]:
    """(value, version) of the env's SSM lever, read straight from moto."""
    param = sandbox.aws.client("ssm").get_parameter(Name=outbound_parameter(env))["Parameter"]
    return param["Value"], int(param["Version"])


def lever_writes(sandbox: Sandbox, env: str, value: str) -> int:
    """How many versions of the env's SSM lever hold `value` (each write is a version)."""
    history = sandbox.aws.client("ssm").get_parameter_history(Name=outbound_parameter(env))["Parameters"]
    return sum(1 for p in history if p["Value"] == value)


def set_alarm(sandbox: Sandbox, env: str, kind: str, state: str, reason: str) -> str:
    name = f"rp-mw-{env}-{kind}"
    sandbox.aws.client("cloudwatch").set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)
    return name


def watching(store: StateStore, env: str) -> bool:
    return any(w.env == env for w in store.active_watches())
