"""`python -m bot ...`: the command line. Same code path as the slash commands (commands.execute).

Subcommands for the cutover commands come from the registry (commands/registry.py).
Exit codes: 0 PASS, 1 FAIL or refused, 2 bad usage or configuration (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.terminal.runs import EXIT_FAIL, EXIT_PASS, EXIT_USAGE, Outputs, run_in_terminal
from commands.config import ConfigError, load_config
from commands.evidence import ManifestUnusable, verify_bundle
from commands.gate import Refused
from commands.redaction import REDACTOR, install_log_redaction, redact_and_clip
from commands.registry import COMMANDS, UsageError
from commands.request import RunRequest, os_user

CONFIRMABLE = ("rule-enabled", "rule-paused", "http-target")  # person-steps a CLI user confirms up front
MAX_PR = 10**9  # GitHub's PR numbers are far below this; anything larger is a typo


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own exit code is already 2; keep it to one line
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or not 0 < int(text) <= MAX_PR:
        said = redact_and_clip(text, 20)
        raise argparse.ArgumentTypeError(f"must be a positive integer up to {MAX_PR}, not {said!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bot", description="Cutover bot: run the Order Status cutover safely.")
    sub = parser.add_subparsers(dest="subcommand", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="the whole cutover on the embedded sandbox, through Slack (no network)")
    demo.add_argument("--step", action="store_true", help="pause for Enter between steps (on a terminal)")
    demo.add_argument("--keep", action="store_true", help="leave the sandbox and the app running (Ctrl-C stops)")
    demo.add_argument("--send", metavar="COMMAND", help='sign and send a command to a --keep demo: "/cutover help"')
    demo.add_argument("--as", dest="as_user", help="the Slack user id --send speaks as (default: the engineer)")
    serve = sub.add_parser("serve", help="serve the Slack app over HTTP (POST /slack/events, GET /healthz)")
    serve.add_argument("--port", type=int, default=None, help="default: $PORT, else 3000")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default: every interface)")  # noqa: S104
    sub.add_parser("socket", help="run the Slack app in Socket Mode (needs SLACK_APP_TOKEN)")
    verify = sub.add_parser("verify", help="check an evidence bundle against its manifest")
    verify.add_argument("bundle", type=Path)
    status = sub.add_parser("status", help="an environment's phase, lock, last runs, approvals and audit trail")
    status.add_argument("--env", required=True, help="environment name from the map")
    status.add_argument("--config", type=Path, help="environment map (default: $CUTOVER_CONFIG or ./cutover.toml)")
    status.add_argument("--md", action="store_true", help="print a Markdown timeline fit for a change record")
    status.add_argument("--include-aws-account-id", action="store_true", help="do not redact AWS account ids")
    comment = sub.add_parser(
        "pr-comment", help="run a command typed as a pull request comment (the issue_comment job: GITHUB_EVENT_PATH)"
    )
    comment.add_argument("--config", type=Path, help="environment map (default: $CUTOVER_CONFIG or ./cutover.toml)")
    comment.add_argument(
        "--accept", action="store_true", help="only check the author, react or answer, and set the job's outputs"
    )
    comment.add_argument("--evidence-dir", type=Path, help="where bundles go (default: the map's evidence_dir)")
    for name, spec in COMMANDS.items():
        p = sub.add_parser(name, help=f"/{name}: {spec.summary}")
        p.add_argument("--env", required=True, help="environment name from the map")
        p.add_argument("--config", type=Path, help="environment map (default: $CUTOVER_CONFIG or ./cutover.toml)")
        p.add_argument("--pr", type=_positive, help="attach the evidence to this pull request")
        p.add_argument("--dry-run", action="store_true", help="show what would happen; change and write nothing")
        p.add_argument("--out-json", type=Path, help="also write the report JSON here")
        p.add_argument("--out-md", type=Path, help="also write the report Markdown here")
        p.add_argument("--include-aws-account-id", action="store_true", help="do not redact AWS account ids")
        p.add_argument("--evidence-dir", type=Path, help="where bundles go (default: the map's evidence_dir)")
        p.add_argument("--run-id", help="the run id announced elsewhere (a GitHub Actions dispatch)")
        p.add_argument("--slack-channel", help="also report the run in this Slack channel (needs SLACK_BOT_TOKEN)")
        p.add_argument("--slack-ts", help="edit this Slack message (the one the Slack app posted) instead of posting")
        p.add_argument(
            "--requested-by",
            help="who a GitHub Actions run is for: a Slack user id or github:<login> (must be a runner of the env)",
        )
        if name == "preflight":
            p.add_argument("--aws-region", help="expected region (a mismatch with the map fails the run)")
            p.add_argument("--shop-domain", help="expected shop (a mismatch with the map fails the run)")
            p.add_argument("--runs", type=_positive, default=1, help="repeat N times, each with its own evidence")
        if spec.approvable:
            p.add_argument("--approval", help="an approval id given in Slack; looked up and checked in the store")
        if spec.mutating:
            p.add_argument(
                "--confirm",
                action="append",
                choices=CONFIRMABLE,
                default=[],
                help="confirm a step you did in Richpanel's UI (recorded as your OS user)",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    install_log_redaction()
    try:
        return _dispatch(args)
    except (ConfigError, UsageError, ManifestUnusable) as exc:
        print(f"error: {REDACTOR.redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except Refused as exc:
        print(f"refused: {REDACTOR.redact(exc.reason)}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.subcommand == "demo":
        from bot.terminal.demo import run_demo, send

        if args.send is not None:
            return send(args.send, user=args.as_user) if args.as_user else send(args.send)
        return run_demo(step=args.step, keep=args.keep)
    if args.subcommand == "verify":
        return _verify(args.bundle)
    if args.subcommand == "status":
        return _status(args)
    if args.subcommand == "serve":
        from bot.slack.serve import serve, serve_port

        return serve(port=serve_port(args.port), host=args.host)
    if args.subcommand == "socket":
        from bot.slack.socket_mode import run_socket_mode
        from commands.config import Tokens

        return run_socket_mode(load_config(), Tokens())
    if args.subcommand == "pr-comment":
        return _pr_comment(args)
    config = load_config(args.config)
    outputs = Outputs(
        out_json=args.out_json, out_md=args.out_md, evidence_dir=args.evidence_dir, runs=getattr(args, "runs", 1)
    )
    if args.requested_by or args.slack_channel or args.slack_ts:  # a run a GitHub Actions workflow started
        from bot.terminal.actions_run import run_from_actions
        from commands.config import Tokens

        request = request_from_args(args)
        channel, ts = args.slack_channel, args.slack_ts
        return run_from_actions(request, config, outputs=outputs, tokens=Tokens(), slack_channel=channel, slack_ts=ts)
    return run_in_terminal(request_from_args(args), config, outputs=outputs)


def _pr_comment(args: argparse.Namespace) -> int:
    import os

    from bot.terminal.actions_run import run_pr_comment
    from commands.config import Tokens

    return run_pr_comment(
        load_config(args.config),
        Tokens(),
        event_path=os.environ.get("GITHUB_EVENT_PATH"),
        outputs=Outputs(evidence_dir=args.evidence_dir),
        accept_only=args.accept,
        github_output=os.environ.get("GITHUB_OUTPUT"),
    )


def request_from_args(args: argparse.Namespace) -> RunRequest:
    claimed = getattr(args, "requested_by", None)
    if claimed:  # a GitHub Actions run: the requester is checked against the map's runners again
        from bot.terminal.actions_run import check_requester

        requested_by, surface = check_requester(claimed), "actions"
    else:
        requested_by, surface = os_user(), "cli"
    return RunRequest(
        command=args.subcommand,
        env=args.env,
        requested_by=requested_by,
        surface=surface,
        pr=args.pr,
        dry_run=args.dry_run,
        include_aws_account_id=args.include_aws_account_id,
        aws_region=getattr(args, "aws_region", None),
        shop_domain=getattr(args, "shop_domain", None),
        approval_id=getattr(args, "approval", None),
        confirmations=tuple(getattr(args, "confirm", ())),
        run_id=args.run_id,
    )


def _status(args: argparse.Namespace) -> int:
    from commands.execute import store_for
    from commands.state import StateError
    from commands.status import AUDIT, TIMELINE_AUDIT, env_status, render_text

    config = load_config(args.config)
    config.env(args.env)  # ConfigError naming the known environments
    keep = args.include_aws_account_id
    try:
        if args.md:  # the whole cutover, newest first, for a change record (the PR's timeline comment's rows)
            from bot.execution.evidence_publisher import OUTBOX_DIR
            from commands.timeline import read_links, status_markdown

            links = read_links(Path(config.evidence_dir) / OUTBOX_DIR, args.env)  # the bot's own record
            store = store_for(config)
            print(status_markdown(store, args.env, keep_account_ids=keep, audit=TIMELINE_AUDIT, links=links), end="")
            return EXIT_PASS
        found = env_status(store_for(config), args.env, audit=AUDIT)
    except StateError as exc:
        print(f"error: the state store could not be read: {REDACTOR.redact(str(exc))}", file=sys.stderr)
        return EXIT_FAIL
    print(render_text(found, keep_account_ids=keep))
    return EXIT_PASS


def _verify(bundle: Path) -> int:
    problems = verify_bundle(bundle)
    for line in problems:
        print(f"FAIL {line}")
    if problems:
        return EXIT_FAIL
    print(f"OK {bundle}: every file matches the manifest")
    return EXIT_PASS
