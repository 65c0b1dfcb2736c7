"""Redaction fuzzing across every exit, end to end on real parts.

Each case is generated text carrying a registered secret, e-mail addresses, phone numbers and tokens, each
in one of the encodings the redactor claims (raw, JSON-escaped, URL-encoded, base64, ...), by the same
Hypothesis strategy as tests/test_redaction.py. It enters the way a hostile or broken upstream brings it:

- as an upstream answer: the Shopify fake answers 422 with it as its `errors`, and the real Shopify client's
  error (an UpstreamError) carries what it kept of it;
- as an AWS error message: moto, behind the fault middleware, answers 403 with it, and the real AWS client's
  error carries it;
- as an exception text (a step that raised) and as a step's data (an upstream answer kept as evidence).

and leaves by every exit: the Slack message the real app's renderer builds, posted by slack_sdk to the Slack
fake (what the fake received is checked); the sticky PR comment and proof files the publisher pushes to the
GitHub fake (what the fake received); the proof files written to disk; the chart's labels and the PNG's text
chunks; and every log record written through the process's redacting setup. A leak is any planted value
(or its encoded form) found in any exit.

    .venv/bin/python bench/fuzz_redaction.py            # 10,000 cases
    .venv/bin/python bench/fuzz_redaction.py --cases 500
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from commands.evidence import Bundle, write_bundle  # noqa: E402
from commands.redaction import RedactingFilter, Redactor  # noqa: E402
from commands.report import CheckResult, Report, Status, new_run_id  # noqa: E402
from integrations.errors import UpstreamError  # noqa: E402

BATCH = 25  # cases per report: each exit is exercised once per batch
LEAK_CONTEXT: list[str] = []  # where each leak was found (its exit's text around it), for the printout


@dataclass
class Case:
    text: str  # the planted text, as an upstream would send it
    secret: str  # the registered secret value inside it
    hidden: list[str]  # every value (and encoded form) that must not appear anywhere
    background: str  # the same text without the planted values (a value the filler made up is not a leak)


@dataclass
class Exits:
    texts: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, text: str) -> None:
        self.texts[name] = self.texts.get(name, "") + "\n" + text


def leaks(cases: list[Case], exits: Exits) -> list[tuple[str, str]]:
    """(exit, value) for every planted value found; redaction marks are blanked first (a value may be a
    word of a mark)."""
    found = []
    # Text the filler made up is not a leak: a value that also occurs in any case's text without the planted
    # values (e.g. eight zeros in one case's filler and as another case's token) proves nothing.
    backgrounds = "\n".join(case.background for case in cases)
    for name, text in exits.texts.items():
        bare = re.sub(r"\[REDACTED:[a-z0-9_-]+\]", "\0", text)
        for case in cases:
            for value in case.hidden:
                if len(value) >= 6 and value not in backgrounds and value in bare:
                    at = bare.index(value)
                    found.append((name, value))
                    LEAK_CONTEXT.append(f"{name}: ...{bare[max(0, at - 120) : at + len(value) + 40]!r}...")
    return found


def png_text(png: bytes) -> str:
    """The text chunks of a PNG (tEXt, zTXt, iTXt): what a viewer or a scraper reads without OCR."""
    out, pos = [], 8
    while pos + 8 <= len(png):
        length = int.from_bytes(png[pos : pos + 4], "big")
        kind = png[pos + 4 : pos + 8]
        data = png[pos + 8 : pos + 8 + length]
        if kind == b"tEXt":
            out.append(data.replace(b"\0", b": ").decode("latin-1"))
        elif kind == b"zTXt":
            key, _, rest = data.partition(b"\0")
            out.append(key.decode("latin-1") + ": " + zlib.decompress(rest[1:]).decode("latin-1"))
        elif kind == b"iTXt":
            out.append(data.decode("utf-8", "replace"))
        pos += 12 + length
    return "\n".join(out)


class Pipeline:
    """The upstreams and exits of one sandbox; `run(batch)` pushes a batch of cases through all of them."""

    def __init__(self, sandbox: Any, directory: Path, *, publish: bool = True) -> None:
        from integrations.aws import Aws
        from integrations.sandbox.aws_faults import install
        from integrations.shopify import ShopifyClient, StaticCredential

        self.sandbox = sandbox
        self.directory = directory
        self.publish = publish
        env = next(iter(sandbox.envs.values()))
        self.env = env
        self.shopify_fake = env.shopify
        self.shopify = ShopifyClient(
            base_url=env.shopify.url,
            shop_domain=env.shop_domain,
            credential=StaticCredential("rp-mw/fuzz/shopify_admin_api_token", env.secrets["shopify_admin_api_token"]),
            timeout_s=5,
        )
        self.aws_faults = install(sandbox.aws, access_key=sandbox.bot_access_key_id)
        self.aws = Aws(region="us-east-2", read_timeout_s=5, max_attempts=1)

    # --- the ways in -----------------------------------------------------------------------------
    def upstream_error(self, text: str) -> str:
        """Shopify answers 422 with the text as its `errors`: the real client keeps Shopify's own error text."""
        from integrations.sandbox.http import Fault

        self.shopify_fake.inject("shop.json", Fault("status", 422, body={"errors": text}, times=1))
        try:
            self.shopify.shop()
        except UpstreamError as exc:
            return str(exc)
        finally:
            self.shopify_fake.clear_faults()
        return "no error"

    def aws_error(self, text: str) -> str:
        from integrations.sandbox.http import Fault

        self.aws_faults.inject("sts", Fault("status", 403, body=text, times=1))
        try:
            self.aws.caller_identity()
        except UpstreamError as exc:
            return str(exc)
        finally:
            self.aws_faults.clear()
        return "no error"

    # --- the batch --------------------------------------------------------------------------------
    def run(
        self, cases: list[Case], *, with_upstreams: bool = True, redactor: Redactor | None = None
    ) -> list[tuple[str, str]]:
        redactor = redactor or Redactor()
        for i, case in enumerate(cases):
            redactor.register(f"planted_{i}", case.secret)  # as a run registers what it read from Secrets Manager
        exits = Exits()
        checks = []
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(RedactingFilter(redactor))
        log = logging.getLogger("bench.fuzz_redaction")
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(logging.DEBUG)
        now = datetime.now(UTC)
        try:
            for i, case in enumerate(cases):
                upstream = self.upstream_error(case.text) if with_upstreams else case.text
                aws = self.aws_error(case.text) if with_upstreams else case.text
                checks.append(CheckResult(name=f"shopify_{i}", status=Status.FAIL, detail=upstream))
                checks.append(CheckResult(name=f"aws_{i}", status=Status.FAIL, detail=aws))
                try:
                    raise RuntimeError(f"step raised: {case.text}")
                except RuntimeError as exc:
                    log.exception("step %s failed: %s", i, exc)
                    checks.append(
                        CheckResult(
                            name=f"raised_{i}",
                            status=Status.WARN,
                            detail=f"internal error ({exc.__class__.__name__}): {exc}",
                            data={
                                "upstream_answer": case.text,
                                "chart_marks": [{"at": now.isoformat(), "label": case.text, "kind": "event"}],
                                "nested": {"list": [case.text, {"deep": case.text}]},
                            },
                        )
                    )
                log.warning("upstream said %s / %r", upstream, aws)
        finally:
            log.removeHandler(handler)
        report = Report(
            command="preflight",
            env=self.env.name,
            run_id=new_run_id(),
            started_at=now - timedelta(seconds=5),
            finished_at=now,
            checks=checks,
            requested_by="U0FUZZ",
            pr=7,
        )
        exits.add("logs", stream.getvalue())
        bundle = write_bundle(report, self.directory / "evidence", redactor=redactor)
        for name, body in bundle.files.items():
            exits.add(f"proof file {name}", body.decode("utf-8", "replace"))
        exits.add("slack payload", self.slack(report, bundle, redactor))
        exits.add("chart", self.chart(report))
        if self.publish:
            exits.add("github payload", self.github(report, bundle, redactor))
        return leaks(cases, exits)

    def slack(self, report: Report, bundle: Bundle, redactor: Redactor) -> str:
        """The real renderer's message, posted by slack_sdk to the Slack fake: what the fake received."""
        from slack_sdk import WebClient

        from bot.slack.blocks import result_blocks
        from commands.execute import EvidenceResult, Outcome

        fake = self.sandbox.slack
        before = len(fake.requests)
        rendered = result_blocks(Outcome(report, bundle, EvidenceResult("pending", "queued")), redactor=redactor)
        client = WebClient(token=self.sandbox.slack_bot_token, base_url=fake.url + "/api/", timeout=10)
        client.chat_postMessage(channel="C0CUTOVER", **rendered.as_kwargs())
        return "\n".join(r.body.decode("utf-8", "replace") for r in fake.requests[before:])

    def github(self, report: Report, bundle: Bundle, redactor: Redactor) -> str:
        """The publisher pushes the proof files and the sticky comment to the GitHub fake: what it received."""
        from commands.outbox import Outbox
        from commands.publish import GitHubPublisher
        from integrations.github import GitHubEvidence
        from integrations.sandbox.env import PR_NUMBER, REPO

        fake = self.sandbox.github
        before = len(fake.requests)
        sink = GitHubEvidence(repo=REPO, token=self.sandbox.github_token, base_url=fake.url)
        publisher = GitHubPublisher(
            sink, Outbox(self.directory / "outbox"), evidence_dir="evidence", redactor=redactor, attempts=1, wait_s=0.01
        )
        publisher.publish(report, bundle, pr=PR_NUMBER, keep_account_ids=False)
        return "\n".join(r.body.decode("utf-8", "replace") for r in fake.requests[before:])

    def chart(self, report: Report) -> str:
        from commands.chart import Series, draw, marks_from_report

        marks, spans = marks_from_report(report)
        now = report.finished_at
        png = draw(
            [Series(label="Invocations", points=[(now - timedelta(minutes=1), 1.0)], complete=True)],
            marks,
            spans,
            title=f"{report.command} {report.env}",
            start=now - timedelta(minutes=5),
            end=now + timedelta(minutes=1),
        )
        labels = "\n".join(m.label for m in marks) + "\n".join(s.label for s in spans)
        return labels + "\n" + png_text(png)


