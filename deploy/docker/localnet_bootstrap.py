"""Give a containerised stack on the local network a funded hot wallet, as `tonrail run` does.

Runs once in the tonrail image, after `tonrail migrate`, with the app's environment
(DATABASE_URL, TON_MASTER_KEY_FILE on a volume the workers mount, TON_KEY_PASSPHRASE):
reads the local network's genesis, seals the genesis hot wallet's key into the key file with
`tonrail keys init-wallet --import`, and books the USDT minted at genesis as the opening
balance (`tonrail deposits opening-balance`), so the books reconcile with the chain. A key
file that exists already is left alone (and nothing is booked twice). Prints, as KEY=VALUE
lines, what the services and a payer need: the USDT master, the hot wallet's address, the
genesis customer wallet (its key pays invoices in tests, as tonrail/demo.py does).

    python localnet_bootstrap.py --localnet http://127.0.0.1:8081
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from pytoniq_core import Address


def _get(url: str, wait_seconds: float) -> Any:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http only)
                return json.load(response)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _wallet(genesis: dict[str, Any], name: str) -> dict[str, Any]:
    return next(w for w in genesis["wallets"] if w["name"] == name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--localnet", required=True, help="the local network's base URL")
    parser.add_argument("--wait", type=float, default=60, help="seconds to wait for it")
    args = parser.parse_args()
    base = args.localnet.rstrip("/")
    _get(f"{base}/localnet/status", args.wait)
    genesis = _get(f"{base}/localnet/genesis", args.wait)
    hot, customer = _wallet(genesis, "hot"), _wallet(genesis, "customer")

    tonrail = str(Path(sys.executable).with_name("tonrail"))  # the venv's command
    key_file = Path(os.environ.get("TON_MASTER_KEY_FILE", "/data/hot_wallet.key"))
    if not key_file.exists():
        subprocess.run(  # noqa: S603 (our own command, fixed arguments)
            [tonrail, "keys", "init-wallet", "--import", "--file", str(key_file)],
            input=hot["private_key"] + "\n", text=True, check=True, stdout=sys.stderr,
        )  # fmt: skip
        usdt = int(hot["funded_usdt"])
        subprocess.run(  # noqa: S603
            [tonrail, "deposits", "opening-balance", "--asset", "USDT",
             "--amount", f"{usdt // 10**6}.{usdt % 10**6:06d}",
             "--note", "USDT minted at the local network's genesis", "--actor", "system:stack"],
            check=True, stdout=sys.stderr,
        )  # fmt: skip
    hot_address = Address(hot["address"]).to_str(is_user_friendly=True, is_bounceable=True)  # type: ignore[no-untyped-call]
    print(f"USDT_JETTON_MASTER={genesis['usdt']['master_friendly']}")
    print(f"PAYMENT_PROCESSOR_ADDRESS={hot_address}")
    print(f"PAYER_ADDRESS={customer['address_friendly']}")
    print(f"PAYER_PRIVATE_KEY={customer['private_key']}")


if __name__ == "__main__":
    main()
