"""The `gateway` command: serve, migrate, users, tokens, nodes, simulator."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from ._config import SETTINGS, Config, ConfigError

if TYPE_CHECKING:
    from ._accounts import Accounts

log = logging.getLogger("gateway.cli")

_SIM_URL_DEFAULT = next(s.default for s in SETTINGS if s.env == "GATEWAY_SIM_URL")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Trio WhatsApp gateway")
    parser.add_argument("--database-url", help="overrides GATEWAY_DATABASE_URL")
    parser.add_argument("--log-level", help="overrides GATEWAY_LOG_LEVEL")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API (hypercorn, trio worker)")
    serve.add_argument("--bind", help="HOST:PORT; overrides GATEWAY_BIND and $PORT")
    serve.add_argument("--transport", choices=["whatsapp", "sim"], help="overrides GATEWAY_TRANSPORT")
    serve.add_argument("--sim-url", help="overrides GATEWAY_SIM_URL")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="run N processes on the public port (needs PostgreSQL); overrides GATEWAY_WORKERS")
    # Set by `--workers` on the processes it starts: the inherited listening socket, and which worker this is.
    serve.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)

    sub.add_parser("migrate", help="apply pending database migrations")
    sub.add_parser("nodes", help="list cluster nodes, their heartbeats and how many sessions each runs")

    sim = sub.add_parser("simulator", help="run the simulated WhatsApp network (tests, demos, bench)",
                         description="Run the simulated WhatsApp network; with a command (scan, unregister), "
                                     "act on a running one instead.")
    sim.add_argument("--bind", default="127.0.0.1:8765", help="HOST:PORT (default 127.0.0.1:8765)")
    sim.add_argument("--autopair", type=float, metavar="SECONDS",
                     help="pair every connecting session after SECONDS, without a QR scan")
    sim.add_argument("--receipt-delay", type=float, default=0.5, metavar="SECONDS",
                     help="delay before delivered and read receipts (default 0.5)")
    sim.add_argument("--qr-interval", type=float, default=20.0, metavar="SECONDS",
                     help="how often an unpaired session gets a new QR code (default 20)")
    sim.add_argument("--closed-world", action="store_true",
                     help="only numbers a session paired as or control registered are on WhatsApp "
                          "(default: every well-formed number is)")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="{scan,unregister}",
                                 help="act on a running simulator instead of running one")
    url_help = f"the simulator's URL (default: $GATEWAY_SIM_URL, else {_SIM_URL_DEFAULT})"
    scan = sim_sub.add_parser("scan", help="pair the session showing a QR; prints the number it paired as")
    scan.add_argument("session_id", metavar="SESSION_ID")
    scan.add_argument("--phone", help="the number that scans (default: the session's own number or a fresh one)")
    scan.add_argument("--url", help=url_help)
    unregister = sim_sub.add_parser("unregister", help="take a number off WhatsApp: sends to it fail")
    unregister.add_argument("phone", metavar="PHONE")
    unregister.add_argument("--url", help=url_help)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="action", required=True)
    create_user = users.add_parser("create", help="create a user")
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--password", required=True)

    tokens = sub.add_parser("tokens", help="manage personal access tokens").add_subparsers(
        dest="action", required=True)
    create_token = tokens.add_parser("create", help="create a token; prints it alone on stdout")
    create_token.add_argument("--email", required=True)
    create_token.add_argument("--name", required=True)
    create_token.add_argument("--expires-days", type=int, metavar="DAYS", help="refuse the token after DAYS days")
    list_tokens = tokens.add_parser("list", help="list a user's tokens (never their secrets)")
    list_tokens.add_argument("--email", required=True)
    revoke_token = tokens.add_parser("revoke", help="revoke a token by its id (the part after wgp_)")
    revoke_token.add_argument("id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "simulator":
        return _simulator(args)
    overrides = {
        "database_url": args.database_url,
        "log_level": args.log_level,
        "bind": args.bind if args.command == "serve" else None,
        "transport": getattr(args, "transport", None),
        "sim_url": getattr(args, "sim_url", None),
        "workers": getattr(args, "workers", None),
    }
    try:
        config = Config.from_env(**overrides)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    from ._logging import configure_logging

    configure_logging(config.log_level)
    try:
        if args.command == "serve":
            return serve(config, listen_fd=args.listen_fd, worker_index=args.worker_index)
        return trio.run(_run_admin, config, args)
    except _AdminError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


class _AdminError(Exception):
    pass


def _simulator(args: argparse.Namespace) -> int:
    """`gateway simulator`: run the network, or (`scan`, `unregister`) ask a running one."""
    if args.sim_command is None:
        from bench.simulator import run_simulator_cli

        return run_simulator_cli(args.bind, autopair=args.autopair, receipt_delay=args.receipt_delay,
                                 qr_interval=args.qr_interval, open_world=not args.closed_world)
    from bench.simulator import run_control_cli

    url = args.url or os.environ.get("GATEWAY_SIM_URL") or _SIM_URL_DEFAULT
    if args.sim_command == "scan":
        return run_control_cli(url, "scan", session_id=args.session_id, phone=args.phone)
    return run_control_cli(url, "unregister", phone=args.phone)


async def _run_admin(config: Config, args: argparse.Namespace) -> int:
    from ._accounts import AccountError, Accounts
    from .store import StoreError, open_store

    try:
        store = await open_store(config.database_url, sqlite_synchronous=config.sqlite_synchronous)
    except StoreError as exc:
        raise _AdminError(str(exc)) from None
    try:
        if args.command == "migrate":
            applied = await store.migrate()
            print(f"migrated to version {await store.schema_version()} (applied: {applied or 'none'})",
                  file=sys.stderr)
            return 0
        if args.command == "nodes":
            return await _print_nodes(config, store)
        await store.migrate()
        accounts = Accounts(store)
        try:
            if args.command == "users":
                user = await accounts.create_user(args.email, args.password)
                print(f"created user {user.email} ({user.id})", file=sys.stderr)
                return 0
            if args.command == "tokens":
                return await _tokens(accounts, args, config)
        except AccountError as exc:
            raise _AdminError(str(exc)) from None
    finally:
        await store.aclose()
    raise _AdminError(f"unknown command {args.command}")


async def _tokens(accounts: Accounts, args: argparse.Namespace, config: Config) -> int:
    from .store import iso_ms

    if args.action == "create":
        _, plaintext = await accounts.create_token(args.email, args.name, expires_in_days=args.expires_days)
        print(plaintext)
        return 0
    if args.action == "list":
        print(f"{'id':<18} {'name':<24} {'created':<24} {'last used':<24} {'expires':<24} revoked")
        for t in await accounts.list_tokens_by_email(args.email):
            print(f"{t.id:<18} {t.name[:24]:<24} {iso_ms(t.created_at):<24} {iso_ms(t.last_used_at) or '-':<24} "
                  f"{iso_ms(t.expires_at) or '-':<24} {iso_ms(t.revoked_at) or '-'}")
        return 0
    token_id = args.id.removeprefix("wgp_").split("_", 1)[0]
    if await accounts.revoke_token(token_id) is None:
        raise _AdminError(f"no token {token_id}")
    print(f"revoked {token_id}; serving gateways refuse it within GATEWAY_AUTH_CACHE_TTL "
          f"({config.auth_cache_ttl:g} s)", file=sys.stderr)
    return 0


async def _print_nodes(config: Config, store: object) -> int:
    from ._clock import now_ms

    if not config.cluster:
        print("single node: the SQLite store runs one process, with every session", file=sys.stderr)
        return 0
    nodes = await store.list_nodes()  # type: ignore[attr-defined]
    print(f"{'node':<44} {'state':<6} {'sessions':>8} {'heartbeat':>10}  address")
    at = now_ms()
    for n in nodes:
        print(f"{n.id:<44} {'alive' if n.alive else 'dead':<6} {n.leases:>8} "
              f"{(at - n.heartbeat_at) / 1000:>9.1f}s  {n.address or '-'}")
    return 0


def serve(config: Config, *, listen_fd: int | None = None, worker_index: int = 0) -> int:
    """Run hypercorn with the app: on `config.bind`, or on an inherited socket (`--workers` children).

    In cluster mode the node also listens on its internal address, for requests
    routed from other nodes; the socket is bound first so its real port is known
    before the app registers the node."""
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve as hypercorn_serve

    from ._owner import StoreBusy, hold_sqlite_store
    from ._status_line import install_reason_phrases
    from .app import create_app
    from .cluster._workers import bind_internal, serve_workers

    if config.workers > 1 and listen_fd is None:
        return serve_workers(config)
    owner = None
    if config.database_url.startswith("sqlite:"):
        try:  # an ordinary restart: the old process is stopping, within its shutdown timeout
            owner = hold_sqlite_store(config.database_url, wait=2 * config.shutdown_timeout + 5)
        except StoreBusy as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 3
    install_reason_phrases()
    hyper = HyperConfig()
    hyper.bind = [f"fd://{listen_fd}" if listen_fd is not None else config.bind]
    node_address = ""
    if config.cluster:
        internal, node_address = bind_internal(config, worker_index)
        hyper.bind.append(f"fd://{internal.detach()}")  # hypercorn owns the descriptor from here
    hyper.worker_class = "trio"
    hyper.graceful_timeout = config.shutdown_timeout
    hyper.accesslog = None
    hyper.errorlog = logging.getLogger("hypercorn.error")
    app = create_app(config, node_address=node_address)
    # Everything built so far (modules, the app) lives for the whole process: keep it out of every
    # collection, and collect the young generation less often. With thousands of sessions the default
    # thresholds spent most of a start-up in full collections.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)

    async def shutdown_trigger() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("shutting down", extra={"fields": {"signal": signal.Signals(signum).name}})
                await _stop_sessions_first(app, config.shutdown_timeout)
                return

    async def run() -> None:
        log.info("serving", extra={"fields": {"bind": config.bind, "transport": config.transport,
                                              "node_address": node_address or None, "worker": worker_index}})
        await hypercorn_serve(app, hyper, shutdown_trigger=shutdown_trigger)

    try:
        trio.run(run)
    finally:
        if owner is not None:
            owner.close()  # lets a waiting successor in
    return 0


async def _stop_sessions_first(app: Any, timeout: float) -> None:
    """Stop every session before the HTTP server drains: a successor may take over the store at once,
    and two processes must never run one session."""
    gateway = app.extensions["gateway_state"].get("gateway")
    if gateway is None:
        return
    with trio.move_on_after(timeout) as scope:
        scope.shield = True
        await gateway.supervisor.stop_all()
