"""Put the npm files the package needs at run time into src/tonrail/vendor/ (package data).

htmx and Chart.js for the dashboard, @ton/sandbox's mainnet config for the local network, and
the checkout page's wallet script: src/tonrail/paypage/wallet/entry.js bundled by esbuild with
@tonconnect/ui, @ton/core and buffer (pay-wallet.js), and the dashboard's treasury approve
script (src/tonrail/dashboard/wallet/approve.js -> treasury-wallet.js). They come from npm
(package.json / package-lock.json) and are never committed: `make assets` copies and bundles
them from node_modules; the image's builder has no Node, so `--download` fetches the exact tarballs
package-lock.json names from the npm registry (the bundle's packages and esbuild's own binary
for this machine among them), checks their integrity and runs the same esbuild command.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
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
# vendor file name -> its entry module, bundled for browsers by esbuild
WALLET = ROOT / "src" / "tonrail" / "paypage" / "wallet"
BUNDLES = {
    "pay-wallet.js": WALLET / "entry.js",
    # the dashboard's Approvals page: approve treasury orders from the approver's wallet
    "treasury-wallet.js": ROOT / "src" / "tonrail" / "dashboard" / "wallet" / "approve.js",
}
BUNDLE_ROOTS = ("@tonconnect/ui", "@ton/core", "buffer")  # what the entries import
ESBUILD_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}


def esbuild_package() -> str:
    arch = ESBUILD_ARCH.get(platform.machine().lower())
    if arch is None:
        sys.exit(f"no esbuild binary for {platform.machine()}")
    return f"node_modules/@esbuild/linux-{arch}"


def bundle(esbuild: Path, node_modules: Path) -> dict[str, bytes]:
    """Each entry with everything it imports, as one minified browser script."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, entry in BUNDLES.items():
            target = Path(tmp) / name
            subprocess.run(  # noqa: S603 (our own arguments)
                [
                    str(esbuild),
                    str(entry),
                    "--bundle",
                    "--minify",
                    "--format=iife",
                    "--platform=browser",
                    "--target=es2020",
                    "--legal-comments=eof",
                    "--log-level=warning",
                    f"--inject:{WALLET / 'buffer-shim.js'}",
                    f"--outfile={target}",
                ],
                check=True,
                env={**os.environ, "NODE_PATH": str(node_modules)},
            )
            out[name] = target.read_bytes()
    return out


def lock_closure(packages: dict[str, dict[str, str]], roots: tuple[str, ...]) -> set[str]:
    """The lock paths (node_modules/...) of `roots` and everything they depend on, found as
    Node finds them: nested under the dependent first, then in each parent folder."""

    def find(name: str, below: str) -> str | None:
        base = below
        while True:
            path = f"{base}/node_modules/{name}" if base else f"node_modules/{name}"
            if path in packages:
                return path
            if not base:
                return None
            base = base.rsplit("/node_modules/", 1)[0] if "/node_modules/" in base else ""

    todo = [p for p in (find(r, "") for r in roots) if p is not None]
    seen: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        pin = packages[path]
        deps = {**pin.get("dependencies", {}), **pin.get("peerDependencies", {})}  # type: ignore[dict-item]
        todo.extend(p for p in (find(d, path) for d in deps) if p is not None)
    return seen


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
    esbuild = ROOT / esbuild_package() / "bin" / "esbuild"
    if not esbuild.is_file():
        sys.exit(f"{esbuild} is missing: run `npm ci` (make setup) first")
    return out | bundle(esbuild, ROOT / "node_modules")


def tarball_url(registry: str, package: str, version: str) -> str:
    base = package.rsplit("/", 1)[-1]
    return f"{registry.rstrip('/')}/{package}/-/{base}-{version}.tgz"


def fetch(registry: str, package: str, pin: dict[str, str]) -> bytes:
    """The package's tarball as package-lock.json pins it, integrity checked."""
    url = pin.get("resolved") or tarball_url(registry, package, pin["version"])
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https registry)
        data: bytes = response.read()
    algorithm, _, expected = pin["integrity"].partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if digest != expected:
        sys.exit(f"{url}: integrity mismatch ({algorithm} {digest} != {expected})")
    return data


def bundle_from_registry(registry: str) -> dict[str, bytes]:
    """The bundles, made from the lock's tarballs laid out as `npm ci` would lay them out."""
    packages = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    needed = lock_closure(packages, BUNDLE_ROOTS) | {esbuild_package()}
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(needed):
            data = fetch(registry, path.rsplit("node_modules/", 1)[1], packages[path])
            target = Path(tmp) / path
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                # Regular files only, under `target` (the image's Python may predate
                # extraction filters): no links, no absolute or parent paths.
                for member in archive.getmembers():
                    name = member.name.split("/", 1)[1] if "/" in member.name else ""
                    parts = Path(name).parts
                    if not member.isfile() or not parts or ".." in parts or name.startswith("/"):
                        continue
                    content = archive.extractfile(member)
                    assert content is not None
                    (target / name).parent.mkdir(parents=True, exist_ok=True)
                    (target / name).write_bytes(content.read())
        esbuild = Path(tmp) / esbuild_package() / "bin" / "esbuild"
        esbuild.chmod(0o755)
        return bundle(esbuild, Path(tmp) / "node_modules")


def from_registry(registry: str) -> dict[str, bytes]:
    tarballs = {package: fetch(registry, package, pin) for package, pin in locked().items()}
    out = {}
    for name, (package, rel) in FILES.items():
        with tarfile.open(fileobj=io.BytesIO(tarballs[package]), mode="r:gz") as archive:
            member = archive.extractfile(f"package/{rel}")
            if member is None:
                sys.exit(f"{package} has no {rel}")
            out[name] = member.read()
    return out | bundle_from_registry(registry)


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
