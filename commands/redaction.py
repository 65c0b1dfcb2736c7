"""Redaction: the one path every exit (Slack, GitHub, proof files, logs) goes through.

Secret values read at run time are registered and replaced by value, in every form a renderer or
a wire format gives them (JSON-escaped, URL-encoded, base64, HTML/Slack-escaped); PII and token
shapes are replaced by pattern. Renderers produce text or JSON-able data and then call
`redact`/`redact_obj` on the *rendered* output, so a field added tomorrow cannot slip past.

Three rules keep this trustworthy:

- Redact, then cut: `redact_and_clip` shortens text only after redacting it. Cutting first can
  split a secret or an e-mail address so that what is left no longer matches.
- Linear time: every pattern is anchored where a token starts (a look-behind refuses to start
  inside a run) and uses bounded or possessive quantifiers, so an adversarial upstream body cannot
  stall an exit; `bench/redaction.py` measures it.
- Logs: `configure_process_logging()` is called at every process entry. Third-party wire loggers
  (botocore, urllib3, httpx, PyGithub, slack_sdk, ...) would log request and response bodies
  before the caller could register a secret read from them, so they never log below WARNING;
  every record that is written still passes the redactor.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, unquote

# Shorter values would redact ordinary words; such a secret is refused loudly instead.
MIN_SECRET_LENGTH = 8

# Every pattern is anchored where a token starts: a look-behind refuses a start inside a run, so a
# long run is scanned once, not once per position (what keeps every pattern linear). The anchor sits
# right *after* a literal first character, so the regex engine can skip ahead to the few positions
# holding one of those characters instead of attempting a match at every position (`_lead`).
#
# A token starts where no letter or digit precedes it, or right after an escape such as the
# literal "\\n" of a repr'd or JSON-encoded string (where "\\nshpat_..." has no word boundary).
# `{c}` is the token's first character, already consumed when the look-behind runs.
_START = r"(?:(?<![A-Za-z0-9_]{c})|(?<=\\[nrt]{c}))"
_B64_START = r"(?:(?<![A-Za-z0-9+_-]{c})|(?<=\\[nrt]{c}))"
_WORD_START = r"(?<![A-Za-z0-9]{c})"  # allows a "_" before: GITHUB_TOKEN, shop_refresh_token


def _lead(words: Iterable[str | tuple[str, str]], guard: str = "", *, ci: bool = False) -> str:
    """`(?:w1|w2|...)` where each alternative begins with its literal first character, then a guard.

    `words` are regex fragments whose first character is a plain character, or (fragment, guard)
    pairs. With `ci`, the rest of each word is case-insensitive and the first character is listed in
    both cases (a global `(?i)` would stop the engine from skipping ahead). The alternatives must
    all be at the top of the group: one nested group would disable the skip for all of them.
    """
    alternatives = []
    for item in words:
        word, word_guard = item if isinstance(item, tuple) else (item, guard)
        first, rest = word[0], word[1:]
        for c in dict.fromkeys((first.lower(), first.upper()) if ci else (first,)):
            tail = f"(?i:{rest})" if ci and rest else rest
            alternatives.append(re.escape(c) + word_guard.replace("{c}", re.escape(c)) + tail)
    return "(?:" + "|".join(alternatives) + ")"


# Names whose value is a credential, in headers, key=value pairs, JSON, YAML, INI and env files.
_CREDENTIAL_KEYS = _lead(
    (
        "authorization",
        "x-shopify-access-token",
        "x-richpanel-key",
        "x-api-key",
        "x-amz-security-token",
        "api[_-]?key",
        "access[_-]?token",
        "refresh[_-]?token",
        "id[_-]?token",
        "auth[_-]?token",
        "session[_-]?token",
        "security[_-]?token",
        "client[_-]?secret",
        "signing[_-]?secret",
        "secret[_-]?access[_-]?key",
        "secret[_-]?key",
        "secret[_-]?string",
        "private[_-]?key",
        "password",
        "passwd",
        "passphrase",
        ("token", _WORD_START),  # token=..., GITHUB_TOKEN=..., SLACK_BOT_TOKEN=...
        ("secret", r"(?<=[_-]{c})"),  # WEBHOOK_SECRET=..., x-signing-secret: ...
    ),
    ci=True,
)
_QUOTE = r"(?:\\{0,8}[\"'])?"  # a quote, escaped once per level of JSON-in-JSON
_SEP = _QUOTE + r"\s{0,8}[:=]\s{0,8}" + _QUOTE  # between a name and its value
# The next pair: a name, a separator and the start of a value. What follows a separator is not a
# value if it is the next pair ('token="SecretAccessKey": "..."'), and an unquoted value ends where
# the next pair starts ('a=1;token: 2222'); that pair is then matched on its own.
_NEXT_PAIR = r"(?:" + _CREDENTIAL_KEYS + r")" + _SEP + r"(?:[^\s\"',}<>]{4}|(?<=[\"'])[^\"'\r\n]{1,64}[\"'])"
# The value: a quoted string (JSON, JSON in JSON at any depth, Python repr) up to its closing quote,
# or an unquoted run. Every branch is bounded or ends the pattern, so none can backtrack far.
_CREDENTIAL_VALUE = (
    r"(?:(?<=\\\")(?:[^\\\"\r\n]|\\++[^\\\"\r\n]){1,4096}(?=\\+\")"
    r"|(?<=\")(?:[^\"\\\r\n]|\\.){1,4096}(?=\")"
    r"|(?<=')[^'\r\n]{1,4096}(?=')"
    r"|(?i:(?:bearer|basic|token)[ \t]{1,8})?(?:(?!" + _NEXT_PAIR + r")[^\s\"',}<>]){4,}+)"
)
# Between a scheme and its token: spaces, or a space form-encoded ("+") or URL-encoded ("%20").
_GAP = r"(?:[ \t+]|%20){1,8}"


def _is_basic_auth(m: re.Match[str]) -> bool:
    """`Basic <base64>` is HTTP Basic only if it decodes to text with the user:password colon.

    The run may go on past the token (a "/" or "+" after it is base64 too), so it is the decoded
    text up to its first unprintable character that must hold the colon.
    """
    encoded = m.group("v").rstrip("=")
    try:
        raw = base64.b64decode(encoded[: len(encoded) // 4 * 4], validate=True)
    except (binascii.Error, ValueError):
        return False
    text = raw.decode("utf-8", errors="replace")
    printable = text[: next((i for i, ch in enumerate(text) if not ch.isprintable() or ch == "\ufffd"), len(text))]
    return ":" in printable


@dataclass(frozen=True)
class Rule:
    """A shape to hide. The part hidden is the group named `v` if the pattern has one, else the match.

    `needs`: a character without which the pattern cannot match (the scan is skipped);
    `accept`: a further test of a match (the pattern alone would hide too much).
    """

    label: str
    pattern: re.Pattern[str]
    needs: str = ""
    accept: Callable[[re.Match[str]], bool] | None = None


def _rule(label: str, rx: str, *, needs: str = "", accept: Callable[[re.Match[str]], bool] | None = None) -> Rule:
    return Rule(label, re.compile(rx), needs, accept)


# In this order: where matches overlap, the hidden parts are merged and the first rule names them.
RULES: tuple[Rule, ...] = (
    # A credential in a header, key=value, JSON, YAML or env form: keep the name, hide the value.
    _rule(
        "credential",
        r"(?:" + _CREDENTIAL_KEYS + r")" + _SEP + r"(?!" + _NEXT_PAIR + r")(?P<v>" + _CREDENTIAL_VALUE + ")",
    ),
    # The same in XML, as STS and other query APIs answer: <SecretAccessKey>...</SecretAccessKey>.
    _rule(
        "credential",
        r"<(?i:secretaccesskey|sessiontoken|securitytoken|secretstring|password|clientsecret)>(?P<v>[^<]{1,4096})(?=<)",
        needs="<",
    ),
    _rule(
        "basic-auth",
        _lead(("basic",), _WORD_START, ci=True) + _GAP + r"(?P<v>[A-Za-z0-9+/]{4,}+={0,2})",
        accept=_is_basic_auth,
    ),
    _rule(
        "authorization",
        # The token ends where another scheme starts ("Bearer a==Bearer b" is two tokens).
        _lead(("bearer",), _START, ci=True)
        + _GAP
        + r"(?:(?!(?i:bearer|basic|token)"
        + _GAP
        + r")[A-Za-z0-9._~+/=-]){8,}",
    ),
    # Classic 40-hex GitHub tokens look like commit SHAs; only their context tells them apart.
    _rule(
        "github-token",
        _lead(("token", "bearer", "authorization"), _WORD_START, ci=True)
        + r"[\"']?[\s+]{0,8}[:=]?[\s+]{0,8}[\"']?(?i:(?:token|bearer)"
        + _GAP
        + r")?(?P<v>[0-9a-fA-F]{40})(?![0-9A-Za-z])",
    ),
    _rule("github-token", _lead(("gh[pousr]_[A-Za-z0-9]{16,}", "github_pat_[A-Za-z0-9_]{16,}"), _START)),
    _rule("slack-token", _lead(("xox[abposre]-[A-Za-z0-9-]{8,}", "xapp-[A-Za-z0-9-]{8,}"), _START)),
    _rule("shopify-token", _lead(("shp(?:at|ca|pa|ss)_[A-Za-z0-9]{8,}",), _START)),
    _rule("openai-key", _lead(("sk-[A-Za-z0-9_-]{16,}",), _START)),
    _rule("aws-access-key-id", _lead(("AKIA[A-Z0-9]{16}", "ASIA[A-Z0-9]{16}"), _START) + r"(?![A-Za-z0-9])"),
    # STS session tokens are long base64 that starts the same way (FQoG/FwoG older, IQo... newer).
    _rule("aws-session-token", _lead(("FQoG", "FwoG", "IQo[A-Za-z0-9]"), _B64_START) + r"[A-Za-z0-9+/]{40,}+={0,2}"),
    _rule(
        "email",
        # The local part must start a run (look-behind), so a long run is tried once, not per position.
        # An escape right before it (the "\\n" of JSON text) is kept out of the hidden part.
        r"(?:(?<=\\)(?:[nrtbf]|u[0-9A-Fa-f]{4})|(?<![A-Za-z0-9._%+-]))"
        r"(?P<v>[A-Za-z0-9._%+-]++@(?:[A-Za-z0-9-]++\.)+[A-Za-z]{2,63}+)",
        needs="@",
    ),
    # E.164 (+15551234567) and the usual grouped forms (+1 (555) 123-4567, 555.123.4567).
    _rule(
        "phone",
        r"(?:(?<![\w+])|(?<=\\[nrt]))"
        r"(?:\+\d{8,15}(?!\d)|(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]\d{4}(?!\d))",
    ),
)
PATTERNS = RULES  # the former name
# Twelve digits on their own; a full stop may end the sentence ("account 123456789012."), but a
# decimal (123456789012.5) or a dotted version is not an account id.
ACCOUNT_ID = re.compile(r"(?:(?<![\w.])|(?<=\\[nrt]))\d{12}(?!\w|\.\d)")

# A whitespace-free chunk with a %XX escape in it: decoded, redacted, and put back decoded if the
# decoded text held anything to hide. The look-behind makes each chunk one attempt (linear time).
_ENCODED_CHUNK = re.compile(r"(?<!\S)\S*?%[0-9A-Fa-f]{2}\S*+")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_MARK = re.compile(r"\[REDACTED:[^\[\]\s]{1,200}\]")  # already hidden (text redacted twice): kept as it is
_URL_DECODE_ROUNDS = 3  # %2540 is "@" encoded twice; three rounds cover what proxies and SDKs do


def _base64_cores(raw: bytes) -> set[str]:
    """The base64 text that `raw` becomes wherever it sits in a longer encoded stream.

    Base64 works on groups of 3 bytes, so a value encodes differently at each of 3 alignments; for
    each, keep only the characters that depend on the value's bytes alone (e.g. inside the base64
    of "user:" + secret, as HTTP Basic carries it). Standard and URL-safe alphabets.
    """
    cores: set[str] = set()
    n = len(raw)
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode().rstrip("=")
        core = encoded[(offset * 8 + 5) // 6 : ((offset + n) * 8) // 6]
        cores.add(core)
        cores.add(core.translate(str.maketrans("+/", "-_")))
    return cores


def secret_forms(value: str) -> set[str]:
    """Every form of `value` that output might carry: as is, escaped by a renderer, encoded on the wire."""
    as_json = json.dumps(value)[1:-1]
    forms = {
        value,
        as_json,
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(as_json)[1:-1],  # JSON text inside a JSON string (a logged request body)
        repr(value)[1:-1],
        value.replace("|", "\\|"),  # a Markdown table cell
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),  # Slack mrkdwn
        html.escape(value),
        value.replace("/", "\\/"),  # JSON encoders that escape the solidus
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
    }
    forms |= _base64_cores(value.encode("utf-8"))
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def _literal_alternation(words: Iterable[str]) -> str:
    """One regex matching any of `words`, longest first at each position, as a trie.

    A flat `a|b|c` tries every word at every position; the trie follows one path per position, so
    the cost does not grow with the number of registered forms.
    """
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # end of a word

    def emit(node: dict[str, Any]) -> str:
        literal = []
        while len(node) == 1 and "" not in node:  # a chain without branches: plain text
            ((ch, node),) = node.items()
            literal.append(re.escape(ch))
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return "".join(literal)
        group = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:  # a word ends here: the longer continuation is optional, tried first
            group = (group if len(branches) > 1 else "(?:" + group + ")") + "?"
        return "".join(literal) + group

    return emit(trie)


class Redactor:
    """Thread-safe; one per process (`REDACTOR`), since a secret seen once must stay hidden everywhere."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, str] = {}  # form -> secret name
        self._compiled: re.Pattern[str] | None = None

    def _after_fork(self) -> None:
        # A fork while another thread held the lock would leave the child's copy locked forever.
        self._lock = threading.Lock()

    def register(self, name: str, value: str | None) -> None:
        """Hide `value` from now on, in every form `secret_forms` lists."""
        if not value:
            return
        if len(value) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"secret {name!r} is shorter than {MIN_SECRET_LENGTH} characters: too short to redact safely"
            )
        forms = secret_forms(value)
        with self._lock:
            if all(form in self._values for form in forms):
                return  # already known (idempotent process setup registers the environment again)
            for form in forms:
                self._values.setdefault(form, name)
            self._compiled = re.compile(_literal_alternation(self._values))

    def _redact_once(self, text: str, keep_account_ids: bool) -> str:
        """Every rule finds its spans in the same, original text; overlapping spans are hidden as one.

        (Applied one after the other, a registered value replaced inside a token would leave the
        token's tail unmatched by its pattern, and the other way round.)
        """
        spans: list[tuple[int, int, int, str]] = []  # start, end, rank (registered first), label
        compiled, values = self._compiled, self._values
        if compiled is not None:
            spans += ((m.start(), m.end(), 0, values[m.group(0)]) for m in compiled.finditer(text))
        for rank, rule in enumerate(RULES, start=1):
            if rule.needs and rule.needs not in text:
                continue
            hidden = "v" in rule.pattern.groupindex
            for m in rule.pattern.finditer(text):
                if rule.accept is None or rule.accept(m):
                    start, end = m.span("v") if hidden else m.span()
                    spans.append((start, end, rank, rule.label))
        if not keep_account_ids:
            spans += ((m.start(), m.end(), len(RULES) + 1, "aws-account-id") for m in ACCOUNT_ID.finditer(text))
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        done = 0  # text before this index is written
        i = 0
        while i < len(spans):
            start, end, rank, label = spans[i]
            i += 1
            while i < len(spans) and spans[i][0] < end:  # overlapping: one span, the best-ranked label
                end = max(end, spans[i][1])
                if spans[i][2] < rank:
                    rank, label = spans[i][2], spans[i][3]
                i += 1
            piece = text[start:end]
            out.append(text[done:start])
            out.append(piece if _MARK.fullmatch(piece) else f"[REDACTED:{label}]")
            done = end
        out.append(text[done:])
        return "".join(out)

    def redact(self, text: str, *, keep_account_ids: bool = False) -> str:
        if not text:
            return text
        if "%" in text and _PERCENT_ESCAPE.search(text):
            # URL-encoded chunks first, on the text as it came: a chunk whose decoded form holds
            # something to hide is replaced by that form, redacted ("token%3Dghp_..." -> "token=[...]").
            def decoded_chunk(m: re.Match[str]) -> str:
                chunk = decoded = m.group(0)
                for _ in range(_URL_DECODE_ROUNDS):
                    decoded, before = unquote(decoded, errors="replace"), decoded
                    if decoded == before or "%" not in decoded:
                        break
                clean = self._redact_once(decoded, keep_account_ids)
                if "+" in clean:  # form encoding: "+" is a space ('"password":+"..."')
                    spaced = clean.replace("+", " ")
                    if (again := self._redact_once(spaced, keep_account_ids)) != spaced:
                        clean = again
                return clean if clean != decoded else chunk

            text = _ENCODED_CHUNK.sub(decoded_chunk, text)
        return self._redact_once(text, keep_account_ids)

    def redact_and_clip(self, text: str, limit: int, *, keep_account_ids: bool = False, marker: str = "…") -> str:
        """Redact, *then* shorten to at most `limit` characters (cutting first could split a secret)."""
        return clip(self.redact(text, keep_account_ids=keep_account_ids), limit, marker=marker)

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


