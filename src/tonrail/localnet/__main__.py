"""`python -m tonrail.localnet --state FILE --port 8081 --block-ms 400 [--config FILE]
[--config-from URL]` (as `tonrail localnet`)."""

from __future__ import annotations

import argparse
import json

from tonrail.localnet.config import ConfigError, resolve_config
from tonrail.localnet.faults import Faults
from tonrail.localnet.server import collate_limit, serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tonrail.localnet")
    parser.add_argument("--state", default="var/localnet.sqlite3", help="SQLite state file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--block-ms", type=int, default=400)
    parser.add_argument(
        "--collate-ms",
        type=int,
        default=0,
        help="time a block may take messages, as mainnet's collators (0: no limit)",
    )
    parser.add_argument(
        "--config", default=None, help="blockchain config file (default: bundled mainnet config)"
    )
    parser.add_argument(
        "--config-from",
        default=None,
        metavar="URL",
        help="mirror a toncenter v2 endpoint's config at start (saved to --config if given)",
    )
    parser.add_argument(
        "--faults", default=None, help="faults from the start, as JSON: '{\"http_429_rate\": 0.1}'"
    )
    args = parser.parse_args()
    try:
        collate_limit(args.collate_ms)
    except ValueError as exc:
        parser.error(str(exc))
    faults = Faults()
    if args.faults:
        try:
            faults.update(json.loads(args.faults))
        except ValueError as exc:
            parser.error(f"--faults: {exc}")
    if args.state != ":memory:":
        from pathlib import Path

        Path(args.state).parent.mkdir(parents=True, exist_ok=True)
    try:
        config = resolve_config(args.config, args.config_from)
    except ConfigError as exc:
        parser.error(str(exc))
    serve(
        args.state,
        args.host,
        args.port,
        args.block_ms,
        collate_ms=args.collate_ms,
        config=config,
        faults=faults,
    )


if __name__ == "__main__":
    main()
