"""Shared fixtures: one sandbox per test session, with one environment per scenario.

Each scenario is its own environment (own fakes, own AWS resources), so tests need no reseeding;
upstream faults are injected per test on the healthy `prod` and cleared after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.config import CutoverConfig, load_config
from integrations.sandbox.env import Sandbox, Scenario

SCENARIOS = {
    "prod": Scenario(),
    "missing-secret": Scenario(missing_secrets=("richpanel_bot_agent_id",)),
    "wrong-flag": Scenario(flag_overrides={"RICHPANEL_OUTBOUND_ENABLED": "true", "SHOPIFY_WRITE_DISABLED": None}),
    "stale-marker": Scenario(refresh_age_hours=12),
    "no-marker": Scenario(refresh_age_hours=None),
    "firing-alarm": Scenario(alarm_states={"worker-error-rate": "ALARM"}),
    "quiet-alarm": Scenario(alarm_states={"openai-failures": "INSUFFICIENT_DATA"}),
    "inert-alarms": Scenario(alarm_actions_enabled=False),
    "wrong-account": Scenario(config_account_id="999988887777"),
}


_SESSION: list[Sandbox] = []


@pytest.fixture(scope="session", autouse=True)
def session_sandbox() -> Iterator[Sandbox]:
    """Started before anything else on each worker, so its environment variables are the outermost: a
    module that points them elsewhere for a while (monkeypatch, another sandbox) restores them to these."""
    with Sandbox(SCENARIOS) as sb:
        _SESSION.append(sb)
        yield sb
        _SESSION.clear()


@pytest.fixture(scope="session")
def sandbox(session_sandbox: Sandbox) -> Sandbox:
    return session_sandbox  # modules that test a sandbox of their own override this name


@pytest.fixture(scope="module", autouse=True)
def _session_world_intact() -> None:
    """moto's state is process-wide: a module that tests the AWS sandbox itself resets it, and on an xdist
    worker such a module may run after others used the session's sandbox. Before each module (before its
    own fixtures), the session's world and variables are put back if anything took them away."""
    if _SESSION:
        if not _SESSION[0].world_intact():
            _SESSION[0].reseed()
        _SESSION[0].reapply_environ()


@pytest.fixture(scope="session")
def config_path(sandbox, tmp_path_factory) -> Path:
    return sandbox.write_config(tmp_path_factory.mktemp("config"))


@pytest.fixture(scope="session")
def config(config_path) -> CutoverConfig:
    return load_config(config_path)


@pytest.fixture(autouse=True)
def _clear_faults(request) -> Iterator[None]:
    yield
    sb = request.getfixturevalue("sandbox") if "sandbox" in request.fixturenames else None
    if isinstance(sb, Sandbox):  # other modules have a `sandbox` fixture of their own
        for fake in (sb.github, sb.slack, *(f for env in sb.envs.values() for f in env.fakes)):
            fake.clear_faults()


def assert_nothing_planted(sandbox: Sandbox, *outputs: str) -> None:
    """No secret value or PII the sandbox planted appears in any of these outputs."""
    for value in sandbox.planted():
        for out in outputs:
            assert value not in out, "a planted secret or PII value escaped"
