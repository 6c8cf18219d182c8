"""Drift statistics: a reference profile fitted once, current data consumed in chunks.

Metrics (Azure ML model monitoring's names and defaults):

=================================  ==============  ===========================================
metric                             features        drift when
=================================  ==============  ===========================================
normalized_wasserstein_distance    numerical       value > threshold (0.1); W / std(reference)
jensen_shannon_distance            both            value > threshold (0.1); base-2, in [0, 1]
population_stability_index         both            value > threshold (0.2); 10 reference deciles
two_sample_kolmogorov_smirnov_test numerical       p-value < threshold (0.05)
pearsons_chi_squared_test          categorical     p-value < threshold (0.05)
=================================  ==============  ===========================================

Two modes:

- ``exact`` keeps the current window's values and computes the Kolmogorov-Smirnov statistic
  and the Wasserstein distance exactly (they match ``scipy.stats.ks_2samp`` and
  ``scipy.stats.wasserstein_distance`` to 1e-9); memory grows with the window.
- ``streaming`` keeps counts on a fine grid of reference quantiles (``grid`` bins, 1000 by
  default) plus the count, sum, minimum and maximum of current values outside the reference's
  range, so a window of any size runs in memory bounded by features x grid. The two
  distribution distances are then bounded, and the bound is reported with each value:

  * KS: the statistic is evaluated at every grid edge, where both empirical CDFs are exact;
    between two edges either CDF moves by at most that bin's mass, so
    ``D_grid <= D <= D_grid + max_bin(max(p_ref, p_cur))`` (about 1/grid plus sampling).
  * Wasserstein: each bin's mass is spread uniformly over the bin for both samples; moving
    mass inside a bin costs at most its width, so ``|W - W_grid| <= sum_bins (p_ref +
    p_cur) * width`` (tails: the span from the reference's edge to the current extreme),
    divided by the reference's standard deviation for the normalized value.

  Jensen-Shannon, PSI and chi-squared are defined on bins, so both modes give the same values.

Categorical features are integer codes (or strings mapped to codes by the caller); codes the
reference never saw are counted in one "unseen" bucket.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats

Mode = Literal["exact", "streaming"]
Verdict = Literal["drift", "no_drift", "insufficient_data"]
NUMERICAL = "numerical"
CATEGORICAL = "categorical"
WASSERSTEIN = "normalized_wasserstein_distance"
JENSEN_SHANNON = "jensen_shannon_distance"
PSI = "population_stability_index"
KS = "two_sample_kolmogorov_smirnov_test"
CHI_SQUARED = "pearsons_chi_squared_test"
P_VALUE_METRICS = frozenset({KS, CHI_SQUARED})
DEFAULT_THRESHOLDS = {WASSERSTEIN: 0.1, JENSEN_SHANNON: 0.1, PSI: 0.2, KS: 0.05, CHI_SQUARED: 0.05}
JS_BINS = 20
PSI_BINS = 10
_EPSILON = 1e-4  # smoothing for empty bins in PSI (the usual choice)


# --- the reference ------------------------------------------------------------------------


@dataclass
class _NumericReference:
    edges: np.ndarray  # grid edges: reference quantiles, strictly increasing
    counts: np.ndarray  # reference count per grid bin
    values: np.ndarray  # sorted reference values (exact mode, and the bound's reference side)
    std: float

    @property
    def rows(self) -> int:
        return len(self.values)


@dataclass
class _CategoricalReference:
    codes: np.ndarray  # sorted known codes
    counts: np.ndarray  # count per code


@dataclass
class ReferenceProfile:
    """What drift is measured against: fitted once from the training baseline."""

    features: list[str]
    kinds: list[str]
    numeric: dict[str, _NumericReference] = field(default_factory=dict)
    categorical: dict[str, _CategoricalReference] = field(default_factory=dict)
    rows: int = 0

    @classmethod
    def fit(
        cls,
        reference: np.ndarray,
        features: Sequence[str],
        categorical: Iterable[str] = (),
        grid: int = 1000,
    ) -> ReferenceProfile:
        reference = np.asarray(reference)
        if reference.ndim != 2 or reference.shape[1] != len(features):
            raise ValueError(
                f"reference must be 2-D with {len(features)} columns, got {reference.shape}"
            )
        if len(reference) < 2:
            raise ValueError("a reference needs at least 2 rows")
        categorical = set(categorical)
        unknown = categorical - set(features)
        if unknown:
            raise ValueError(f"categorical feature(s) not in features: {sorted(unknown)}")
        kinds = [CATEGORICAL if f in categorical else NUMERICAL for f in features]
        profile = cls(list(features), kinds, rows=len(reference))
        for index, (name, kind) in enumerate(zip(features, kinds, strict=True)):
            column = reference[:, index]
            if kind == CATEGORICAL:
                codes, counts = np.unique(column.astype(np.int64), return_counts=True)
                profile.categorical[name] = _CategoricalReference(codes, counts)
            else:
                profile.numeric[name] = _fit_numeric(column.astype(np.float64), grid)
        return profile


def _fit_numeric(column: np.ndarray, grid: int) -> _NumericReference:
    if not np.all(np.isfinite(column)):
        raise ValueError("reference values must be finite")
    values = np.sort(column)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, grid + 1)))
    if len(edges) < 2:  # a constant feature: one bin around its value
        edges = np.array([values[0] - 0.5, values[0] + 0.5])
    counts = _bin_counts(values, edges)[1:-1]
    return _NumericReference(edges, counts, values, float(np.std(values)))


def _bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per grid bin with an underflow (index 0) and an overflow (last) bucket; the
    last grid bin is closed on the right so the reference maximum falls inside."""
    index = np.searchsorted(edges, values, side="right")
    index[values == edges[-1]] = len(edges) - 1
    return np.bincount(index, minlength=len(edges) + 1)


