"""The text after a slash command: `ENV [pr=N] [dry-run]`, parsed into the run request or refused
with what was wrong."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from commands.redaction import redact_and_clip
from commands.request import RunRequest

# What a person may type for the options; anything else is named back to them.
_PR = re.compile(r"^(?:--)?pr=(?P<value>.*)$", re.IGNORECASE)
_DRY_RUN = frozenset({"dry-run", "--dry-run", "dry_run", "dryrun"})
_ECHO_MAX = 40  # a person's own words are quoted back, but never a wall of text
MAX_PR = 10**9  # GitHub's PR numbers are far below this; a longer number is a typo, not a PR


class ArgsError(ValueError):
    """The text cannot be run; the message says what was wrong and how to write it."""


def usage(command: str, envs: Iterable[str]) -> str:
    return f"Usage: `/{command} ENV [pr=N] [dry-run]` where ENV is one of: {', '.join(sorted(envs))}"


def parse_command_text(text: str | None, *, command: str, envs: Iterable[str], requested_by: str = "") -> RunRequest:
    """Parse or raise ArgsError naming every problem found (not only the first)."""
    known = sorted(envs)
    words = (text or "").split()
    problems: list[str] = []
    env: str | None = None
    pr: int | None = None
    dry_run = False
    unknown: list[str] = []
    for word in words:
        if (m := _PR.match(word)) is not None:
            value = m.group("value").lstrip("#")
            # Length first: int() of thousands of digits raises (Python's int-string limit).
            if len(value) > 10 or not value.isascii() or not value.isdigit() or not 0 < int(value) <= MAX_PR:
                problems.append(f"`{_echo(word)}`: pr must be a positive integer (e.g. pr=123)")
            elif pr is not None and pr != int(value):
                problems.append("pr= is given twice with different numbers")
            else:
                pr = int(value)
        elif word.lower() in _DRY_RUN:
            dry_run = True
        elif word.lower() in known:
            if env is not None and env != word.lower():
                problems.append(f"more than one environment (`{env}` and `{word.lower()}`)")
            env = env or word.lower()
        else:
            unknown.append(word)
    if env is None:
        candidates = [w for w in unknown if "=" not in w]
        if candidates:
            # The first bare word was meant as the environment: say so rather than "unknown word".
            problems.insert(0, f"unknown environment `{_echo(candidates[0])}` (known: {', '.join(known)})")
            unknown.remove(candidates[0])
        else:
            problems.insert(0, f"missing the environment (one of: {', '.join(known)})")
    if unknown:
        named = ", ".join(f"`{_echo(w)}`" for w in unknown)
        problems.append(f"unknown {'words' if len(unknown) > 1 else 'word'}: {named}")
    if problems:
        raise ArgsError("; ".join(problems) + ".\n" + usage(command, known))
    assert env is not None
    return RunRequest(command=command, env=env, requested_by=requested_by, surface="slack", pr=pr, dry_run=dry_run)


def _echo(word: str) -> str:
    """A person's word, safe to quote in mrkdwn: short, no mention or link syntax, and no invisible or
    direction-changing characters (a right-to-left override would reorder the rest of the refusal)."""
    word = redact_and_clip(word, _ECHO_MAX)  # redact, then cut: a cut secret no longer matches
    word = "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cf", "Cc") else c for c in word)
    return word.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")
