"""The worker side of `ProcessRunner`: one run in its own process, sending back only redacted things.

The forkserver imports this module once; the warm-up below (service models, imports, the TLS
context) is then inherited by every forked run instead of being paid per run.
"""

from __future__ import annotations

import os
from dataclasses import replace
from multiprocessing.connection import Connection

from bot.execution.evidence_publisher import publisher_for
from commands import render
from commands.config import CutoverConfig
from commands.execute import EvidenceResult, RunRequest, execute
from commands.gate import Authorizer
from commands.redaction import REDACTOR, configure_process_logging
from commands.registry import COMMANDS, available
from commands.report import CheckResult
from integrations import aws, http

for _name in available():  # the command modules, imported once for every forked run
    COMMANDS[_name].load_runner()
aws.preload_models()
http.preload()


RUN_NICENESS = 10  # added to a non-urgent run's nice value (its own process only)


def work(
    request: RunRequest,
    config: CutoverConfig,
    environ: dict[str, str],
    publish: bool,
    authorizer: Authorizer | None,
    send: Connection,
) -> None:
    """Run one command; progress, the outcome or the error go back over `send`, redacted here, where
    the redactor has seen this run's secret values."""
    os.environ.clear()
    os.environ.update(environ)
    configure_process_logging()  # this process's own log redaction and token registration
    command = COMMANDS.get(request.command)
    if command is None or not command.urgent:
        os.nice(RUN_NICENESS)  # queued runs yield the CPU to an urgent one (rollback) and to the acks
    keep = request.include_aws_account_id
    try:
        publisher = publisher_for(config) if publish else None

        def progress(check: CheckResult) -> None:
            send.send(("progress", render.redacted_check(check, keep_account_ids=keep)))

        outcome = execute(request, config=config, progress=progress, publisher=publisher, authorizer=authorizer)
        evidence = outcome.evidence
        clean = replace(
            outcome,
            report=render.redacted(outcome.report, keep_account_ids=keep),
            evidence=EvidenceResult(evidence.state, REDACTOR.redact(evidence.detail), evidence.url),
        )
        send.send(("outcome", clean))
    except Exception as exc:
        send.send(("error", (exc.__class__.__name__, REDACTOR.redact(str(exc)))))
    finally:
        send.close()