def generate(count: int, seed: int = 0) -> list[Case]:
    """`count` cases from the planted-text strategy of tests/test_redaction.py (the same cases for a seed)."""
    import random

    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    from tests.test_redaction import planted_texts

    out: list[Case] = []

    @hseed(seed)
    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=("generate",),
    )
    @given(planted_texts())
    def collect(planted: tuple[str, str, list[str], str]) -> None:
        text, secret, hidden, background = planted
        out.append(Case(text, secret, hidden, background))

    state = random.getstate()
    random.seed(seed)  # hypothesis draws its own seed from `random` unless told: same seed, same cases
    try:
        collect()
    finally:
        random.setstate(state)
    return out[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="redaction fuzzing across every exit")
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--upstream-every", type=int, default=1, help="send every Nth case through the upstreams")
    args = parser.parse_args(argv)
    from integrations.sandbox.env import Sandbox, Scenario

    started = time.monotonic()
    cases = generate(args.cases)
    print(f"generated {len(cases)} cases in {time.monotonic() - started:.1f} s")
    found: list[tuple[str, str]] = []
    per_exit: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="fuzz-redaction-") as tmp, Sandbox({"fuzz": Scenario()}) as sandbox:
        pipeline = Pipeline(sandbox, Path(tmp))
        t0 = time.monotonic()
        for i in range(0, len(cases), BATCH):
            batch = cases[i : i + BATCH]
            hits = pipeline.run(batch)
            found += hits
            for name, _ in hits:
                per_exit[name] = per_exit.get(name, 0) + 1
            if (i // BATCH) % 40 == 0:
                print(f"  {i + len(batch)} cases, {len(found)} leaks, {time.monotonic() - t0:.0f} s", flush=True)
    print(f"cases: {len(cases)} (each through 2 upstreams, an exception and a step's data)")
    print(
        "exits: Slack payloads (Slack fake), GitHub payloads (GitHub fake), proof files, chart labels + PNG text, logs"
    )
    print(f"leaks: {len(found)}")
    for name, value in found[:20]:
        print(f"  LEAK in {name}: {json.dumps(value)[:80]}")
    for context in LEAK_CONTEXT[:5]:
        print(f"  at {context[:400]}")
    print(f"wall time: {time.monotonic() - started:.0f} s")
    return 1 if found else 0


__all__ = ["BATCH", "Case", "Pipeline", "generate", "leaks", "png_text"]

if __name__ == "__main__":
    raise SystemExit(main())
