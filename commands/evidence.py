"""Evidence bundles: report.json, report.md (and extra proof such as chart.png) and a SHA-256 manifest,
redacted before they touch the disk."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from commands import render
from commands.redaction import REDACTOR, Redactor, redact_and_clip
from commands.report import Report

TOOL_VERSION = "0.1.0"
MANIFEST = "manifest.json"
_RENDERED = ("report.json", "report.md", MANIFEST)  # names an extra file cannot take


@dataclass(frozen=True)
class Bundle:
    """A written bundle: its folder and the exact bytes of each file (what a publisher uploads)."""

    path: Path
    files: dict[str, bytes]  # name -> content, manifest included

    @property
    def name(self) -> str:
        return self.path.name


def render_files(
    report: Report,
    *,
    redactor: Redactor = REDACTOR,
    keep_account_ids: bool = False,
    extra_files: Mapping[str, bytes] | None = None,
) -> dict[str, bytes]:
    """The bundle's files, each redacted as rendered; the manifest hashes the redacted bytes.

    `extra_files` (name -> bytes, e.g. `chart.png`) join the bundle and its manifest: a text file is
    redacted like the rest, a binary one is taken as given (its maker keeps it free of identifiers).
    """
    clean = render.redacted(report, keep_account_ids=keep_account_ids, redactor=redactor)
    as_json = json.dumps(clean.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    files = {
        "report.json": redactor.redact(as_json, keep_account_ids=keep_account_ids).encode(),
        "report.md": redactor.redact(render.markdown(clean), keep_account_ids=keep_account_ids).encode(),
    }
    for name, body in sorted((extra_files or {}).items()):
        if Path(name).name != name or name in (".", "..", *_RENDERED) or not name.strip():
            raise ValueError(f"an extra evidence file needs a plain name of its own, not {name!r}")
        try:
            files[name] = redactor.redact(body.decode("utf-8"), keep_account_ids=keep_account_ids).encode()
        except UnicodeDecodeError:
            files[name] = bytes(body)
    manifest = {
        "run_id": report.run_id,
        "command": report.command,
        "env": report.env,
        "tool_version": TOOL_VERSION,
        "git_commit": _git_commit(),
        "files": {
            name: {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)} for name, body in files.items()
        },
    }
    files[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return files


def bundle_dirname(report: Report) -> str:
    return f"{report.started_at.strftime('%Y%m%dT%H%M%SZ')}-{report.command}-{report.run_id}"


def write_bundle(
    report: Report,
    root: Path | str,
    *,
    keep_account_ids: bool = False,
    redactor: Redactor = REDACTOR,
    extra_files: Mapping[str, bytes] | None = None,
) -> Bundle:
    """Write `root/<env>/<UTC timestamp>-<command>-<run id>/` and return what was written."""
    path = Path(root) / report.env / bundle_dirname(report)
    path.mkdir(parents=True, exist_ok=True)
    files = render_files(report, redactor=redactor, keep_account_ids=keep_account_ids, extra_files=extra_files)
    for name, body in files.items():
        (path / name).write_bytes(body)
    return Bundle(path=path, files=files)


class ManifestUnusable(ValueError):
    """The manifest cannot be trusted to describe the bundle (missing, malformed, empty, or naming
    files outside the bundle): a usage problem, not a verdict on the files."""


def verify_bundle(path: Path | str) -> list[str]:
    """Problems found checking a bundle against its manifest; empty means it verifies.
    Raises ManifestUnusable when there is nothing trustworthy to check against."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{path}: no {MANIFEST} (is this an evidence bundle folder?)"]
    except (OSError, ValueError) as exc:
        raise ManifestUnusable(f"{path / MANIFEST}: unreadable manifest ({exc.__class__.__name__})") from None
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict) or not listed:
        raise ManifestUnusable(f"{path / MANIFEST}: lists no files, so it proves nothing")
    for name, meta in listed.items():
        # Only plain names inside the bundle: "../x" or "/etc/passwd" would verify files it does not own.
        if not isinstance(name, str) or Path(name).name != name or name in (".", "..") or not isinstance(meta, dict):
            said = redact_and_clip(str(name), 80)
            raise ManifestUnusable(f"{path / MANIFEST}: entry {said!r} is not a file name inside the bundle")
    problems = []
    for name, meta in sorted(listed.items()):
        file = path / name
        if not file.is_file():
            problems.append(f"{name}: listed in the manifest but missing")
            continue
        body = file.read_bytes()
        if hashlib.sha256(body).hexdigest() != meta.get("sha256"):
            problems.append(f"{name}: SHA-256 does not match the manifest")
        elif len(body) != meta.get("size"):
            problems.append(f"{name}: size does not match the manifest")
    extra = sorted(p.name for p in path.iterdir() if p.is_file() and p.name != MANIFEST and p.name not in listed)
    problems += [f"{name}: present but not in the manifest" for name in extra]
    return problems


@functools.cache
def _git_commit() -> str | None:
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2, check=False)  # noqa: S607
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