# --- accumulating current data ----------------------------------------------------------------


@dataclass
class _NumericWindow:
    counts: np.ndarray  # underflow, grid bins..., overflow
    low_sum: float = 0.0
    high_sum: float = 0.0
    low_min: float = np.inf
    high_max: float = -np.inf
    values: list[np.ndarray] = field(default_factory=list)  # exact mode only


class DriftMonitor:
    """Consumes current data in chunks; :meth:`result` compares it with the reference."""

    def __init__(self, profile: ReferenceProfile, mode: Mode = "streaming") -> None:
        self.profile = profile
        self.mode = mode
        self.rows = 0
        self._numeric = {
            name: _NumericWindow(np.zeros(len(ref.edges) + 1, dtype=np.int64))
            for name, ref in profile.numeric.items()
        }
        self._categorical = {
            name: np.zeros(len(ref.codes) + 1, dtype=np.int64)  # last: unseen codes
            for name, ref in profile.categorical.items()
        }

    def update(self, chunk: np.ndarray) -> None:
        chunk = np.asarray(chunk)
        if chunk.ndim != 2 or chunk.shape[1] != len(self.profile.features):
            raise ValueError(
                f"chunk must be 2-D with {len(self.profile.features)} columns, got {chunk.shape}"
            )
        for index, name in enumerate(self.profile.features):
            column = chunk[:, index]
            if name in self._numeric:
                self._update_numeric(name, column.astype(np.float64, copy=False))
            else:
                self._update_categorical(name, column.astype(np.int64))
        self.rows += len(chunk)

    def _update_numeric(self, name: str, column: np.ndarray) -> None:
        if not np.all(np.isfinite(column)):
            raise ValueError(f"feature '{name}': current values must be finite")
        ref = self.profile.numeric[name]
        window = self._numeric[name]
        window.counts += _bin_counts(column, ref.edges)
        low = column[column < ref.edges[0]]
        high = column[column > ref.edges[-1]]
        if len(low):
            window.low_sum += float(low.sum())
            window.low_min = min(window.low_min, float(low.min()))
        if len(high):
            window.high_sum += float(high.sum())
            window.high_max = max(window.high_max, float(high.max()))
        if self.mode == "exact":
            window.values.append(column.copy())

    def _update_categorical(self, name: str, column: np.ndarray) -> None:
        ref = self.profile.categorical[name]
        position = np.searchsorted(ref.codes, column)
        position = np.minimum(position, len(ref.codes) - 1)
        known = ref.codes[position] == column
        counts = np.bincount(position[known], minlength=len(ref.codes))
        self._categorical[name][:-1] += counts
        self._categorical[name][-1] += int((~known).sum())

    # --- results --------------------------------------------------------------------------

    def feature_metrics(self) -> dict[str, dict[str, Any]]:
        """Every metric of every feature, with error bounds in streaming mode."""
        out: dict[str, dict[str, Any]] = {}
        for name in self.profile.features:
            if name in self._numeric:
                out[name] = self._numeric_metrics(name)
            else:
                out[name] = self._categorical_metrics(name)
        return out

    def _numeric_metrics(self, name: str) -> dict[str, Any]:
        ref = self.profile.numeric[name]
        window = self._numeric[name]
        current_rows = int(window.counts.sum())
        if current_rows == 0:
            return {}
        ref_full = np.concatenate([[0], ref.counts, [0]])
        metrics: dict[str, Any] = {
            JENSEN_SHANNON: _js_distance(*_coarsen(ref_full, window.counts, JS_BINS)),
            PSI: _psi(*_coarsen(ref_full, window.counts, PSI_BINS)),
        }
        scale = ref.std if ref.std > 0 else 1.0
        if self.mode == "exact":
            current = np.concatenate(window.values)
            statistic = ks_statistic(ref.values, current)
            metrics[WASSERSTEIN] = wasserstein(ref.values, current) / scale
            bounds = {KS: 0.0, WASSERSTEIN: 0.0}
        else:
            statistic, ks_bound = _grid_ks(ref, window)
            distance, w_bound = _grid_wasserstein(ref, window)
            metrics[WASSERSTEIN] = distance / scale
            bounds = {KS: ks_bound, WASSERSTEIN: w_bound / scale}
        metrics["ks_statistic"] = statistic
        metrics[KS] = ks_p_value(statistic, ref.rows, current_rows)
        metrics["error_bounds"] = bounds
        return metrics

    def _categorical_metrics(self, name: str) -> dict[str, Any]:
        ref = self.profile.categorical[name]
        current = self._categorical[name]
        if current.sum() == 0:
            return {}
        reference = np.concatenate([ref.counts, [0]])
        table = np.vstack([reference, current])
        table = table[:, table.sum(axis=0) > 0]
        p_value = 1.0 if table.shape[1] < 2 else float(stats.chi2_contingency(table)[1])
        return {
            CHI_SQUARED: p_value,
            JENSEN_SHANNON: _js_distance(reference, current),
            PSI: _psi(reference, current),
            "error_bounds": {},
        }

    def result(
        self,
        thresholds: Mapping[str, float] | None = None,
        numerical_metric: str = WASSERSTEIN,
        categorical_metric: str = JENSEN_SHANNON,
        *,
        min_samples: int = 1,
        drifted_feature_fraction: float = 0.0,
        prediction_feature: str | None = None,
    ) -> DriftResult:
        limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
        computed = self.feature_metrics()
        features = []
        for name, kind in zip(self.profile.features, self.profile.kinds, strict=True):
            metric = numerical_metric if kind == NUMERICAL else categorical_metric
            values = computed[name]
            value = values.get(metric)
            is_drifted = value is not None and _drifted(metric, float(value), limits[metric])
            features.append(
                FeatureDrift(name, kind, metric, value, limits[metric], is_drifted, values)
            )
        data = [f for f in features if f.name != prediction_feature]
        prediction = next((f for f in features if f.name == prediction_feature), None)
        drifted = [f.name for f in data if f.drifted]
        share = len(drifted) / len(data) if data else 0.0
        verdict: Verdict
        if self.rows < min_samples:
            verdict = "insufficient_data"
        elif (share > drifted_feature_fraction if drifted_feature_fraction else drifted) or (
            prediction is not None and prediction.drifted
        ):
            verdict = "drift"
        else:
            verdict = "no_drift"
        return DriftResult(verdict, data, prediction, drifted, share, self.profile.rows, self.rows)


