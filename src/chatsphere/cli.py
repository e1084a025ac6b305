"""``chatsphere serve | token | demo``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .config import ConfigError, load_settings


def _serve(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["ws_port"] = args.port
    if args.http_port is not None:
        overrides["http_port"] = args.http_port
    settings = load_settings(**overrides)
    from .server import run

    run(settings)
    return 0


def _token(args: argparse.Namespace) -> int:
    from .auth import TokenAuthority

    settings = load_settings()
    authority = TokenAuthority(settings.effective_jwt_secret, issuer=settings.jwt_issuer)
    print(
        authority.mint(
            args.user,
            roles=tuple(args.role or ()),
            age_verified=args.age_verified,
            ttl_seconds=args.ttl,
        )
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(run_demo(pace=args.pace))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatsphere", description="ChatSphere chat server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a node (settings from the environment and .env)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int, help="WebSocket port (WS_PORT)")
    serve.add_argument("--http-port", type=int, help="HTTP port (HTTP_PORT, default WS_PORT+1)")
    serve.set_defaults(func=_serve)
    token = sub.add_parser("token", help="mint a JWT for a user, signed with JWT_SECRET")
    token.add_argument("user")
    token.add_argument("--role", action="append", help="a platform role claim (repeatable)")
    token.add_argument("--ttl", type=int, default=86_400, help="lifetime in seconds")
    token.add_argument("--age-verified", action="store_true")
    token.set_defaults(func=_token)
    demo = sub.add_parser("demo", help="a narrated walkthrough on a private, temporary node")
    demo.add_argument("--pace", type=float, default=0.4, help="seconds between steps")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"chatsphere: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
