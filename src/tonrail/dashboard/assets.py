"""The dashboard's static files: its own CSS/JS, and htmx + Chart.js installed by npm.

Only the named files are served (never the whole node_modules folder). htmx and Chart.js come
from DASHBOARD_ASSETS_DIR (a node_modules folder) when it is set, else from the package's
vendor/ folder (package data that `make assets` or the image build fills from npm), else, in
a development checkout, from the repository's node_modules.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from tonrail.settings import REPO_ROOT, Settings

OWN = Path(__file__).parent / "static"
PACKAGED = Path(__file__).resolve().parents[1] / "vendor"
VENDOR = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
}
OWN_FILES = {"app.css": "text/css", "app.js": "text/javascript"}
# Our own scripts bundled with npm packages by `make assets` (scripts/vendor_assets.py).
BUNDLED = {"treasury-wallet.js"}

router = APIRouter()


def vendor_path(settings: Settings, name: str) -> Path:
    """Where the npm file served as `name` is read from (it may not exist)."""
    if settings.dashboard_assets_dir:
        return Path(settings.dashboard_assets_dir) / VENDOR[name]
    packaged = PACKAGED / name
    return packaged if packaged.is_file() else REPO_ROOT / "node_modules" / VENDOR[name]


def missing_vendor_files(settings: Settings) -> list[str]:
    return [VENDOR[name] for name in VENDOR if not vendor_path(settings, name).is_file()]


FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<path d="M2 3h12L8 14z" fill="#0098ea"/></svg>'
)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    """Browsers ask for it on every page; an SVG triangle instead of a 404 in the console."""
    return Response(
        FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/dashboard/static/{name}", include_in_schema=False)
async def static_file(name: str, request: Request) -> Response:
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if name in OWN_FILES:
        return FileResponse(OWN / name, media_type=OWN_FILES[name], headers=headers)
    if name in BUNDLED:
        bundled = PACKAGED / name
        if bundled.is_file():
            return FileResponse(bundled, media_type="text/javascript", headers=headers)
        return Response(
            f"// {name} is not built: run `make assets` (make setup)\n",
            status_code=503,
            media_type="text/javascript",
        )
    if name in VENDOR:
        path = vendor_path(request.app.state.settings, name)
        if path.is_file():
            return FileResponse(path, media_type="text/javascript", headers=headers)
        return Response(
            f"// {VENDOR[name]} is not installed: run `make assets` (make setup)\n",
            status_code=503,
            media_type="text/javascript",
        )
    return Response("not found", status_code=404, media_type="text/plain")