def _drifted(metric: str, value: float, threshold: float) -> bool:
    return value < threshold if metric in P_VALUE_METRICS else value > threshold


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: str
    metric: str
    value: float | None
    threshold: float
    drifted: bool
    metrics: Mapping[str, Any]


@dataclass(frozen=True)
class DriftResult:
    verdict: Verdict
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    drifted_features: list[str]
    drifted_share: float
    reference_rows: int
    current_rows: int

    def to_dict(self) -> dict[str, Any]:
        def feature(f: FeatureDrift) -> dict[str, Any]:
            return {
                "name": f.name,
                "kind": f.kind,
                "metric": f.metric,
                "value": f.value,
                "threshold": f.threshold,
                "drifted": f.drifted,
                "metrics": dict(f.metrics),
            }

        return {
            "verdict": self.verdict,
            "drifted_features": self.drifted_features,
            "drifted_share": self.drifted_share,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "features": [feature(f) for f in self.features],
            "prediction": feature(self.prediction) if self.prediction else None,
        }


# --- exact statistics -------------------------------------------------------------------------


def ks_statistic(reference_sorted: np.ndarray, current: np.ndarray) -> float:
    """Two-sample KS statistic: the largest gap between the two empirical CDFs."""
    current = np.sort(current)
    both = np.concatenate([reference_sorted, current])
    cdf_ref = np.searchsorted(reference_sorted, both, side="right") / len(reference_sorted)
    cdf_cur = np.searchsorted(current, both, side="right") / len(current)
    return float(np.max(np.abs(cdf_ref - cdf_cur)))


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """Asymptotic two-sided p-value, as ``ks_2samp(method="asymp")`` computes it."""
    effective = round(n * m / (n + m))
    return float(np.clip(stats.kstwo.sf(statistic, effective), 0.0, 1.0))


