import json

from bot.terminal.cli import main
from commands.evidence import verify_bundle, write_bundle
from commands.report import Status
from tests.factories import check, report


def test_bundle_has_report_markdown_and_a_manifest_that_verifies(tmp_path):
    r = report(check("aws_identity"), check("alarms", Status.WARN, "INSUFFICIENT_DATA: x"))
    bundle = write_bundle(r, tmp_path)
    assert bundle.path.parent == tmp_path / "prod"
    assert bundle.path.name.endswith(f"-preflight-{r.run_id}")
    assert sorted(p.name for p in bundle.path.iterdir()) == ["manifest.json", "report.json", "report.md"]
    data = json.loads((bundle.path / "report.json").read_text())
    assert {"command", "env", "run_id", "started_at", "finished_at", "overall_status", "checks"} <= set(data)
    assert set(data["checks"][0]) >= {"name", "status", "detail", "duration_ms"}
    manifest = json.loads((bundle.path / "manifest.json").read_text())
    assert manifest["run_id"] == r.run_id and manifest["tool_version"]
    assert set(manifest["files"]) == {"report.json", "report.md"}
    assert "| `alarms` | ⚠️ WARN | INSUFFICIENT_DATA: x |" in (bundle.path / "report.md").read_text()
    assert verify_bundle(bundle.path) == []


def test_tampering_is_caught(tmp_path):
    bundle = write_bundle(report(check("a")), tmp_path)
    (bundle.path / "report.json").write_text('{"overall_status": "PASS"}')
    (bundle.path / "extra.txt").write_text("x")
    problems = verify_bundle(bundle.path)
    assert any("report.json: SHA-256 does not match" in p for p in problems)
    assert any("extra.txt: present but not in the manifest" in p for p in problems)
    (bundle.path / "report.md").unlink()
    assert any("report.md: listed in the manifest but missing" in p for p in verify_bundle(bundle.path))


def test_verify_cli_exit_codes(tmp_path, capsys):
    bundle = write_bundle(report(check("a")), tmp_path)
    assert main(["verify", str(bundle.path)]) == 0
    (bundle.path / "report.md").write_text("edited")
    assert main(["verify", str(bundle.path)]) == 1
    assert "report.md: SHA-256 does not match" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "nothing")]) == 1