def clip(text: str, limit: int, *, marker: str = "…") -> str:
    """Shorten already-redacted text to at most `limit` characters, never ending inside a redaction mark."""
    if len(text) <= limit:
        return text
    if limit <= len(marker):
        return marker[: max(limit, 0)]
    head = text[: limit - len(marker)]
    cut = head.rfind("[")
    tail = head[cut:]
    if cut != -1 and "]" not in tail and (tail.startswith("[REDACTED:") or "[REDACTED:".startswith(tail)):
        head = head[:cut]
    return head + marker


REDACTOR = Redactor()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=REDACTOR._after_fork)


def redact_and_clip(text: str, limit: int, *, keep_account_ids: bool = False, redactor: Redactor = REDACTOR) -> str:
    """Upstream text on its way out: redacted first, then shortened to `limit` characters."""
    return redactor.redact_and_clip(text, limit, keep_account_ids=keep_account_ids)


# --- logs ------------------------------------------------------------------------------------

# Third-party loggers that log HTTP requests and responses (headers, bodies, signed canonical
# requests) below WARNING. A secret read from AWS is in botocore's DEBUG line of the response
# before the caller can register it, so no redaction by value could catch it: these loggers are
# held at WARNING, and records below WARNING from them (or their children) are dropped.
WIRE_LOGGERS: tuple[str, ...] = (
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "requests",
    "httpcore",
    "httpx",
    "h11",
    "h2",
    "hpack",
    "github",
    "slack_sdk",
    "slack_bolt",
    "websocket",
    "websockets",
    "aiohttp",
    "openai",
)
WIRE_LEVEL = logging.WARNING
# The loggers that write the wire itself; filtered on the logger too, so a handler attached to a
# library logger (boto3.set_stream_logger) cannot receive their records either.
_WIRE_LEAVES = (
    "botocore.endpoint",
    "botocore.parsers",
    "botocore.hooks",
    "botocore.auth",
    "botocore.httpsession",
    "botocore.awsrequest",
    "botocore.retryhandler",
    "botocore.utils",
    "urllib3.connectionpool",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.connection",
    "httpx",
    "github.Requester",
    "slack_sdk.web.base_client",
    "slack_sdk.socket_mode.builtin.client",
    "slack_sdk.socket_mode.builtin.connection",
    "slack_sdk.socket_mode.builtin.internals",
    "slack_bolt.App",
)

