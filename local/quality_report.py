"""`mlops quality report`: one self-contained HTML page on a tenant's live model, its quality
measured on the labels its clients sent and estimated from the model's confidence, as the
quality timer computes them (``ml.quality``): the metrics over the window, their course hour
by hour, and a calibration plot (how often the model is right at each confidence), which is
what decides how far the estimate can be trusted. Plots are inline SVG.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from local.operations import PlatformClient
from ml.quality import METRICS, LabelledWindow, Quality, estimate, measure

WIDTH, HEIGHT = 520, 200
CALIBRATION_BINS = 10
COLOURS = {"measured": "#4c78a8", "estimated": "#f58518", "ideal": "#999999"}


@dataclass(frozen=True)
class Hour:
    start: datetime
    measured: Quality | None
    estimated: Quality | None


@dataclass(frozen=True)
class QualityReport:
    tenant: str
    model: str
    deployment: str
    hours: float
    window: LabelledWindow
    measured: Quality | None
    estimated: Quality | None
    course: list[Hour]


def build(client: PlatformClient, tenant: str, *, hours: float | None = None) -> QualityReport:
    client.tenant(tenant)  # a clear error for a tenant the stack does not have
    span = hours or client.spec.quality.window_hours
    adapter = client.adapter
    deployment = adapter.endpoint(tenant).live
    name, version = adapter.live_model(tenant, deployment)
    now = datetime.now(UTC)
    since = now - timedelta(hours=span)
    window = adapter.labelled(tenant, deployment, since=since, until=now)
    course = []
    start = since.replace(minute=0, second=0, microsecond=0)
    while start < now:
        hour = adapter.labelled(tenant, deployment, since=start, until=start + timedelta(hours=1))
        measured, estimated = _qualities(hour)
        course.append(Hour(start, measured, estimated))
        start += timedelta(hours=1)
    measured, estimated = _qualities(window)
    return QualityReport(
        tenant, f"{name}/{version}", deployment, span, window, measured, estimated, course
    )


def write_report(
    client: PlatformClient, tenant: str, out: Path, *, hours: float | None = None
) -> QualityReport:
    report = build(client, tenant, hours=hours)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(report))
    return report


def _qualities(window: LabelledWindow) -> tuple[Quality | None, Quality | None]:
    if not window.classes:
        return None, None
    estimated = estimate(np.array(window.scored), window.classes) if window.scored else None
    measured = (
        measure(window.labels, window.predictions, np.array(window.probabilities), window.classes)
        if window.labels
        else None
    )
    return measured, estimated


def render(report: QualityReport) -> str:
    window = report.window
    summary = (
        f"{len(window.labels)} labelled of {window.rows} scored rows in the last {report.hours:g} h"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Quality of {html.escape(report.tenant)}: {html.escape(report.model)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
figure {{ margin: 1rem 0; border: 1px solid #eee; padding: 0.5rem; display: inline-block; }}
</style></head><body>
<h1>Quality of {html.escape(report.tenant)}</h1>
<p>Model <b>{html.escape(report.model)}</b> on deployment <b>{html.escape(report.deployment)}</b>,
generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. {summary}.</p>
<p><span style="color:{COLOURS["measured"]}">&#9632; measured on labels</span> &nbsp;
<span style="color:{COLOURS["estimated"]}">&#9632; estimated from confidence</span></p>
{_table(report.measured, report.estimated)}
<figure><figcaption>accuracy, hour by hour</figcaption>{course_svg(report.course)}</figure>
<figure><figcaption>calibration: share right at each confidence (labelled rows)</figcaption>
{calibration_svg(window)}</figure>
</body></html>
"""


def _table(measured: Quality | None, estimated: Quality | None) -> str:
    def shown(quality: Quality | None, metric: str) -> str:
        value = quality.metric(metric) if quality else None
        return "-" if value is None or math.isnan(value) else f"{value:.3f}"

    rows = "".join(
        f"<tr><td>{metric}</td><td>{shown(measured, metric)}</td>"
        f"<td>{shown(estimated, metric)}</td></tr>"
        for metric in METRICS
    )
    return f"<table><tr><th>metric</th><th>measured</th><th>estimated</th></tr>{rows}</table>"


def course_svg(course: list[Hour]) -> str:
    """Accuracy per hour: measured (where labelled) and estimated, on a 0-1 scale."""
    if not course:
        return f'<svg width="{WIDTH}" height="{HEIGHT}"><text x="10" y="20">no data</text></svg>'
    step = (WIDTH - 40) / max(1, len(course) - 1)
    lines = []
    for kind in ("measured", "estimated"):
        points = [
            (30 + i * step, _y(value))
            for i, hour in enumerate(course)
            if (quality := getattr(hour, kind)) is not None
            and (value := quality.accuracy) is not None
            and not math.isnan(value)
        ]
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            lines.append(
                f'<polyline points="{path}" fill="none" stroke="{COLOURS[kind]}" stroke-width="2"/>'
            )
            lines += [
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLOURS[kind]}"/>'
                for x, y in points
            ]
    axis = (
        f'<text x="2" y="{_y(1.0) + 4:.0f}" font-size="10">1</text>'
        f'<text x="2" y="{_y(0.0) + 4:.0f}" font-size="10">0</text>'
        f'<text x="30" y="{HEIGHT - 2}" font-size="10">{course[0].start:%d %b %H:%M}</text>'
        f'<text x="{WIDTH - 10}" y="{HEIGHT - 2}" font-size="10" text-anchor="end">'
        f"{course[-1].start:%d %b %H:%M}</text>"
    )
    return f'<svg width="{WIDTH}" height="{HEIGHT}" role="img">{"".join(lines)}{axis}</svg>'


def calibration_svg(window: LabelledWindow) -> str:
    """Per confidence bin (the predicted class's probability), the share of rows right: on
    the diagonal, confidence is what the estimate may take as the chance of being right."""
    if not window.labels or not window.classes:
        return f'<svg width="{WIDTH}" height="{HEIGHT}"><text x="10" y="20">no labels</text></svg>'
    confidence = np.array(window.probabilities).max(axis=1)
    truth = [str(label) for label in window.labels]
    right = np.array([str(p) == t for p, t in zip(window.predictions, truth, strict=True)])
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    which = np.clip(np.digitize(confidence, edges) - 1, 0, CALIBRATION_BINS - 1)
    size = min(WIDTH, HEIGHT) - 30
    marks = [
        f'<line x1="20" y1="{10 + size}" x2="{20 + size}" y2="10" '
        f'stroke="{COLOURS["ideal"]}" stroke-dasharray="4"/>'
    ]
    for index in range(CALIBRATION_BINS):
        chosen = which == index
        if not chosen.any():
            continue
        x = 20 + size * float(confidence[chosen].mean())
        y = 10 + size * (1 - float(right[chosen].mean()))
        radius = 2 + 6 * math.sqrt(chosen.sum() / len(right))
        marks.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{COLOURS["measured"]}"/>'
        )
    return f'<svg width="{size + 40}" height="{size + 20}" role="img">{"".join(marks)}</svg>'


def _y(value: float) -> float:
    return 10 + (HEIGHT - 30) * (1 - value)
