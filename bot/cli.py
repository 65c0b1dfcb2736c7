"""`python -m bot ...`: the command line. Same code path as the slash commands (commands.execute).

Exit codes: 0 PASS, 1 FAIL, 2 bad usage or configuration (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from commands.config import COMMANDS, ConfigError, CutoverConfig, load_config
from commands.evidence import verify_bundle
from commands.execute import Outcome, RunRequest, UsageError, execute
from commands.redaction import REDACTOR, install_log_redaction

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
IMPLEMENTED = {"preflight"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own exit code is already 2; keep it to one line
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bot", description="Cutover bot: run the Order Status cutover safely.")
    sub = parser.add_subparsers(dest="subcommand", required=True, parser_class=_Parser)
    sub.add_parser("demo", help="run the bot's main job on the embedded sandbox (no network)")
    serve = sub.add_parser("serve", help="serve the Slack app over HTTP (POST /slack/events, GET /healthz)")
    serve.add_argument("--port", type=int, default=3000)
    sub.add_parser("socket", help="run the Slack app in Socket Mode (needs SLACK_APP_TOKEN)")
    verify = sub.add_parser("verify", help="check an evidence bundle against its manifest")
    verify.add_argument("bundle", type=Path)
    for name in COMMANDS:
        p = sub.add_parser(name, help=f"run /{name} from the command line")
        p.add_argument("--env", required=True, help="environment name from the map")
        p.add_argument("--config", type=Path, help="environment map (default: $CUTOVER_CONFIG or ./cutover.toml)")
        p.add_argument("--pr", type=_positive, help="attach the evidence to this pull request")
        p.add_argument("--out-json", type=Path, help="also write the report JSON here")
        p.add_argument("--out-md", type=Path, help="also write the report Markdown here")
        p.add_argument("--include-aws-account-id", action="store_true", help="do not redact AWS account ids")
        p.add_argument("--aws-region", help="expected region (a mismatch with the map fails the run)")
        p.add_argument("--shop-domain", help="expected shop (a mismatch with the map fails the run)")
        p.add_argument("--runs", type=_positive, default=1, help="repeat N times, each with its own evidence")
        p.add_argument("--evidence-dir", type=Path, help="where bundles go (default: the map's evidence_dir)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    install_log_redaction()
    try:
        return _dispatch(args)
    except (ConfigError, UsageError) as exc:
        print(f"error: {REDACTOR.redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.subcommand == "demo":
        from bot.demo import run_demo

        return run_demo()
    if args.subcommand == "verify":
        return _verify(args.bundle)
    if args.subcommand == "serve":
        from bot.serve import serve

        return serve(port=args.port)
    if args.subcommand == "socket":
        from bot.socket_mode import run_socket_mode
        from commands.config import Tokens

        return run_socket_mode(load_config(), Tokens())
    if args.subcommand not in IMPLEMENTED:
        raise UsageError(f"'{args.subcommand}' is not built yet: only {', '.join(sorted(IMPLEMENTED))} is available")
    return run_command(args, load_config(args.config))


def _verify(bundle: Path) -> int:
    problems = verify_bundle(bundle)
    for line in problems:
        print(f"FAIL {line}")
    if problems:
        return EXIT_FAIL
    print(f"OK {bundle}: every file matches the manifest")
    return EXIT_PASS


def make_console() -> Console:
    # Piped output (CI logs, files) gets a readable width instead of rich's 80-column fallback.
    return Console() if sys.stdout.isatty() else Console(width=120)


def run_command(args: argparse.Namespace, config: CutoverConfig, *, console: Console | None = None) -> int:
    from bot.terminal import LiveChecks, print_outcome
    from bot.wiring import drain_in_background, publisher_for

    console = console or make_console()
    config.env(args.env)  # unknown env: exit 2 before anything runs
    request = RunRequest(
        command=args.subcommand,
        env=args.env,
        requested_by="cli",
        pr=args.pr,
        include_aws_account_id=args.include_aws_account_id,
        aws_region=args.aws_region,
        shop_domain=args.shop_domain,
    )
    publisher = publisher_for(config)
    drain_in_background(publisher)
    keep = args.include_aws_account_id
    outcomes: list[Outcome] = []
    for i in range(args.runs):
        label = f"{args.subcommand} {args.env}" + (f" (run {i + 1}/{args.runs})" if args.runs > 1 else "")
        live = LiveChecks(console, label=label, keep_account_ids=keep)
        with live.shown():
            outcome = execute(
                request, config=config, progress=live.add, publisher=publisher, evidence_root=args.evidence_dir
            )
        print_outcome(console, outcome, keep_account_ids=keep)
        outcomes.append(outcome)
    last = outcomes[-1].bundle.files
    if args.out_json:
        args.out_json.write_bytes(last["report.json"])
    if args.out_md:
        args.out_md.write_bytes(last["report.md"])
    if args.runs > 1:
        verdicts = ", ".join(f"{o.report.run_id} {o.report.overall_status}" for o in outcomes)
        passed = sum(o.report.passed for o in outcomes)
        console.print(f"{args.runs} runs: {passed} PASS, {args.runs - passed} FAIL ({verdicts})")
    return EXIT_PASS if all(o.report.passed for o in outcomes) else EXIT_FAIL