# Environment variables that hold credentials: registered by value at process setup, so a token
# echoed by a library (or an error message) is hidden even before any command runs.
ENV_SECRETS: dict[str, str] = {
    "GITHUB_TOKEN": "github_token",
    "GH_TOKEN": "github_token",
    "SLACK_BOT_TOKEN": "slack_bot_token",
    "SLACK_SIGNING_SECRET": "slack_signing_secret",
    "SLACK_APP_TOKEN": "slack_app_token",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
    "AWS_SECURITY_TOKEN": "aws_session_token",
}


@functools.lru_cache(maxsize=1024)
def is_wire_logger(name: str) -> bool:
    return any(name == w or name.startswith(w + ".") for w in WIRE_LOGGERS)


class RedactingFilter(logging.Filter):
    """Rewrites every record's final message, so no logger, handler or argument can bypass redaction.

    Also drops records below WARNING from third-party wire loggers, whatever their level was set to.
    """

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < WIRE_LEVEL and is_wire_logger(record.name):
            return False
        record.msg = self.redactor.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            # Tracebacks carry exception text: render, redact, and drop the live exception.
            record.exc_text = self.redactor.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        return True


class _WireFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= WIRE_LEVEL


def register_environment_secrets(redactor: Redactor = REDACTOR, environ: Mapping[str, str] | None = None) -> None:
    """Register the credentials the process was given in its environment (those long enough to redact)."""
    environ = os.environ if environ is None else environ
    for variable, name in ENV_SECRETS.items():
        value = environ.get(variable, "").strip()
        if len(value) >= MIN_SECRET_LENGTH:
            redactor.register(name, value)


