"""Redaction time on adversarial input: every pattern must be linear in the length of the text.

    python bench/redaction.py [--sizes 10000,100000,1000000] [--repeat 3] [--module PATH]

For each pattern (and the registered-secret matcher, and the whole `redact()`), every input shape
below is run at each size; the table shows the slowest shape's time per MB at the largest size
and the ratio of the two largest sizes' times. Linear is a ratio near the size ratio (10 for
1 MB / 100 kB); quadratic is near its square (100). A run that takes longer than the budget at a
size is not repeated at larger ones (shown as "> budget").

`--module PATH` loads another copy of commands/redaction.py (e.g. `git show HEAD~1:commands/redaction.py
> /tmp/old.py`) to compare before and after.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_S = 5.0  # one redaction slower than this at some size: the next size is skipped


def _random_text(n: int) -> str:
    rng = random.Random(n)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " \n"
    return "".join(rng.choice(alphabet) for _ in range(n))


def _repeat(unit: str) -> Callable[[int], str]:
    return lambda n: (unit * (n // len(unit) + 1))[:n]


# Shapes that make a backtracking matcher retry a long run from every position.
SHAPES: dict[str, Callable[[int], str]] = {
    "a*n": _repeat("a"),
    "@*n": _repeat("@"),
    "a@*n": _repeat("a@"),
    "a.*n": _repeat("a."),
    "a@a.*n": _repeat("a@a."),
    "%*n": _repeat("%"),
    "%41*n": _repeat("%41"),
    "%2*n": _repeat("%2"),
    "digits": _repeat("1"),
    "digit groups": _repeat("555 123 "),
    "(*n": _repeat("("),
    "+*n": _repeat("+"),
    "spaces": _repeat(" "),
    "\\n*n": _repeat("\\n"),
    "base64ish": _repeat("Ab1/"),
    "hex": _repeat("0123456789abcdef"),
    "key=": _repeat("password="),
    'key:"': _repeat('"password": "'),
    "key no value": _repeat("api_key "),
    "token ": _repeat("token "),
    "Basic ": _repeat("Basic "),
    "Basic b64": lambda n: "Basic " + _repeat("QUFB")(n - 6),
    "bearer ": _repeat("Bearer "),
    "<tag>": _repeat("<SecretAccessKey>"),
    "IQoJ": lambda n: "IQoJ" + _repeat("A")(n - 4),
    "ghp_": _repeat("ghp_"),
    "sk-": _repeat("sk-"),
    "local part": lambda n: _repeat("a")(n - 1) + "@",
    "random printable": _random_text,
}

# Secrets registered for the registered-value matcher (a realistic process holds about this many).
REGISTERED = {
    "github_token": "ghp_" + "Z" * 36,
    "slack_bot_token": "xoxb-1234567890-0987654321-" + "q" * 24,
    "slack_signing_secret": "8f14e45fceea167a5a36dedd4bea2543",
    "slack_app_token": "xapp-1-A0123456789-0123456789012-" + "f" * 64,
    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "aws_session_token": "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD" + "k" * 300,
    "richpanel_api_key": "rp_live_0123456789abcdef",
    "richpanel_webhook_token": "whk-0a1b2c3d4e5f6a7b8c9d",
    "openai_api_key": "sk-proj-" + "a1B2" * 12,
    "shopify_admin_api_token": "shpat_" + "0f" * 16,
    "shopify_access_token": "shpca_" + "9e" * 16,
    "password": "correct horse battery staple",
}


def load(module_path: str | None) -> ModuleType:
    if module_path is None:
        from commands import redaction

        return redaction
    spec = importlib.util.spec_from_file_location("redaction_under_test", module_path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn: Callable[[str], object], text: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - t0)
    return best


def matchers(mod: ModuleType) -> dict[str, Callable[[str], object]]:
    redactor = mod.Redactor()
    for name, value in REGISTERED.items():
        redactor.register(name, value)
    out: dict[str, Callable[[str], object]] = {}
    rules = getattr(mod, "RULES", None)
    if rules and hasattr(rules[0], "pattern"):  # this tree: Rule objects, each scanned with finditer
        for i, rule in enumerate(rules, start=1):
            out[f"{i:2d}. {rule.label}"] = lambda text, rx=rule.pattern: sum(1 for _ in rx.finditer(text))
    else:  # an older copy: (label, pattern, replacement) and compiled (pattern, replacement) pairs
        for (label, *_), (rx, replacement, *_) in zip(mod._RULES, mod.PATTERNS, strict=True):
            out[label] = lambda text, rx=rx, replacement=replacement: rx.sub(replacement, text)
    out["aws-account-id"] = lambda text: mod.ACCOUNT_ID.sub("[REDACTED:aws-account-id]", text)
    compiled = redactor._compiled
    out[f"registered values ({len(redactor._values)} forms)"] = lambda text: compiled.sub("[REDACTED]", text)
    out["redact() end to end"] = redactor.redact
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="input sizes in characters")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs per measurement")
    parser.add_argument("--module", help="path of another redaction.py to measure instead")
    parser.add_argument("--shapes", help="comma-separated subset of input shapes")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    shapes = {k: v for k, v in SHAPES.items() if not args.shapes or k in args.shapes.split(",")}
    mod = load(args.module)
    console = Console(width=max(Console().width, 130))

    table = Table(title=f"redaction time, slowest input shape per pattern ({', '.join(map(_size, sizes))})")
    table.add_column("pattern")
    table.add_column("slowest shape")
    for size in sizes:
        table.add_column(f"{_size(size)}", justify="right")
    table.add_column(f"s per MB at {_size(sizes[-1])}", justify="right")
    table.add_column(f"ratio {_size(sizes[-1])}/{_size(sizes[-2])}", justify="right")

    texts = {(shape, size): make(size) for shape, make in shapes.items() for size in sizes}
    for label, fn in matchers(mod).items():
        worst: tuple[str, list[float | None]] | None = None
        for shape in shapes:
            times: list[float | None] = []
            for size in sizes:
                if times and (times[-1] is None or times[-1] > BUDGET_S):
                    times.append(None)
                    continue
                times.append(timed(fn, texts[(shape, size)], args.repeat))
            if worst is None or _key(times) > _key(worst[1]):
                worst = (shape, times)
        assert worst is not None
        shape, times = worst
        last, before = times[-1], times[-2]
        per_mb = f"{last / (sizes[-1] / 1e6):.3f}" if last is not None else "> budget"
        ratio = f"{last / before:.1f}" if last is not None and before else "-"
        table.add_row(label, shape, *(_secs(t) for t in times), per_mb, ratio)
    console.print(table)
    console.print(
        f"linear: ratio ≈ {sizes[-1] / sizes[-2]:g}; quadratic: ≈ {(sizes[-1] / sizes[-2]) ** 2:g}. "
        "Small times are noisy: read the ratio together with the absolute figures."
    )


def _key(times: list[float | None]) -> tuple[int, float]:
    # A skipped (over budget) size is worse than any measured one.
    skipped = sum(t is None for t in times)
    measured = [t for t in times if t is not None]
    return (skipped, measured[-1] if measured else 0.0)


def _size(n: int) -> str:
    return f"{n / 1e6:g} MB" if n >= 10**6 else f"{n / 1e3:g} kB"


def _secs(t: float | None) -> str:
    return "> budget" if t is None else f"{t * 1000:.1f} ms"


if __name__ == "__main__":
    main()
