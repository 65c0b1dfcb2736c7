"""Runs each command in a worker process, so its CPU never competes with Slack acks for the GIL.

A run's checks (boto3, httpx, pydantic, evidence, GitHub) are CPU work; in the web process they
starve the 3-second acks under load (bench/ack.py --sandbox: p99 5.8 s before). Each run is forked
from a preloaded forkserver (milliseconds, not an interpreter start), reports progress over a pipe,
and is killed if it passes its deadline. Everything that crosses back is redacted in the worker,
whose redactor is the one that saw the secret values.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from commands.config import ConfigError, CutoverConfig
from commands.execute import Outcome, Publisher, Refused, RunRequest, UsageError, execute
from commands.gate import Authorizer
from commands.registry import COMMANDS
from commands.report import CheckResult

RUN_DEADLINE_S = 15 * 60  # a run past this is stuck: its process is killed and the run reported failed
_PRELOAD = ["bot.execution.worker"]  # imported once by the forkserver: its warm-up is inherited by every run
# Errors a person must read as they are (not as an internal error), rebuilt from (class name, message).
_ERRORS: dict[str, Callable[[str], Exception]] = {
    "UsageError": UsageError,
    "ConfigError": ConfigError,
    "Refused": lambda message: Refused("gate", message),
}


class WorkerDied(RuntimeError):
    """The worker process ended without a result (killed, crashed, or past its deadline)."""


class ProcessRunner:
    """`execute`'s signature, run in a fresh worker process per run (bounded by the bot's executor)."""

    runs_execute = True  # the app may list the commands `execute` knows

    def __init__(
        self, *, deadline_s: float | None = None, publish: bool = True, urgent_in_process: bool = True
    ) -> None:
        self.deadline_s = deadline_s  # None: each command's own (the registry's deadline_s)
        self.publish = publish
        # An urgent run (rollback) runs here, on the app's urgent lane: no fork, warm AWS clients and
        # store, so its first write is never behind the queued runs' CPU (bench/rollback.py). It reads
        # no secret, and what it shows passes the app's renderers, which redact.
        self.urgent_in_process = urgent_in_process
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(_PRELOAD)

    def __call__(
        self,
        request: RunRequest,
        *,
        config: CutoverConfig,
        progress: Callable[[CheckResult], None] = lambda _: None,
        publisher: Publisher | None = None,
        authorizer: Authorizer | None = None,
    ) -> Outcome:
        command = COMMANDS.get(request.command)
        if self.urgent_in_process and command is not None and command.urgent:
            return execute(request, config=config, progress=progress, publisher=publisher, authorizer=authorizer)
        receive, send = self._context.Pipe(duplex=False)
        # The worker gets this process's environment as it is now (endpoints, tokens), not the
        # forkserver's from when it started; and builds its own publisher if this run has one.
        args = (request, config, dict(os.environ), self.publish and publisher is not None, authorizer, send)
        name = f"cutover-{request.command}-{request.env}"
        worker = self._context.Process(target=_start, args=args, name=name)
        worker.start()
        send.close()
        try:
            deadline_s = self.deadline_s or _deadline_of(request.command)
            return _collect(receive, worker, progress, deadline=time.monotonic() + deadline_s)
        finally:
            receive.close()
            if worker.is_alive():
                worker.kill()
            worker.join(timeout=5)


def _deadline_of(command: str) -> float:
    found = COMMANDS.get(command)
    return found.deadline_s if found else RUN_DEADLINE_S


def _collect(receive: Connection, worker: Any, progress: Callable[[CheckResult], None], *, deadline: float) -> Outcome:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            worker.kill()
            raise WorkerDied("the run passed its deadline and was stopped")
        if not receive.poll(min(remaining, 1.0)):
            if not worker.is_alive() and not receive.poll(0):
                raise WorkerDied(f"the run's worker process ended without a result (exit code {worker.exitcode})")
            continue
        try:
            kind, payload = receive.recv()
        except EOFError:
            raise WorkerDied(f"the run's worker process ended without a result (exit code {worker.exitcode})") from None
        if kind == "progress":
            progress(payload)
        elif kind == "outcome":
            return payload
        else:  # "error": (class name, message), already redacted
            name, message = payload
            rebuild = _ERRORS.get(name)
            raise rebuild(message) if rebuild else RuntimeError(f"{name}: {message}")


def _start(*args: Any) -> None:
    # Imported here, in the worker: the forkserver already holds the warm module, and the web
    # process never pays for a warm-up it does not use.
    from bot.execution.worker import work

    work(*args)
