"""Schedule factories against their closed forms, join boundaries, validation, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import SCHEDULE_MONOTONE_RTOL, SCHEDULE_RTOL
from hypothesis import given, settings
from hypothesis import strategies as st

from optctl import schedules as S
from optctl.errors import SpecError, SpecTypeError

STEPS = range(160)


def _check(schedule: S.Schedule, closed_form, steps=STEPS) -> None:  # type: ignore[no-untyped-def]
    """Step the schedule one update at a time and all at once (torch-test style)."""
    expected = np.array([closed_form(t) for t in steps])
    scalar = np.array([schedule(t) for t in steps])
    vector = schedule(np.asarray(list(steps)))
    np.testing.assert_allclose(scalar, expected, rtol=SCHEDULE_RTOL, atol=0)
    np.testing.assert_allclose(vector, expected, rtol=SCHEDULE_RTOL, atol=0)


# ------------------------------------------------------------------ closed forms


def test_constant() -> None:
    _check(S.constant(0.3), lambda t: 0.3)


@pytest.mark.parametrize("chi", [0.0, 0.5, 1.0, 1.37])
def test_power_law(chi: float) -> None:
    _check(S.power_law(0.8, chi), lambda t: 0.8 * (t + 1) ** (-chi))


@pytest.mark.parametrize("warmup", [0, 7])
@pytest.mark.parametrize("end", [0.0, 0.05])
def test_linear_decay(warmup: int, end: float) -> None:
    peak, D = 0.9, 100

    def ref(t: int) -> float:
        if t < warmup:
            return peak * t / warmup
        s = min(t - warmup, D)
        return end + (peak - end) * (1 - s / D)

    _check(S.linear_decay(peak, D, end, warmup), ref)


@pytest.mark.parametrize("warmup", [0, 7])
@pytest.mark.parametrize("end", [0.0, 0.05])
def test_cosine(warmup: int, end: float) -> None:
    peak, D = 0.9, 100

    def ref(t: int) -> float:
        if t < warmup:
            return peak * t / warmup
        s = min(t - warmup, D)
        return end + (peak - end) * (1 + math.cos(math.pi * s / D)) / 2

    _check(S.cosine(peak, D, end, warmup), ref)


@pytest.mark.parametrize("p", [0.0, 1.0, 3.0, 2.5])
def test_polynomial_decay(p: float) -> None:
    peak, total = 0.7, 120
    _check(S.polynomial_decay(peak, total, p), lambda t: peak * (1 - min(t, total) / total) ** p)


@pytest.mark.parametrize("shape", ["linear", "cosine", "sqrt"])
@pytest.mark.parametrize("W,Sst,D", [(0, 40, 60), (10, 50, 60), (10, 0, 60), (0, 0, 100)])
def test_warmup_stable_decay(shape: str, W: int, Sst: int, D: int) -> None:
    peak, end = 0.8, 0.01
    w = {"linear": lambda x: 1 - x,
         "cosine": lambda x: (1 + math.cos(math.pi * x)) / 2,
         "sqrt": lambda x: 1 - math.sqrt(x)}[shape]

    def ref(t: int) -> float:
        if t < W:
            return peak * t / W
        if t < W + Sst:
            return peak
        return end + (peak - end) * w(min(t - W - Sst, D) / D)

    _check(S.warmup_stable_decay(peak, W, Sst, D, end, shape), ref)  # type: ignore[arg-type]


def test_full_horizon_decay_convention() -> None:
    """A decay over the whole run ends on a small nonzero rate at t = T - 1."""
    T, peak = 50, 1.0
    eta = S.sample(S.linear_decay(peak, T), T)
    assert eta.shape == (T,)
    assert eta[0] == peak
    assert eta[-1] == pytest.approx(peak / T, rel=SCHEDULE_RTOL)
    assert S.linear_decay(peak, T)(T) == 0.0
    wsd = S.sample(S.warmup_stable_decay(peak, 0, T - 10, 10), T)
    assert np.all(wsd[:41] == peak)
    assert wsd[-1] == pytest.approx(peak / 10, rel=SCHEDULE_RTOL)


def test_scalar_and_array_types() -> None:
    sched = S.cosine(1.0, 10)
    assert isinstance(sched(3), float)
    assert isinstance(sched(np.int32(3)), float)
    out = sched(np.array([[0, 1], [2, 3]], dtype=np.int16))
    assert isinstance(out, np.ndarray) and out.shape == (2, 2) and out.dtype == np.float64
    assert sched(np.array([], dtype=int)).shape == (0,)


# ------------------------------------------------------------------ join


def test_join_boundaries_and_relative_steps() -> None:
    seen: list[np.ndarray] = []

    def probe(offset: float):  # type: ignore[no-untyped-def]
        def sched(step):  # type: ignore[no-untyped-def]
            seen.append(np.asarray(step))
            return offset + np.asarray(step, dtype=float)
        return sched

    joined = S.join([probe(0.0), probe(100.0), probe(1000.0)], [5, 8])
    t = np.arange(12)
    out = joined(t)
    expected = np.concatenate([np.arange(5), 100 + np.arange(3), 1000 + np.arange(4)])
    np.testing.assert_array_equal(out, expected)
    # A step on a boundary belongs to the piece starting there, at relative step 0.
    assert joined(5) == 100.0 and joined(4) == 4.0 and joined(8) == 1000.0
    assert all(int(s.min()) >= 0 for s in seen if s.size)  # pieces never see negative steps


def test_join_equal_boundaries_skip_piece() -> None:
    joined = S.join([S.constant(1.0), S.constant(2.0), S.constant(3.0)], [4, 4])
    np.testing.assert_array_equal(S.sample(joined, 7), [1, 1, 1, 1, 3, 3, 3])


def test_join_single_piece() -> None:
    np.testing.assert_array_equal(S.sample(S.join([S.constant(0.5)], []), 3), [0.5] * 3)


def test_wsd_is_join_of_pieces() -> None:
    W, Sst, D, peak = 5, 7, 9, 0.6
    def warmup(s):  # type: ignore[no-untyped-def]
        return peak * np.asarray(s) / W

    manual = S.join([warmup, S.constant(peak), S.linear_decay(peak, D)], [W, W + Sst])
    np.testing.assert_allclose(S.sample(S.warmup_stable_decay(peak, W, Sst, D), 30),
                               S.sample(manual, 30), rtol=SCHEDULE_RTOL, atol=0)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("factory,kwargs,field", [
    (S.constant, {"value": -0.1}, "value"),
    (S.constant, {"value": float("nan")}, "value"),
    (S.power_law, {"init_value": 1.0, "exponent": -0.5}, "exponent"),
    (S.power_law, {"init_value": -1.0, "exponent": 0.5}, "init_value"),
    (S.linear_decay, {"peak_value": 1.0, "decay_steps": 0}, "decay_steps"),
    (S.linear_decay, {"peak_value": 1.0, "decay_steps": 10, "end_value": 2.0}, "end_value"),
    (S.linear_decay, {"peak_value": 1.0, "decay_steps": 10, "warmup_steps": -1}, "warmup_steps"),
    (S.cosine, {"peak_value": -1.0, "decay_steps": 10}, "peak_value"),
    (S.cosine, {"peak_value": 1.0, "decay_steps": 10, "end_value": -0.1}, "end_value"),
    (S.polynomial_decay, {"peak_value": 1.0, "total_steps": 0, "exponent": 1.0}, "total_steps"),
    (S.polynomial_decay, {"peak_value": 1.0, "total_steps": 5, "exponent": -1.0}, "exponent"),
    (S.warmup_stable_decay, {"peak_value": 1.0, "warmup_steps": 0, "stable_steps": -3,
                             "decay_steps": 5}, "stable_steps"),
    (S.warmup_stable_decay, {"peak_value": 1.0, "warmup_steps": 0, "stable_steps": 3,
                             "decay_steps": 5, "decay_shape": "exp"}, "decay_shape"),
])
def test_invalid_arguments(factory, kwargs, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecError) as info:
        factory(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize("bad", ["10", 2.5, True, None])
def test_non_integer_step_counts(bad: object) -> None:
    with pytest.raises(SpecTypeError):
        S.linear_decay(1.0, bad)  # type: ignore[arg-type]


def test_integer_valued_float_step_count_is_accepted() -> None:
    assert S.linear_decay(1.0, 10.0)(5) == 0.5  # type: ignore[arg-type]


def test_bad_steps() -> None:
    sched = S.constant(1.0)
    with pytest.raises(SpecError) as info:
        sched(-1)
    assert info.value.field == "step"
    with pytest.raises(SpecTypeError):
        sched(1.5)  # type: ignore[arg-type]
    with pytest.raises(SpecTypeError):
        sched(np.array([0.0, 1.0]))  # type: ignore[arg-type]


def test_bad_join() -> None:
    with pytest.raises(SpecError) as info:
        S.join([S.constant(1.0), S.constant(2.0)], [])
    assert info.value.field == "boundaries"
    with pytest.raises(SpecError):
        S.join([S.constant(1.0)] * 3, [5, 2])
    with pytest.raises(SpecError):
        S.join([], [])
    with pytest.raises(SpecTypeError):
        S.join([1.0], [])  # type: ignore[list-item]


def test_bad_sample_length() -> None:
    with pytest.raises(SpecError) as info:
        S.sample(S.constant(1.0), 0)
    assert info.value.field == "T"


# ------------------------------------------------------------------ properties

peaks = st.floats(min_value=1e-6, max_value=10.0)
fractions = st.floats(min_value=0.0, max_value=1.0)
counts = st.integers(min_value=1, max_value=400)


def _assert_decay(eta: np.ndarray, peak: float, end: float) -> None:
    assert np.all(eta <= peak) and np.all(eta >= min(peak, end))
    assert np.all(np.diff(eta) <= SCHEDULE_MONOTONE_RTOL * peak)


@settings(max_examples=60, deadline=None)
@given(peak=peaks, frac=fractions, D=counts, W=st.integers(0, 40),
       shape=st.sampled_from(["linear", "cosine"]))
def test_warmup_decay_properties(peak: float, frac: float, D: int, W: int, shape: str) -> None:
    end = peak * frac
    factory = S.linear_decay if shape == "linear" else S.cosine
    eta = S.sample(factory(peak, D, end, W), W + D + 10)
    assert np.all(eta[:W] >= 0) and np.all(eta[:W] <= peak)
    assert np.all(np.diff(eta[: W + 1]) >= 0)
    assert eta[W] == peak
    _assert_decay(eta[W:], peak, end)
    assert np.all(eta[W + D:] == end)


@settings(max_examples=60, deadline=None)
@given(peak=peaks, frac=fractions, D=counts, Sst=st.integers(0, 100),
       shape=st.sampled_from(list(S.DECAY_SHAPES)))
def test_wsd_properties(peak: float, frac: float, D: int, Sst: int, shape: str) -> None:
    end = peak * frac
    sched = S.warmup_stable_decay(peak, 0, Sst, D, end, shape)  # type: ignore[arg-type]
    eta = S.sample(sched, Sst + D + 5)
    assert np.all(eta[: Sst + 1] == peak)
    _assert_decay(eta, peak, end)
    assert np.all(eta[Sst + D:] == end)


@settings(max_examples=60, deadline=None)
@given(peak=peaks, total=counts, p=st.floats(min_value=0.0, max_value=12.0))
def test_polynomial_decay_properties(peak: float, total: int, p: float) -> None:
    _assert_decay(S.sample(S.polynomial_decay(peak, total, p), total + 5), peak, 0.0)


@settings(max_examples=60, deadline=None)
@given(peak=peaks, chi=st.floats(min_value=0.0, max_value=3.0))
def test_power_law_properties(peak: float, chi: float) -> None:
    _assert_decay(S.sample(S.power_law(peak, chi), 300), peak, 0.0)
