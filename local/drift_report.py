"""`mlops drift report`: one self-contained HTML page on a tenant's live deployment, the window
of collected inference data against the model's training baseline, measured exactly as the
drift timer measures it (:meth:`automation.drift_watch.DriftWatcher.measure`). Per feature
(and the prediction): the metric, its threshold, the verdict and a plot of the reference and
current distributions, drawn as inline SVG so the page needs nothing else to open.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from automation.drift_watch import DriftWatcher, Measurement
from automation.store import MemoryStore
from local.operations import PlatformClient
from ml.drift import DriftResult, FeatureDrift

BINS = 24
WIDTH, HEIGHT = 360, 140
COLOURS = {"reference": "#4c78a8", "current": "#f58518"}


def write_report(
    client: PlatformClient, tenant: str, out: Path, *, hours: float | None = None
) -> DriftResult:
    client.tenant(tenant)  # a clear error for a tenant the stack does not have
    watcher = DriftWatcher(
        client.spec, MemoryStore(), client.adapter, client.adapter, lambda: datetime.now(UTC)
    )
    measured = watcher.measure(tenant, hours=hours, keep_current=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(tenant, measured, hours or client.spec.drift.window_hours))
    return measured.result


def render(tenant: str, measured: Measurement, hours: float) -> str:
    result = measured.result
    features = [*result.features, *([result.prediction] if result.prediction else [])]
    sections = [_feature_section(f, measured, measured.columns.index(f.name)) for f in features]
    summary = (
        f"{html.escape(result.verdict.replace('_', ' '))}: {len(result.drifted_features)} of "
        f"{len(result.features)} features drifted ({result.drifted_share:.0%}); "
        f"{result.current_rows} rows in the last {hours:g} h against {result.reference_rows} "
        "reference rows"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Drift of {html.escape(tenant)}: {html.escape(measured.model)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }}
.drifted {{ color: #b00020; font-weight: bold; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure {{ margin: 0; border: 1px solid #eee; padding: 0.5rem; }}
</style></head><body>
<h1>Drift of {html.escape(tenant)}</h1>
<p>Model <b>{html.escape(measured.model)}</b> on deployment
<b>{html.escape(measured.deployment)}</b>, generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>
<p>{summary}</p>
<p><span style="color:{COLOURS["reference"]}">&#9632; reference (training baseline)</span>
&nbsp; <span style="color:{COLOURS["current"]}">&#9632; current (collected)</span></p>
{_table(features)}
<div class="grid">
{"".join(sections)}
</div>
</body></html>
"""


def _table(features: list[FeatureDrift]) -> str:
    rows = []
    for feature in features:
        value = "n/a" if feature.value is None else f"{feature.value:.4f}"
        verdict = '<span class="drifted">drifted</span>' if feature.drifted else "ok"
        rows.append(
            f"<tr><td>{html.escape(feature.name)}</td><td>{feature.kind}</td>"
            f"<td>{html.escape(feature.metric)}</td><td>{value}</td>"
            f"<td>{feature.threshold:g}</td><td>{verdict}</td></tr>"
        )
    header = "<tr><th>feature</th><th>kind</th><th>metric</th><th>value</th>"
    return f"<table>{header}<th>threshold</th><th>verdict</th></tr>{''.join(rows)}</table>"


def _feature_section(feature: FeatureDrift, measured: Measurement, column: int) -> str:
    reference = measured.reference[:, column].astype(float)
    current = measured.current[:, column].astype(float) if len(measured.current) else np.empty(0)
    title = html.escape(feature.name) + (" (drifted)" if feature.drifted else "")
    return (
        f"<figure><figcaption>{title}</figcaption>"
        f"{histogram_svg(reference, current, categorical=feature.kind != 'numerical')}"
        "</figure>"
    )


def histogram_svg(reference: np.ndarray, current: np.ndarray, *, categorical: bool) -> str:
    """Both distributions as shares per bin (or per category), side by side per bin."""
    values = np.concatenate([reference, current])
    values = values[np.isfinite(values)]
    if not len(values):
        return f'<svg width="{WIDTH}" height="{HEIGHT}"><text x="10" y="20">no data</text></svg>'
    if categorical:
        categories = np.unique(values)
        edges = np.append(categories - 0.5, categories[-1] + 0.5)
    else:
        low, high = float(values.min()), float(values.max())
        edges = np.linspace(low, high if high > low else low + 1.0, BINS + 1)
    shares = {
        name: _shares(data[np.isfinite(data)], edges)
        for name, data in (("reference", reference), ("current", current))
    }
    tallest = max(*(s.max(initial=0.0) for s in shares.values()), 1e-12)
    bins = len(edges) - 1
    slot = (WIDTH - 20) / bins
    bars = []
    for index in range(bins):
        for offset, name in enumerate(("reference", "current")):
            height = (HEIGHT - 30) * shares[name][index] / tallest
            x = 10 + index * slot + offset * slot / 2
            bars.append(
                f'<rect x="{x:.1f}" y="{HEIGHT - 20 - height:.1f}" width="{slot / 2:.1f}" '
                f'height="{height:.1f}" fill="{COLOURS[name]}"/>'
            )
    axis = (
        f'<text x="10" y="{HEIGHT - 5}" font-size="10">{edges[0]:.3g}</text>'
        f'<text x="{WIDTH - 10}" y="{HEIGHT - 5}" font-size="10" text-anchor="end">'
        f"{edges[-1]:.3g}</text>"
    )
    return f'<svg width="{WIDTH}" height="{HEIGHT}" role="img">{"".join(bars)}{axis}</svg>'


def _shares(data: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(data, bins=edges)
    total = counts.sum()
    return counts / total if total else counts.astype(float)
