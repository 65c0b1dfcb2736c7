"""Shared pieces of the GitHub Actions and PR-comment tests: the workflow file as data, its steps run the way
a runner runs them (bash, the step's env with inputs and secrets filled in), and maps for the sandbox
with `executor = "github-actions"` and `github_logins`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from commands.config import CutoverConfig, load_config
from integrations.sandbox.env import REPO, Sandbox
from integrations.sandbox.slack import Message

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "cutover.yml"
_EXPR = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def step(job: str, name: str) -> dict[str, Any]:
    for found in workflow()["jobs"][job]["steps"]:
        if found.get("name") == name:
            return found
    raise KeyError(f"no step {name!r} in job {job}")


def declared_inputs() -> dict[str, Any]:
    return workflow()["on"]["workflow_dispatch"]["inputs"]


def write_map(
    sandbox: Sandbox, directory: Path, *, executor: str = "local", logins: dict[str, dict[str, str]] | None = None
) -> Path:
    """The sandbox's map with `executor` and, per env, `github_logins`; its own store and evidence in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = sandbox.write_config(directory, evidence_dir=str(directory / "evidence"))
    text = path.read_text(encoding="utf-8").replace('executor = "local"', f'executor = "{executor}"')
    for env, mapping in (logins or {}).items():
        table = ", ".join(f'"{login}" = "{slack}"' for login, slack in mapping.items())
        text = text.replace(f"[envs.{env}]\n", f"[envs.{env}]\ngithub_logins = {{ {table} }}\n", 1)
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path) -> CutoverConfig:
    return load_config(path)


def run_step(
    job: str,
    name: str,
    *,
    sandbox: Sandbox,
    config_path: Path,
    inputs: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
    timeout_s: float = 120,
) -> subprocess.CompletedProcess[str]:
    """One `run:` step of the workflow as a runner runs it: bash, the step's `env:` with `inputs.*`,
    `secrets.*` and `github.token` filled in (inputs left out take the workflow's defaults), the venv's
    python first on PATH, and the variables Actions sets."""
    found = step(job, name)
    values = {name: _as_input(spec.get("default", "")) for name, spec in declared_inputs().items()}
    values.update(inputs or {})
    secrets = {"SLACK_BOT_TOKEN": sandbox.slack_bot_token}

    def fill(text: str) -> str:
        def one(m: re.Match[str]) -> str:
            expr = m.group(1)
            if expr.startswith("inputs."):
                return values.get(expr.removeprefix("inputs."), "")
            if expr.startswith("secrets."):
                return secrets.get(expr.removeprefix("secrets."), "")
            if expr == "github.token":
                return sandbox.github_token
            raise AssertionError(f"the test does not know how a runner fills ${{{{ {expr} }}}}")

        return _EXPR.sub(one, str(text))

    env = dict(os.environ)
    env.update({key: fill(value) for key, value in (found.get("env") or {}).items()})
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "CUTOVER_CONFIG": str(config_path),
            "GITHUB_ACTIONS": "true",
            "GITHUB_ACTOR": "octocat",
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_SERVER_URL": sandbox.github.url,
            "GITHUB_RUN_ID": "424242",
            **(extra_env or {}),
        }
    )
    return subprocess.run(
        ["bash", "-c", found["run"]], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _as_input(value: Any) -> str:
    """A default as the runner sees it in an expression's string form (`false`, not `False`)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def message_with(messages: Callable[[], list[Message]], text: str) -> Callable[[], Message | None]:
    return lambda: next((m for m in messages() if text in m.all_text()), None)
