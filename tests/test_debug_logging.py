"""A whole preflight at DEBUG, as an operator chasing a problem would run it: nothing planted leaks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from integrations.sandbox.env import PR_NUMBER
from tests.conftest import assert_nothing_planted

ROOT = Path(__file__).resolve().parent.parent


def test_a_debug_preflight_with_evidence_on_the_pr_prints_no_planted_secret(sandbox, config_path, tmp_path):
    env = {**os.environ, "CUTOVER_LOG_LEVEL": "DEBUG"}
    argv = ["preflight", "--env", "prod", "--config", str(config_path), "--pr", str(PR_NUMBER)]
    done = subprocess.run(
        [sys.executable, "-m", "bot", *argv, "--evidence-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]  # the verdict is not the point: what was logged is
    assert " DEBUG " in done.stderr and "requested by" in done.stderr, "the run logged at DEBUG"
    assert_nothing_planted(sandbox, done.stdout, done.stderr)
    assert sandbox.github_token not in done.stderr
