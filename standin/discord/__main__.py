"""Run the stand-in as its own process, for the dev server and for benchmarks."""

from __future__ import annotations

import argparse

from standin.discord import StandIn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m standin.discord", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--rate-limit", type=float, default=None, metavar="PER_SECOND",
                        help="requests per second in every bucket, counted per route and Authorization"
                             " header as Discord does (default: unlimited)")
    parser.add_argument("--global-rate-limit", type=float, default=None, metavar="PER_SECOND",
                        help="requests per second over all of /api/v10, checked before the buckets"
                             " (default: unlimited)")
    parser.add_argument("--redirect-uri", action="append", default=None, metavar="URL",
                        help="registered redirect; repeat for more (default: accept any)")
    parser.add_argument("--state", default=None, metavar="PATH",
                        help="keep the stand-in's people, grants and keys in this JSON file across restarts;"
                             " another stand-in may share it (default: memory only)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    standin = StandIn(host=args.host, port=args.port, redirect_uris=args.redirect_uri,
                      rate_limit=args.rate_limit, global_limit=args.global_rate_limit, state_path=args.state)
    standin.serve_until_stopped(
        f"Discord stand-in (not Discord) on {standin.base_url}",
        f"  DISCORD_AUTHORIZE_URL={standin.authorize_url}",
        f"  DISCORD_API_BASE_URL={standin.api_base_url}",
        f"  client id: {standin.app.client_id}  (secret and bot token: standin.discord.DEFAULT_APP)",
        f"  public key (publicKey, for events): {standin.app.verify_key}",
        f"  state: {standin.state_path or 'memory only'}",
        f"  control API: {standin.base_url}/_standin/...   Ctrl-C to stop",
    )


if __name__ == "__main__":
    main()