def wasserstein(reference_sorted: np.ndarray, current: np.ndarray) -> float:
    """First Wasserstein distance: the area between the two empirical CDFs."""
    current = np.sort(current)
    points = np.sort(np.concatenate([reference_sorted, current]))
    widths = np.diff(points)
    cdf_ref = np.searchsorted(reference_sorted, points[:-1], side="right") / len(reference_sorted)
    cdf_cur = np.searchsorted(current, points[:-1], side="right") / len(current)
    return float(np.sum(np.abs(cdf_ref - cdf_cur) * widths))


# --- grid statistics (streaming) ---------------------------------------------------------------


def _grid_ks(ref: _NumericReference, window: _NumericWindow) -> tuple[float, float]:
    ref_mass = np.concatenate([[0], ref.counts, [0]]) / ref.rows
    cur_mass = window.counts / window.counts.sum()
    # CDFs at each grid edge (the underflow bucket ends at the first edge).
    gap = np.abs(np.cumsum(ref_mass)[:-1] - np.cumsum(cur_mass)[:-1])
    bound = float(np.max(np.maximum(ref_mass, cur_mass)))
    return float(gap.max()), bound


def _grid_wasserstein(ref: _NumericReference, window: _NumericWindow) -> tuple[float, float]:
    """Area between the two piecewise-linear CDFs on the grid, tails included, and the
    bound on its error (see the module docstring)."""
    total = window.counts.sum()
    low_n, high_n = int(window.counts[0]), int(window.counts[-1])
    edges = ref.edges
    points = [edges]
    if low_n:
        points.insert(0, np.array([window.low_min]))
    if high_n:
        points.append(np.array([window.high_max]))
    x = np.concatenate(points)
    ref_cdf = np.concatenate([[0.0], np.cumsum(ref.counts) / ref.rows])
    cur_inner = np.cumsum(window.counts[1:-1]) / total
    cur_cdf = np.concatenate([[low_n / total], low_n / total + cur_inner])
    if low_n:
        ref_cdf = np.concatenate([[0.0], ref_cdf])
        cur_cdf = np.concatenate([[0.0], cur_cdf])
    if high_n:
        ref_cdf = np.concatenate([ref_cdf, [1.0]])
        cur_cdf = np.concatenate([cur_cdf, [1.0]])
    distance = _area_between_linear(x, ref_cdf - cur_cdf)
    widths = np.diff(x)
    ref_mass = np.diff(ref_cdf)
    cur_mass = np.diff(cur_cdf)
    bound = float(np.sum((ref_mass + cur_mass) * widths))
    return distance, bound


def _area_between_linear(x: np.ndarray, diff: np.ndarray) -> float:
    """Integral of |d(x)| for d linear between the points (exact when d changes sign)."""
    a, b = diff[:-1], diff[1:]
    width = np.diff(x)
    same_sign = a * b >= 0
    area = np.where(
        same_sign,
        np.abs(a + b) / 2 * width,
        (a * a + b * b) / (2 * (np.abs(a) + np.abs(b)) + 1e-300) * width,
    )
    return float(area.sum())


# --- binned distances -----------------------------------------------------------------------


def _coarsen(
    reference: np.ndarray, current: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge the fine grid into ``bins`` equal-mass reference bins (tails kept apart)."""
    inner_ref, inner_cur = reference[1:-1], current[1:-1]
    cumulative = np.cumsum(inner_ref) / max(inner_ref.sum(), 1)
    group = np.minimum((cumulative * bins - 1e-9).astype(np.int64), bins - 1)
    group = np.maximum(group, 0)
    ref = np.bincount(group, weights=inner_ref, minlength=bins)
    cur = np.bincount(group, weights=inner_cur, minlength=bins)
    return (
        np.concatenate([[reference[0]], ref, [reference[-1]]]),
        np.concatenate([[current[0]], cur, [current[-1]]]),
    )


def _js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    p = reference / reference.sum()
    q = current / current.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(np.sqrt(max((kl_p + kl_q) / 2, 0.0)))


def _psi(reference: np.ndarray, current: np.ndarray) -> float:
    p = np.maximum(reference / reference.sum(), _EPSILON)
    q = np.maximum(current / current.sum(), _EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))
