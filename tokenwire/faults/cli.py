"""``tokenwire faults``: run the fault scenarios on a local 3-broker cluster and report.

The cluster is provisioned like ``tokenwire services up`` (same cached jars) with its own ports
and state dir, so it runs beside the development broker; it is left running for the next run
unless ``--down``. Exit code 0 when every run was exact and ``replay verify`` passed, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from tokenwire.faults.chats import ChatPlan
from tokenwire.faults.report import as_json, markdown
from tokenwire.faults.scenarios import SCENARIOS, ScenarioResult, run_scenario
from tokenwire.settings import Settings

FAULTS_KAFKA_PORT = 19292
NODES = 3


def local_cluster_settings(base: Settings) -> Settings:
    """Three nodes on 19292/19294/19296 (controllers one port above), beside the dev broker."""
    port = FAULTS_KAFKA_PORT
    return base.model_copy(update={
        "kafka_nodes": NODES,
        "kafka_port": port,
        "kafka_controller_port": port + 1,
        "kafka_state_dir": base.state_dir / "kafka-faults",
        "kafka_bootstrap": ",".join(f"127.0.0.1:{port + 2 * i}" for i in range(NODES)),
    })  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario", action="append", choices=sorted(SCENARIOS),
        help="run only this scenario (repeatable; default: all)",
    )  # fmt: skip
    parser.add_argument("--chats", type=int, default=20, help="concurrent chats (default 20)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario")
    parser.add_argument("--tokens", type=int, default=120, help="tokens per answer")
    parser.add_argument("--tps", type=float, default=40.0, help="simulator tokens per second")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--down", action="store_true", help="stop the cluster afterwards")


def run(args: argparse.Namespace, base: Settings) -> int:
    from tokenwire import services

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    cluster = local_cluster_settings(base)
    services.up(cluster, ["kafka"])
    plan = ChatPlan(tokens=args.tokens, tokens_per_s=args.tps)
    run_dir = base.state_dir / "faults" / time.strftime("%Y%m%dT%H%M%S")
    results: list[ScenarioResult] = []
    try:
        for name in args.scenario or list(SCENARIOS):
            for attempt in range(args.repeat):
                print(f"running {name} ({attempt + 1}/{args.repeat}) ...", file=sys.stderr)
                results.append(asyncio.run(run_scenario(
                    name, cluster, run_dir / f"{name}-{attempt + 1}", chats=args.chats, plan=plan
                )))  # fmt: skip
    finally:
        if args.down:
            services.down(cluster, ["kafka"])
    print(markdown(results, tokens_per_s=args.tps))
    print(f"\nprocess logs: {run_dir}", file=sys.stderr)
    if args.json:
        args.json.write_text(as_json(results))
    return 0 if all(r.ok for r in results) else 1
