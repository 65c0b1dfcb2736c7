"""The outbound lever (RICHPANEL_OUTBOUND_ENABLED): an SSM parameter or a key of the worker's Lambda
environment, as the env's map says. Read it, or set it and read it back, in either form.

Shared by /rollback, /canary (the lever must be off) and /enable-outbound (turn it on, roll back alone).
A write never trusts itself: the reading it returns is what a read finds afterwards.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta

from commands.config import EnvConfig, LambdaEnvFlag, SsmFlag
from integrations.aws import Aws, FlagReading
from integrations.errors import UpstreamError

# After a Lambda configuration update the function is `InProgress` for a moment: the new environment
# reaches new invocations only once it is `Successful`. Wait this long for it before reporting.
LAMBDA_UPDATE_WAIT_S = 10.0
_LAMBDA_POLL_S = 0.25


def aws_for(env: EnvConfig, *, region: str | None = None) -> Aws:
    """The AWS client a cutover command uses for `env` (the map's region unless the request overrides it)."""
    return Aws(region=region or env.aws_region, read_timeout_s=env.http_timeout_s, max_attempts=3)


def describe_lever(env: EnvConfig) -> str:
    """'SSM parameter /rp-mw/prod/outbound_enabled' or 'RICHPANEL_OUTBOUND_ENABLED on rp-mw-prod-worker'."""
    flag = env.outbound_flag
    if isinstance(flag, SsmFlag):
        return f"SSM parameter {flag.ssm_parameter}"
    return f"{flag.lambda_env} in the environment of {env.worker_function}"


def lever_api(env: EnvConfig, value: bool) -> str:
    """The exact write, for dry runs: which AWS call would change what."""
    text = "true" if value else "false"
    flag = env.outbound_flag
    if isinstance(flag, SsmFlag):
        return f"AWS SSM PutParameter {flag.ssm_parameter} = {text!r} (Overwrite, a new version), then GetParameter"
    return (
        f"AWS Lambda UpdateFunctionConfiguration {env.worker_function}: {flag.lambda_env} = {text!r}, every other "
        "variable written back as read, with the RevisionId read; then GetFunctionConfiguration"
    )


def propagation_seconds(env: EnvConfig) -> float:
    """How long the worker may keep acting on the old value after a write (its cache)."""
    return float(env.outbound_flag.propagation_seconds)


def effective_by(env: EnvConfig, reading: FlagReading, *, written_at: datetime) -> datetime:
    """When the worker surely sees `reading`: its write time (the service's, else ours) plus propagation."""
    base = reading.modified_at or written_at
    return base + timedelta(seconds=propagation_seconds(env))


def read_lever(aws: Aws, env: EnvConfig) -> FlagReading:
    """The lever now, with the version in effect. `value` None: the parameter or the key is absent."""
    flag = env.outbound_flag
    if isinstance(flag, SsmFlag):
        return aws.ssm_flag(flag.ssm_parameter)
    assert isinstance(flag, LambdaEnvFlag)
    return aws.lambda_flag(env.worker_function, flag.lambda_env)


def write_lever(aws: Aws, env: EnvConfig, value: bool) -> FlagReading:
    """Write the lever and read it back (no read before: the caller may already hold one).

    The Lambda form merges the one key into the whole environment and writes it with the RevisionId
    read, so no other variable is lost; it then waits (bounded) for the update to leave `InProgress`.
    Raises UpstreamError when the write or the read-back fails.
    """
    flag = env.outbound_flag
    if isinstance(flag, SsmFlag):
        return aws.set_ssm_flag(flag.ssm_parameter, value)
    reading = aws.set_lambda_flag(env.worker_function, flag.lambda_env, value)
    deadline = time.monotonic() + LAMBDA_UPDATE_WAIT_S
    while reading.update_status == "InProgress" and time.monotonic() < deadline:
        time.sleep(_LAMBDA_POLL_S)
        reading = replace(read_lever(aws, env), written_version=reading.written_version)
    return reading


def set_lever(aws: Aws, env: EnvConfig, value: bool) -> tuple[FlagReading | None, FlagReading]:
    """Write the lever and read it back: (what it was, what a read finds now).

    `previous` is None when it could not be read (the write is still attempted: a rollback must not
    stop at a failed read). Raises UpstreamError when the write or the read-back fails.
    """
    try:
        previous: FlagReading | None = read_lever(aws, env)
    except UpstreamError:
        previous = None
    return previous, write_lever(aws, env, value)


def account_of(reading: FlagReading | None) -> str | None:
    """The AWS account a reading came from (from the parameter's or function's ARN), if it says."""
    parts = (reading.arn or "").split(":") if reading is not None else []
    return parts[4] if len(parts) > 5 and parts[4].isdigit() else None


def reading_data(reading: FlagReading | None) -> dict[str, object]:
    """A reading as report data (JSON values only)."""
    if reading is None:
        return {}
    return {
        "value": reading.value,
        "version": reading.version,
        "modified_at": reading.modified_at.isoformat() if reading.modified_at else None,
        "source": reading.source,
        "update_status": reading.update_status,
        "written_version": reading.written_version,
    }