def _level_from_env(environ: Mapping[str, str]) -> int:
    raw = environ.get("CUTOVER_LOG_LEVEL", "WARNING").strip().upper()
    level = logging.getLevelName(raw) if not raw.isdigit() else int(raw)
    return level if isinstance(level, int) else logging.WARNING


def _redacting_excepthook(redactor: Redactor) -> None:
    """Uncaught exceptions (main thread and others) print a redacted traceback, not the raw one."""
    if getattr(sys.excepthook, "_cutover_redacting", False):
        return

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write(redactor.redact(text))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        sys.stderr.write(redactor.redact(f"Exception in thread {name}:\n{text}"))

    excepthook._cutover_redacting = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


_SETUP_LOCK = threading.Lock()


def configure_process_logging(redactor: Redactor = REDACTOR, *, environ: Mapping[str, str] | None = None) -> None:
    """Set up a process's logging so nothing it writes can carry a secret. Call at every process entry.

    Idempotent (safe to call again, in the same process or in a forked child) and needs nothing
    from a parent (a spawned worker calls it first thing):
    - registers the environment's credentials by value (`ENV_SECRETS`);
    - configures the root logger from CUTOVER_LOG_LEVEL if nothing configured it yet;
    - holds third-party wire loggers at WARNING and filters their lower records wherever they go;
    - attaches the redacting filter to every handler that exists (root's, libraries', last resort);
    - prints uncaught exceptions redacted.
    """
    environ = os.environ if environ is None else environ
    register_environment_secrets(redactor, environ)
    with _SETUP_LOCK:
        root = logging.getLogger()
        if not root.handlers:
            logging.basicConfig(
                level=_level_from_env(environ), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
        for name in WIRE_LOGGERS:
            logger = logging.getLogger(name)
            if logger.level < WIRE_LEVEL:  # NOTSET included: it would inherit root's DEBUG
                logger.setLevel(WIRE_LEVEL)
        for name in _WIRE_LEAVES:
            logger = logging.getLogger(name)
            if not any(isinstance(f, _WireFilter) for f in logger.filters):
                logger.addFilter(_WireFilter())
        handlers = list(root.handlers)
        for logger in list(logging.Logger.manager.loggerDict.values()):
            if isinstance(logger, logging.Logger):
                handlers.extend(logger.handlers)
        if logging.lastResort is not None:
            handlers.append(logging.lastResort)
        for handler in handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter(redactor))
        _redacting_excepthook(redactor)


def install_log_redaction(redactor: Redactor = REDACTOR) -> None:
    """The former name of `configure_process_logging`; kept so existing entry points get the full setup."""
    configure_process_logging(redactor)
