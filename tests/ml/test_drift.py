"""Drift statistics against scipy on the same data: exact mode to 1e-9, streaming mode
within the error bound it reports, the null case, shifted features, categoricals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ml.drift import (
    CHI_SQUARED,
    JENSEN_SHANNON,
    KS,
    PSI,
    WASSERSTEIN,
    DriftMonitor,
    ReferenceProfile,
)

FEATURES = ["a", "b", "c"]


def _data(seed: int, n: int, shift: tuple[float, float, float] = (0, 0, 0)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = np.column_stack(
        [rng.normal(size=n), rng.exponential(size=n), rng.uniform(-2, 2, size=n)]
    )
    return data + np.array(shift)


def _monitor(
    reference: np.ndarray, current: np.ndarray, mode: str, chunks: int = 5
) -> DriftMonitor:
    monitor = DriftMonitor(ReferenceProfile.fit(reference, FEATURES), mode)  # type: ignore[arg-type]
    for chunk in np.array_split(current, chunks):
        monitor.update(chunk)
    return monitor


def test_exact_mode_matches_scipy_to_1e_9() -> None:
    reference, current = _data(1, 3000), _data(2, 5000, shift=(0.2, 0.0, 0.1))
    metrics = _monitor(reference, current, "exact").feature_metrics()
    for index, name in enumerate(FEATURES):
        ref, cur = reference[:, index], current[:, index]
        expected_w = stats.wasserstein_distance(ref, cur) / np.std(ref)
        assert metrics[name][WASSERSTEIN] == pytest.approx(expected_w, abs=1e-9)
        assert metrics[name]["ks_statistic"] == pytest.approx(
            stats.ks_2samp(ref, cur).statistic, abs=1e-9
        )
        assert metrics[name][KS] == pytest.approx(
            stats.ks_2samp(ref, cur, method="asymp").pvalue, abs=1e-9
        )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    shift=st.floats(-1.5, 1.5),
    scale=st.floats(0.3, 3.0),
    chunks=st.integers(1, 9),
)
def test_streaming_mode_stays_within_its_reported_bound(
    seed: int, shift: float, scale: float, chunks: int
) -> None:
    reference = _data(seed, 4000)
    current = _data(seed + 1, 6000) * scale + shift
    streaming = _monitor(reference, current, "streaming", chunks).feature_metrics()
    for index, name in enumerate(FEATURES):
        ref, cur = reference[:, index], current[:, index]
        bounds = streaming[name]["error_bounds"]
        exact_w = stats.wasserstein_distance(ref, cur) / np.std(ref)
        exact_d = stats.ks_2samp(ref, cur).statistic
        assert abs(streaming[name][WASSERSTEIN] - exact_w) <= bounds[WASSERSTEIN] + 1e-12
        assert streaming[name]["ks_statistic"] <= exact_d + 1e-12
        assert exact_d <= streaming[name]["ks_statistic"] + bounds[KS] + 1e-12


def test_binned_metrics_do_not_depend_on_the_mode_or_the_chunks() -> None:
    reference, current = _data(3, 2000), _data(4, 3000, shift=(0.5, 0, 0))
    one = _monitor(reference, current, "exact", chunks=1).feature_metrics()
    many = _monitor(reference, current, "streaming", chunks=13).feature_metrics()
    for name in FEATURES:
        for metric in (JENSEN_SHANNON, PSI):
            assert one[name][metric] == pytest.approx(many[name][metric], abs=1e-12)


def test_the_same_distribution_is_not_drift() -> None:
    reference, current = _data(5, 20_000), _data(6, 50_000)
    result = _monitor(reference, current, "streaming").result()
    assert result.verdict == "no_drift"
    assert result.drifted_features == []
    for feature in result.features:
        assert feature.value is not None and feature.value < 0.05
        assert feature.metrics[KS] > 0.001


def test_shifted_features_are_found_with_their_values() -> None:
    reference, current = _data(7, 20_000), _data(8, 50_000, shift=(0.5, 0.0, 0.0))
    current[:, 2] *= 1.6
    result = _monitor(reference, current, "streaming").result()
    assert result.verdict == "drift"
    assert result.drifted_features == ["a", "c"]
    by_name = {f.name: f for f in result.features}
    assert by_name["a"].value == pytest.approx(0.5, abs=0.05)  # a mean shift of 0.5 std
    assert by_name["a"].metric == WASSERSTEIN and by_name["a"].threshold == 0.1
    assert by_name["b"].drifted is False
    # Other metrics can judge: the p-value of KS is tiny for the shifted feature.
    judged_by_ks = _monitor(reference, current, "streaming").result(numerical_metric=KS)
    assert "a" in judged_by_ks.drifted_features


def test_categorical_features_use_chi_squared_like_scipy() -> None:
    rng = np.random.default_rng(9)
    reference = np.column_stack(
        [rng.normal(size=5000), rng.choice(4, size=5000, p=[0.4, 0.3, 0.2, 0.1])]
    )
    current = np.column_stack(
        [rng.normal(size=4000), rng.choice(5, size=4000, p=[0.2, 0.3, 0.2, 0.2, 0.1])]
    )
    profile = ReferenceProfile.fit(reference, ["x", "segment"], categorical=["segment"])
    monitor = DriftMonitor(profile)
    monitor.update(current)
    metrics = monitor.feature_metrics()["segment"]
    ref_counts = np.bincount(reference[:, 1].astype(int), minlength=5)
    cur_counts = np.bincount(current[:, 1].astype(int), minlength=5)
    expected = stats.chi2_contingency(np.vstack([ref_counts, cur_counts]))[1]
    assert metrics[CHI_SQUARED] == pytest.approx(expected, rel=1e-9)
    result = monitor.result()
    assert result.features[1].metric == JENSEN_SHANNON and result.features[1].drifted


def test_prediction_drift_is_reported_apart_and_sets_the_verdict() -> None:
    rng = np.random.default_rng(10)
    reference = np.column_stack([rng.normal(size=3000), rng.choice(2, size=3000)])
    current = np.column_stack([rng.normal(size=3000), rng.choice(2, size=3000, p=[0.9, 0.1])])
    monitor = DriftMonitor(ReferenceProfile.fit(reference, ["x", "prediction"], ["prediction"]))
    monitor.update(current)
    result = monitor.result(prediction_feature="prediction")
    assert [f.name for f in result.features] == ["x"]
    assert result.prediction is not None and result.prediction.drifted
    assert result.drifted_features == [] and result.verdict == "drift"


def test_too_few_rows_are_insufficient_not_a_verdict() -> None:
    monitor = DriftMonitor(ReferenceProfile.fit(_data(11, 500), FEATURES))
    monitor.update(_data(12, 20))
    assert monitor.result(min_samples=100).verdict == "insufficient_data"


def test_streaming_memory_does_not_grow_with_the_window() -> None:
    monitor = DriftMonitor(ReferenceProfile.fit(_data(13, 2000), FEATURES), "streaming")
    sizes = []
    for seed in range(5):
        monitor.update(_data(100 + seed, 10_000))
        sizes.append(sum(w.counts.nbytes + len(w.values) for w in monitor._numeric.values()))
    assert len(set(sizes)) == 1  # fixed-size counts, no values kept


def test_bad_shapes_and_values_are_refused() -> None:
    with pytest.raises(ValueError, match="3 columns"):
        ReferenceProfile.fit(np.zeros((10, 2)), FEATURES)
    with pytest.raises(ValueError, match="not in features"):
        ReferenceProfile.fit(np.zeros((10, 3)), FEATURES, categorical=["z"])
    monitor = DriftMonitor(ReferenceProfile.fit(_data(14, 100), FEATURES))
    with pytest.raises(ValueError, match="must be finite"):
        monitor.update(np.array([[np.nan, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="3 columns"):
        monitor.update(np.zeros((4, 2)))
