"""The browser pages: the candidate page at ``/``, the hiring dashboard, report and
review queue under ``/dashboard``, and their assets under ``/static``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

try:
    # plotly.js as shipped inside the plotly PyPI package: the dashboard's chart
    # library without a CDN or the npm registry.
    import plotly as _plotly

    PLOTLY_JS: Path | None = Path(_plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
except ImportError:  # pragma: no cover - the report then shows its table only
    PLOTLY_JS = None

_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The pages are small and change with each deployment; always revalidate.
    "Cache-Control": "no-cache",
}
_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'{style}; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# Everything the candidate page needs is served from here, so the policy can forbid
# any other origin and inline script and style outright.
_CANDIDATE_HEADERS = {"Content-Security-Policy": _POLICY.format(style=""), **_COMMON_HEADERS}
# plotly.js injects <style> elements for its chart chrome; staff pages allow inline
# style (never inline script) for it.
_STAFF_HEADERS = {"Content-Security-Policy": _POLICY.format(style=" 'unsafe-inline'"), **_COMMON_HEADERS}

router = APIRouter(include_in_schema=False)


def _page(name: str, headers: dict[str, str]) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/")
async def candidate_page() -> FileResponse:
    """The single-page interview for candidates; invite links open it."""
    return _page("index.html", _CANDIDATE_HEADERS)


@router.get("/dashboard")
async def dashboard_page() -> FileResponse:
    """Staff sign-in, the interview list and the form that creates interviews."""
    return _page("dashboard.html", _STAFF_HEADERS)


@router.get("/dashboard/report")
async def report_page() -> FileResponse:
    """One interview's report (``?id=<interview_id>``), printable."""
    return _page("report.html", _STAFF_HEADERS)


@router.get("/dashboard/review")
async def review_page() -> FileResponse:
    """The review queue: answers the scorer is unsure of, graded by staff."""
    return _page("review.html", _STAFF_HEADERS)


@router.get("/vendor/plotly.min.js")
async def plotly_js() -> FileResponse:
    """plotly.js from the installed plotly package; long-cached, as it changes only on upgrade."""
    if PLOTLY_JS is None or not PLOTLY_JS.is_file():
        return FileResponse(STATIC_DIR / "plotly-missing.js", media_type="text/javascript")
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})
