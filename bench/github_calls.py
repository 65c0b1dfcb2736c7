"""How many GitHub API calls attaching a bundle costs, for 3, 30 and 300 proof files.

Runs the real publisher and PyGithub against the loopback GitHub. Target: the count does not grow
with the number of files (they travel inline in one tree, in one commit).

    .venv/bin/python bench/github_calls.py
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from commands.evidence import MANIFEST, Bundle, bundle_dirname, render_files
from commands.outbox import Outbox
from commands.publish import GitHubPublisher
from commands.report import CheckResult, Report, Status, new_run_id, utc_now
from integrations.github import GitHubEvidence
from integrations.sandbox.github import SANDBOX_TOKEN, GitHubFake

SIZES = (3, 30, 300)
REPO = "acme/rp-mw"


def make_bundle(root: Path, n_files: int) -> tuple[Report, Bundle]:
    """A real report's three files plus proof files up to `n_files`, all listed in the manifest."""
    started = utc_now()
    checks = [CheckResult(name=f"check_{i}", status=Status.PASS, detail="ok", duration_ms=i) for i in range(12)]
    report = Report(
        command="preflight",
        env="prod",
        run_id=new_run_id(),
        started_at=started,
        finished_at=started + timedelta(seconds=2),
        overall_status="PASS",
        checks=checks,
    )
    files = render_files(report)
    manifest = json.loads(files.pop(MANIFEST))
    for i in range(n_files - 3):
        body = json.dumps({"proof": i, "rows": ["x" * 60] * 20}).encode()
        files[f"proof-{i:03d}.json"] = body
        manifest["files"][f"proof-{i:03d}.json"] = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
    files[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    path = root / report.env / bundle_dirname(report)
    path.mkdir(parents=True)
    for name, body in files.items():
        (path / name).write_bytes(body)
    return report, Bundle(path=path, files=files)


def main() -> int:
    rows = []
    with GitHubFake(repo=REPO) as fake, tempfile.TemporaryDirectory() as tmp:
        for pr, n in enumerate(SIZES, start=100):
            fake.add_pr(pr, f"cutover/bench-{n}")
            sink = GitHubEvidence(repo=REPO, token=SANDBOX_TOKEN, base_url=fake.url, timeout_s=5)
            publisher = GitHubPublisher(sink, Outbox(Path(tmp) / "outbox"), evidence_dir="evidence", wait_s=0)
            report, bundle = make_bundle(Path(tmp) / "local", n)
            seen = len(fake.requests)
            t0 = time.perf_counter()
            result = publisher.publish(report, bundle, pr=pr, keep_account_ids=False)
            elapsed = time.perf_counter() - t0
            if result.state != "attached":
                print(f"{n} files: not attached: {result.detail}")
                return 1
            http = len(fake.requests) - seen
            writes = sum(1 for r in fake.requests[seen:] if r.method != "GET")
            size_kib = sum(len(b) for b in bundle.files.values()) / 1024
            rows.append((n, sink.calls, http, writes, size_kib, elapsed * 1000))
            sink.close()

    print(f"{'files':>6} {'calls':>6} {'http':>6} {'writes':>7} {'KiB':>8} {'ms':>8}")
    for n, calls, http, writes, kib, ms in rows:
        print(f"{n:>6} {calls:>6} {http:>6} {writes:>7} {kib:>8.1f} {ms:>8.1f}")
    ratio = rows[-1][1] / rows[0][1]
    print(f"calls({SIZES[-1]}) / calls({SIZES[0]}) = {ratio:.2f}  (target: 1.00, constant in the number of files)")
    return 0 if ratio == 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
