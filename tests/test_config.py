"""The environment map: what loads, and how each kind of mistake is reported (file, key, problem; exit 2)."""

import subprocess
import sys
from pathlib import Path

import pytest

from bot.terminal.cli import main
from commands.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "cutover.example.toml"


def write(tmp_path, text):
    path = tmp_path / "cutover.toml"
    path.write_text(text)
    return path


def example_with(old, new):
    text = EXAMPLE.read_text()
    assert old in text
    return text.replace(old, new, 1)


def test_the_committed_example_is_valid():
    config = load_config(EXAMPLE)
    assert set(config.envs) == {"prod", "dev"}
    prod = config.env("prod")
    assert prod.aws_region == "us-east-2" and prod.refresh_max_age_hours == 8
    assert prod.outbound_flag.ssm_parameter == "/rp-mw/prod/outbound_enabled"
    assert prod.approval_required == ["canary", "enable-outbound"]


def test_config_path_comes_from_cutover_config(tmp_path, monkeypatch):
    monkeypatch.setenv("CUTOVER_CONFIG", str(EXAMPLE))
    assert "prod" in load_config().envs


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ('aws_account_id = "111122223333"', 'aws_account_id = "1111"', "envs.prod.aws_account_id", "pattern"),
        ('aws_region = "us-east-2"\nshop', 'aws_regio = "us-east-2"\nshop', "envs.prod.aws_regio", "unknown key"),
        ('richpanel_api_key = "rp-mw/prod/richpanel/api_key"\n', "", "envs.prod.secrets", "richpanel_api_key"),
        ('executor = "local"', 'executor = "kubernetes"', "executor", "local"),
        ('openai = "https://api.openai.com/v1"', 'openai = "api.openai.com"', "envs.prod.endpoints.openai", "URL"),
        ('runners = ["S0CUTOVER"]', 'runners = ["alice"]', "envs.prod.runners.0", "pattern"),
    ],
)
def test_each_invalid_key_is_named_with_its_problem(tmp_path, old, new, key, problem):
    path = write(tmp_path, example_with(old, new))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(str(path))
    assert f"{key}:" in message
    assert problem in message


def test_missing_file_says_how_to_fix_it(tmp_path):
    with pytest.raises(ConfigError, match="no such file.*cutover.example.toml"):
        load_config(tmp_path / "nope.toml")


def test_invalid_toml_is_reported_not_raised(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[envs.prod\n"))


def test_unknown_env_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown environment 'staging'.*dev, prod"):
        load_config(EXAMPLE).env("staging")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["preflight", "--env", "staging", "--config", str(EXAMPLE)], "unknown environment 'staging'"),
        (["preflight", "--env", "prod", "--config", "/nonexistent/cutover.toml"], "no such file"),
        (["canary", "--env", "prod", "--confirm", "rule-maybe"], "invalid choice: 'rule-maybe'"),
        (["preflight", "--env", "prod", "--pr", "abc"], "positive integer"),
        (["preflight", "--env", "prod", "--runs", "0"], "positive integer"),
        (["launch-rockets"], "invalid choice"),
    ],
)
def test_bad_usage_and_config_exit_2_with_one_line(capsys, argv, needle):
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_real_process_prints_no_traceback(tmp_path):
    bad = write(tmp_path, "[envs.prod]\naws_account_id = 5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "preflight", "--env", "prod", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "envs.prod.aws_account_id" in proc.stderr
    assert "Traceback" not in proc.stderr
