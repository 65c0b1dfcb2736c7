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


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> Iterator[Sandbox]:
    with Sandbox(SCENARIOS) as sb:
        yield sb


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


# moto's state is process-wide: the modules that reset it (they test the AWS sandbox itself) run
# before anything starts the session sandbox, whose seeded world a reset would wipe. With xdist's
# `--dist loadfile` each worker is its own process and is handed whole files in this order.
RESETS_MOTO = ("tests/sandbox/test_aws_sandbox.py", "tests/test_aws_client.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def resets_first(item: pytest.Item) -> int:
        return 0 if item.nodeid.startswith(RESETS_MOTO) else 1

    items.sort(key=resets_first)  # stable: the order within each group stays as collected
