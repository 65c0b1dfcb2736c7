"""Redaction fuzzing across every exit (the default run's share; bench/fuzz_redaction.py runs 10,000 cases).

Generated text carrying a registered secret, e-mail addresses, phone numbers and tokens in every encoding the
redactor claims (tests/test_redaction.py's strategy) enters as a Shopify error answer (the real client over
HTTP), an AWS error message (moto behind the fault middleware, the real AWS client), an exception text and a
step's data, and leaves through the Slack message the app renders (as the Slack fake received it), the PR
comment and proof files the publisher pushes (as the GitHub fake received them), the proof files on disk,
the chart's labels and PNG text chunks, and the log. Nothing planted may appear in any of them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from commands.redaction import Redactor
from integrations.sandbox.env import Sandbox
from tests.test_redaction import planted_texts

# The reliability suite (issue 23): in the default run, and alone with python -m pytest -m reliability
pytestmark = pytest.mark.reliability

BENCH = Path(__file__).resolve().parents[1] / "bench" / "fuzz_redaction.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_fuzz_redaction", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_fuzz_redaction"] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load()


@pytest.fixture(scope="module")
def pipeline(sandbox: Sandbox, tmp_path_factory) -> Any:
    return fuzz.Pipeline(sandbox, tmp_path_factory.mktemp("fuzz-exits"), publish=False)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(planted=planted_texts())
def test_nothing_planted_upstream_reaches_any_exit(pipeline, planted):
    text, secret, hidden, background = planted
    assert pipeline.run([fuzz.Case(text, secret, hidden, background)]) == []


def test_a_batch_through_the_github_publisher_leaks_nothing(sandbox, tmp_path):
    cases = fuzz.generate(fuzz.BATCH, seed=7)
    publishing = fuzz.Pipeline(sandbox, tmp_path, publish=True)
    assert publishing.run(cases) == []
    assert sandbox.github.comments(7), "the sticky comment reached the GitHub fake"


class _Blind(Redactor):
    """A redactor that hides nothing: the negative control."""

    def redact(self, text: str, *args: Any, **kwargs: Any) -> str:
        return text


def test_the_leak_detector_sees_a_leak_when_redaction_is_off(pipeline):
    cases = fuzz.generate(5, seed=3)
    found = pipeline.run(cases, redactor=_Blind())
    assert {name for name, _ in found} >= {"logs", "slack payload"}


def test_png_text_chunks_are_read():
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"tEXt", b"Title\0owner@example.com") + chunk(b"IEND", b"")
    assert "owner@example.com" in fuzz.png_text(png)
