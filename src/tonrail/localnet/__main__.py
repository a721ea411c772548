"""`python -m tonrail.localnet --state FILE --port 8081 --block-ms 400` (as `tonrail localnet`)."""

from __future__ import annotations

import argparse

from tonrail.localnet.server import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tonrail.localnet")
    parser.add_argument("--state", default="var/localnet.sqlite3", help="SQLite state file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--block-ms", type=int, default=400)
    parser.add_argument("--config-js", default=None, help="@ton/sandbox defaultConfig.js")
    args = parser.parse_args()
    if args.state != ":memory:":
        from pathlib import Path

        Path(args.state).parent.mkdir(parents=True, exist_ok=True)
    serve(args.state, args.host, args.port, args.block_ms, config_path=args.config_js)


if __name__ == "__main__":
    main()
