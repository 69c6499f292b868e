"""The ``tokenwire`` console script: one sub-command per part of the system.

Each sub-command imports its implementation lazily so ``tokenwire services up`` does not
pay for loading Faust, and a missing optional piece fails only the command that needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from tokenwire.bench.cli import add_arguments as add_bench_arguments
from tokenwire.event_loop import use_fast_event_loop
from tokenwire.faults.cli import add_arguments as add_fault_arguments
from tokenwire.log_format import configure_logging
from tokenwire.replay.cli import add_arguments as add_replay_arguments
from tokenwire.settings import get_settings
from tokenwire.trace_view import add_arguments as add_trace_arguments

Handler = Callable[[argparse.Namespace], int]


def _services(args: argparse.Namespace) -> int:
    from tokenwire.services import cli as services_cli

    return services_cli.run(args.action, get_settings())


def _sim(args: argparse.Namespace) -> int:
    from tokenwire.simulator.server import serve

    return serve(get_settings(), host=args.host, port=args.port)


def _worker(args: argparse.Namespace) -> int:
    from agents.worker import run_worker

    return run_worker(get_settings())


def _edge(args: argparse.Namespace) -> int:
    from api.server import serve

    return serve(get_settings(), host=args.host, port=args.port)


def _run(args: argparse.Namespace) -> int:
    from tokenwire.stack import run_stack

    return run_stack(get_settings())


def _token(args: argparse.Namespace) -> int:
    from api.stream_tokens import issue_token

    settings = get_settings()
    settings.require_safe("edge")
    token = issue_token(settings, session_id=args.session, user_id=args.user, scope=args.scope)
    print(token)
    return 0


def _dev_token(args: argparse.Namespace) -> int:
    from api.auth.development import mint_dev_jwt

    print(mint_dev_jwt(args.user, ttl_s=args.ttl, tier=args.tier))
    print("(a development JWT: only an edge with TOKENWIRE_MODE=development accepts it)",
          file=sys.stderr)
    return 0


def _keys_new(args: argparse.Namespace) -> int:
    from pathlib import Path

    from api.auth.api_keys import append_key_entry

    path = Path(args.file) if args.file else get_settings().auth.api_keys_file
    if path is None:
        print("no key file: pass --file or set TOKENWIRE_AUTH_API_KEYS_FILE", file=sys.stderr)
        return 2
    key_id = args.id or args.identity
    key = append_key_entry(path, key_id=key_id, identity=args.identity, tier=args.tier)
    print(key)
    print(f"(added key {key_id!r} for {args.identity!r} to {path}; the key is not stored, "
          "keep it now)", file=sys.stderr)
    return 0


def _topics(args: argparse.Namespace) -> int:
    """Create missing core topics, then report replication; exit 1 while a topic is below it."""
    import asyncio

    from tokenwire.topic_replication import report_lines, review
    from tokenwire.topics import ensure_core_topics

    settings = get_settings()
    asyncio.run(ensure_core_topics(settings))
    found = asyncio.run(review(settings, fix=args.fix))
    print("\n".join(report_lines(found)))
    return 1 if found.below() else 0


def _replay(args: argparse.Namespace) -> int:
    from tokenwire.replay.cli import run as run_replay

    return run_replay(args, get_settings())


def _faults(args: argparse.Namespace) -> int:
    from tokenwire.faults.cli import run as run_faults

    return run_faults(args, get_settings())


def _bench(args: argparse.Namespace) -> int:
    from tokenwire.bench.cli import run as run_bench

    return run_bench(args, get_settings())


def _trace(args: argparse.Namespace) -> int:
    from tokenwire.trace_view import run as run_trace

    return run_trace(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenwire", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    services = sub.add_parser("services", help="provision and run local Kafka and InfluxDB")
    services.add_argument("action", choices=["up", "down", "status", "install"])
    services.set_defaults(handler=_services)

    sim = sub.add_parser("sim", help="run the OpenAI-compatible simulator")
    sim.add_argument("--host", default=None)
    sim.add_argument("--port", type=int, default=None)
    sim.set_defaults(handler=_sim)

    sub.add_parser("worker", help="run the Faust worker (chat agent)").set_defaults(handler=_worker)

    edge = sub.add_parser("edge", help="run the Starlette SSE edge")
    edge.add_argument("--host", default=None)
    edge.add_argument("--port", type=int, default=None)
    edge.set_defaults(handler=_edge)

    sub.add_parser(
        "run", help="services + simulator + worker + edge, Ctrl-C stops all"
    ).set_defaults(handler=_run)
    topics = sub.add_parser(
        "topics", help="create the core topics; report (and --fix) replication below the settings"
    )
    topics.add_argument(
        "--fix", action="store_true", help="raise replicas and min.insync.replicas where below"
    )
    topics.set_defaults(handler=_topics)

    token = sub.add_parser("token", help="mint a stream token for a session (for producers)")
    token.add_argument("--session", required=True)
    token.add_argument("--user", required=True)
    token.add_argument("--scope", choices=["read", "write"], default="read")
    token.set_defaults(handler=_token)

    dev_token = sub.add_parser("dev-token", help="a development-mode JWT for curl and scripts")
    dev_token.add_argument("--user", default="alice")
    dev_token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    dev_token.add_argument("--tier", default=None)
    dev_token.set_defaults(handler=_dev_token)

    keys = sub.add_parser("keys", help="API keys for server-side producers")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_new = keys_sub.add_parser("new", help="add a hashed key to the key file, print the key")
    keys_new.add_argument("--identity", required=True, help="the user_id the key proves")
    keys_new.add_argument("--tier", default="default")
    keys_new.add_argument("--id", default=None, help="a name for logs (default: the identity)")
    keys_new.add_argument("--file", default=None, help="default: TOKENWIRE_AUTH_API_KEYS_FILE")
    keys_new.set_defaults(handler=_keys_new)
    replay = sub.add_parser("replay", help="audit: transcripts, integrity, rebuilt aggregates")
    replay.set_defaults(handler=_replay)
    add_replay_arguments(replay)

    bench = sub.add_parser("bench", help="latency/throughput benchmark against a direct relay")
    bench.set_defaults(handler=_bench)
    add_bench_arguments(bench)

    faults = sub.add_parser(
        "faults", help="kill brokers, workers and edges mid-stream on a local 3-node cluster"
    )
    faults.set_defaults(handler=_faults)
    add_fault_arguments(faults)

    trace = sub.add_parser("trace", help="one chat's trace as a text waterfall, from span files")
    trace.set_defaults(handler=_trace)
    add_trace_arguments(trace)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    use_fast_event_loop()
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
