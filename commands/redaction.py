"""Redaction: the one path every exit (Slack, GitHub, proof files, logs) goes through.

Secret values read at run time are registered and replaced by value; PII and token shapes are
replaced by pattern. Renderers produce text or JSON-able data and then call `redact`/`redact_obj`
on the *rendered* output, so a field added tomorrow cannot slip past.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

# Shorter values would redact ordinary words; such a secret is refused loudly instead.
MIN_SECRET_LENGTH = 8

# A token starts where no letter or digit precedes it, or right after an escape such as the
# literal "\\n" of a repr'd or JSON-encoded string (where "\\nshpat_..." has no word boundary).
_START = r"(?:(?<![A-Za-z0-9_])|(?<=\\[nrt]))"

# (label, pattern, replacement) in the order applied; context-bound shapes first.
_RULES: tuple[tuple[str, str, str | None], ...] = (
    # A credential in a header or key=value form: keep the name, hide the value.
    (
        "credential",
        r"(?i)"
        + _START
        + r"(authorization|x-shopify-access-token|x-richpanel-key|x-api-key|api[_-]?key|access[_-]?token)"
        r"([\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|token)\s+)?[^\s\"',}]{4,}",
        r"\1\2[REDACTED:credential]",
    ),
    ("authorization", r"(?i)" + _START + r"bearer\s+[A-Za-z0-9._~+/=-]{8,}", None),
    ("github-token", _START + r"(?:gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,})", None),
    ("slack-token", _START + r"(?:xox[abposre]|xapp)-[A-Za-z0-9-]{8,}", None),
    ("shopify-token", _START + r"shp(?:at|ca|pa|ss)_[A-Za-z0-9]{8,}", None),
    ("openai-key", _START + r"sk-[A-Za-z0-9_-]{16,}", None),
    ("aws-access-key-id", _START + r"(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])", None),
    ("email", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", None),
    # E.164 (+15551234567) and the usual grouped forms (+1 (555) 123-4567, 555.123.4567).
    (
        "phone",
        r"(?:(?<![\w+])|(?<=\\[nrt]))"
        r"(?:\+\d{8,15}(?!\d)|(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]\d{4}(?!\d))",
        None,
    ),
)
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rx), replacement or f"[REDACTED:{label}]") for label, rx, replacement in _RULES
)
ACCOUNT_ID = re.compile(r"(?:(?<![\w.])|(?<=\\[nrt]))\d{12}(?![\w.])")


class Redactor:
    """Thread-safe; one per process (`REDACTOR`), since a secret seen once must stay hidden everywhere."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, str] = {}  # value -> secret name
        self._compiled: re.Pattern[str] | None = None

    def register(self, name: str, value: str | None) -> None:
        """Hide `value` from now on. Also hides the forms a renderer might produce (JSON-escaped)."""
        if not value:
            return
        if len(value) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"secret {name!r} is shorter than {MIN_SECRET_LENGTH} characters: too short to redact safely"
            )
        forms = {value, json.dumps(value)[1:-1], value.replace("|", "\\|")}
        with self._lock:
            for form in forms:
                self._values.setdefault(form, name)
            # Longest first, so a secret containing another is replaced whole.
            alternatives = sorted(self._values, key=len, reverse=True)
            self._compiled = re.compile("|".join(re.escape(v) for v in alternatives))

    def redact(self, text: str, *, keep_account_ids: bool = False) -> str:
        if not text:
            return text
        compiled, values = self._compiled, self._values
        if compiled is not None:
            text = compiled.sub(lambda m: f"[REDACTED:{values[m.group(0)]}]", text)
        for rx, replacement in PATTERNS:
            text = rx.sub(replacement, text)
        if not keep_account_ids:
            text = ACCOUNT_ID.sub("[REDACTED:aws-account-id]", text)
        return text

    def redact_obj(self, obj: Any, *, keep_account_ids: bool = False) -> Any:
        """Redact every string (keys too) in JSON-like data; other scalars pass through unchanged."""
        if isinstance(obj, str):
            return self.redact(obj, keep_account_ids=keep_account_ids)
        if isinstance(obj, Mapping):
            return {
                self.redact(str(k), keep_account_ids=keep_account_ids): self.redact_obj(
                    v, keep_account_ids=keep_account_ids
                )
                for k, v in obj.items()
            }
        if isinstance(obj, list | tuple | set | frozenset):
            return [self.redact_obj(v, keep_account_ids=keep_account_ids) for v in obj]
        return obj


REDACTOR = Redactor()


class RedactingFilter(logging.Filter):
    """Rewrites every record's final message, so no logger, handler or argument can bypass redaction."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            # Tracebacks carry exception text: render, redact, and drop the live exception.
            record.exc_text = self.redactor.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_log_redaction(redactor: Redactor = REDACTOR) -> None:
    """Attach the filter to every handler of the root logger (filters on handlers see child loggers' records)."""
    root = logging.getLogger()
    if not root.handlers:
        level = os.environ.get("CUTOVER_LOG_LEVEL", "WARNING").upper()
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(redactor))
