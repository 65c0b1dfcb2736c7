"""The one error type every client raises, so callers turn any upstream failure into a reason."""

from __future__ import annotations

from dataclasses import dataclass

# Upstream text is only bounded here (a size guard): it is redacted in commands/ and cut after that,
# since a secret cut in half before redaction would no longer match.
UPSTREAM_TEXT_MAX = 4000


@dataclass(eq=False)
class UpstreamError(Exception):
    """An outside call failed. `str()` is a one-line, actionable reason without secret values."""

    system: str  # "shopify", "aws", ...
    action: str  # what we tried: "GET shop.json", "describe_secret rp-mw/prod/x"
    reason: str  # what went wrong and, where we know it, what to do
    status_code: int | None = None
    code: str | None = None  # the upstream's own error code (AWS error code, GraphQL code)
    retry_after_s: float | None = None

    def __str__(self) -> str:
        status = f" (HTTP {self.status_code})" if self.status_code else ""
        code = f" [{self.code}]" if self.code else ""
        return f"{self.system}: {self.action} failed{status}{code}: {self.reason}"


# Every outside call has a timeout; these are the defaults a config may lower or raise.
DEFAULT_CONNECT_TIMEOUT_S = 3.0
DEFAULT_READ_TIMEOUT_S = 10.0
