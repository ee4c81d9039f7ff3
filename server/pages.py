"""The HTML pages outside the admin's models: `/`, and the operator dashboard (staff, in the admin)
with its chart, drawn here as SVG: no JavaScript, nothing fetched from elsewhere (works offline)."""

from dataclasses import dataclass

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_safe

from server.selectors import HourCounts, dashboard_get

# Drawn bottom to top in each hour's bar.
CHART_STATUSES = ("succeeded", "failed", "pending", "paused")
CHART_WIDTH = 720
CHART_HEIGHT = 160
CHART_LABEL_EVERY = 3  # hours between labels under the bars


@dataclass(frozen=True)
class Segment:
    status: str
    count: int
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    hour: HourCounts
    x: float
    label: str
    segments: list[Segment]


@dataclass(frozen=True)
class Chart:
    """Deliveries per hour by status as stacked bars; heights in SVG units of CHART_HEIGHT."""

    width: int
    height: int
    slot: float
    bar_width: float
    peak: int
    bars: list[Bar]


def deliveries_chart(*, hours: list[HourCounts]) -> Chart:
    """The bars of `hours`, scaled so that the busiest hour fills the height."""
    peak = max((hour.total for hour in hours), default=0)
    scale = CHART_HEIGHT / peak if peak else 0
    slot = CHART_WIDTH / len(hours) if hours else CHART_WIDTH
    bars = []
    for index, hour in enumerate(hours):
        below, bottom = 0, float(CHART_HEIGHT)
        segments = []
        for status in CHART_STATUSES:
            count = getattr(hour, status)
            if count:
                # From the running total, so that rounding never leaves a gap between segments.
                below += count
                top = round(CHART_HEIGHT - below * scale, 1)
                segments.append(Segment(status=status, count=count, y=top, height=round(bottom - top, 1)))
                bottom = top
        label = f"{hour.start:%H}:00" if index % CHART_LABEL_EVERY == 0 else ""
        bars.append(Bar(hour=hour, x=round(index * slot, 1), label=label, segments=segments))
    return Chart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        slot=slot,
        bar_width=round(slot * 0.75, 1),
        peak=peak,
        bars=bars,
    )


@require_safe
def dashboard(request: HttpRequest) -> TemplateResponse:
    """GET /admin/dashboard/ (wrapped in admin.site.admin_view: staff only)."""
    figures = dashboard_get(now=timezone.now())
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "dashboard": figures,
        "chart": deliveries_chart(hours=figures.hours),
    }
    return TemplateResponse(request, "server/dashboard.html", context)


# (element id, title, path in the repository and section)
DOCS = (
    ("doc-readme", "README: running it, the API by example", "README.md"),
    ("doc-readme-configuration", "README: configuration", "README.md#configuration"),
    ("doc-api", "The API contract, every error case", "docs/api.md"),
    ("doc-delivery", "The delivery engine", "docs/delivery.md"),
    ("doc-deployment", "Deploying, monitoring, the dashboard", "docs/deployment.md"),
    ("doc-admin", "The operator console (the admin)", "docs/admin.md"),
)


@require_safe
def landing(request: HttpRequest) -> TemplateResponse:
    """GET /: what this is, and links to the admin, the API's docs and the repository's docs (linked
    when DATAPUSHER_DOCS_URL says where the repository is browsed; named otherwise)."""
    base = settings.DATAPUSHER_DOCS_URL
    docs = [
        {"id": id_, "title": title, "path": path, "url": f"{base.rstrip('/')}/{path}" if base else ""}
        for id_, title, path in DOCS
    ]
    return TemplateResponse(request, "server/landing.html", {"docs": docs})
