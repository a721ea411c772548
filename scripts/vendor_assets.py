"""Put the npm files the package needs at run time into src/tonrail/vendor/ (package data).

htmx and Chart.js for the dashboard, @ton/sandbox's mainnet config for the local network.
They come from npm (package.json / package-lock.json) and are never committed: `make assets`
copies them from node_modules; the image's builder has no Node, so `--download` fetches the
exact tarballs package-lock.json names from the npm registry and checks their integrity.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "src" / "tonrail" / "vendor"
# vendor file name -> (npm package, path inside the package)
FILES = {
    "htmx.min.js": ("htmx.org", "dist/htmx.min.js"),
    "chart.umd.min.js": ("chart.js", "dist/chart.umd.min.js"),
    "ton-sandbox-config.js": ("@ton/sandbox", "dist/config/defaultConfig.js"),
}


def locked() -> dict[str, dict[str, str]]:
    """Version and integrity of each needed package, as package-lock.json pins them."""
    packages = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    names = {package for package, _ in FILES.values()}
    return {name: packages[f"node_modules/{name}"] for name in sorted(names)}


def from_node_modules() -> dict[str, bytes]:
    out = {}
    for name, (package, rel) in FILES.items():
        path = ROOT / "node_modules" / package / rel
        if not path.is_file():
            sys.exit(f"{path} is missing: run `npm ci` (make setup) first")
        out[name] = path.read_bytes()
    return out


def tarball_url(registry: str, package: str, version: str) -> str:
    base = package.rsplit("/", 1)[-1]
    return f"{registry.rstrip('/')}/{package}/-/{base}-{version}.tgz"


def from_registry(registry: str) -> dict[str, bytes]:
    tarballs = {}
    for package, pin in locked().items():
        url = pin.get("resolved") or tarball_url(registry, package, pin["version"])
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https registry)
            data = response.read()
        algorithm, _, expected = pin["integrity"].partition("-")
        digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
        if digest != expected:
            sys.exit(f"{url}: integrity mismatch ({algorithm} {digest} != {expected})")
        tarballs[package] = data
    out = {}
    for name, (package, rel) in FILES.items():
        with tarfile.open(fileobj=io.BytesIO(tarballs[package]), mode="r:gz") as archive:
            member = archive.extractfile(f"package/{rel}")
            if member is None:
                sys.exit(f"{package} has no {rel}")
            out[name] = member.read()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--download", action="store_true", help="fetch from the npm registry")
    parser.add_argument("--registry", default="https://registry.npmjs.org")
    args = parser.parse_args()
    files = from_registry(args.registry) if args.download else from_node_modules()
    shutil.rmtree(TARGET, ignore_errors=True)
    TARGET.mkdir(parents=True)
    for name, data in files.items():
        (TARGET / name).write_bytes(data)
    versions = {package: pin["version"] for package, pin in locked().items()}
    (TARGET / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")
    print(f"vendored {', '.join(sorted(files))} into {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
