"""Run the Slack stand-in as its own process, for the dev server and for benchmarks."""

from __future__ import annotations

import argparse

from standin.slack import StandIn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m standin.slack", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--token-rotation", action="store_true",
                        help="issue tokens that expire after 12 hours, with refresh tokens (default: off, as a new"
                             " Slack app has it)")
    parser.add_argument("--redirect-uri", action="append", default=None, metavar="URL",
                        help="registered redirect; repeat for more (default: accept any)")
    parser.add_argument("--state", default=None, metavar="PATH",
                        help="keep the stand-in's people, grants and keys in this JSON file across restarts;"
                             " another stand-in may share it (default: memory only)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    standin = StandIn(host=args.host, port=args.port, redirect_uris=args.redirect_uri,
                      token_rotation=args.token_rotation or None, state_path=args.state)
    standin.serve_until_stopped(
        f"Slack stand-in (not Slack) on {standin.base_url}",
        f"  SLACK_AUTHORIZE_URL={standin.authorize_url}",
        f"  SLACK_API_BASE_URL={standin.api_base_url}",
        f"  client id: {standin.app.client_id}  (secrets: standin.slack.DEFAULT_APP)",
        f"  token rotation: {'on' if standin.app.token_rotation else 'off'}",
        f"  state: {standin.state_path or 'memory only'}",
        f"  control API: {standin.base_url}/_standin/...   Ctrl-C to stop",
    )


if __name__ == "__main__":
    main()
