import numpy as np
import pytest

from scaleworld.analysis.scaling_fit import (
    _scipy_openblas,
    _single_threaded_blas,
    fit_power_law,
    fit_scaling_law,
    held_out_size_check,
)
from scaleworld.errors import ScaleworldError

PAPER = np.array([6.3e6, 12.6e6, 25e6, 38e6, 76e6, 151e6, 302e6])


def _law(irreducible: float, coefficient_at_smallest: float, alpha: float) -> tuple[float, float, float]:
    """(E, A, alpha) with A chosen so that A / N^alpha = coefficient_at_smallest at 6.3M parameters."""
    return irreducible, coefficient_at_smallest * PAPER[0] ** alpha, alpha


LAWS = [_law(2.0, 1.2, 0.35), _law(1.5, 2.0, 0.2), _law(2.5, 0.8, 0.6), _law(0.05, 3.0, 0.3)]


@pytest.mark.parametrize(("E", "A", "alpha"), LAWS)
def test_fit_recovers_known_parameters_from_noiseless_data(E, A, alpha):
    losses = E + A * PAPER**-alpha
    fit = fit_power_law(PAPER, losses)
    assert fit.E == pytest.approx(E, rel=1e-4, abs=1e-6)
    assert fit.A == pytest.approx(A, rel=1e-3)
    assert fit.alpha == pytest.approx(alpha, rel=1e-4)
    assert fit.predict(PAPER) == pytest.approx(losses, rel=1e-6)
    assert fit.sizes == 7 and fit.huber_loss < 1e-6
    # Sizes in any order give the same fit.
    order = np.array([3, 0, 6, 1, 5, 2, 4])
    assert fit_power_law(PAPER[order], losses[order]).alpha == pytest.approx(fit.alpha, rel=1e-6)


def test_fit_recovers_known_parameters_from_mildly_noisy_seeds():
    E, A, alpha = LAWS[0]
    truth = E + A * PAPER**-alpha
    rng = np.random.default_rng(0)
    values = [mean * (1 + 0.005 * rng.standard_normal(8)) for mean in truth]  # 0.5% seed noise, 8 seeds
    result = fit_scaling_law(PAPER, values, rng=np.random.default_rng(1), reps=60)
    assert result.fit.alpha == pytest.approx(alpha, abs=0.03)
    assert result.fit.E == pytest.approx(E, rel=0.03)
    assert result.alpha_ci.contains(alpha) and result.E_ci.contains(E)
    assert result.alpha_ci.lo < result.fit.alpha < result.alpha_ci.hi and result.alpha_ci.reps == 60
    assert result.alpha_ci.width < 0.1
    # Extrapolating from the six smaller sizes lands within 1.5% of the largest size's mean NLL.
    held_out = result.held_out
    assert held_out.params == PAPER[-1] and held_out.observed == pytest.approx(values[-1].mean())
    assert abs(held_out.relative_error) < 0.015
    assert held_out.relative_error == pytest.approx((held_out.predicted - held_out.observed) / held_out.observed)


def test_bootstrap_interval_is_reproducible_for_a_seed():
    E, A, alpha = LAWS[1]
    rng = np.random.default_rng(2)
    values = [(E + A * n**-alpha) * (1 + 0.01 * rng.standard_normal(rng.integers(3, 6))) for n in PAPER]
    first = fit_scaling_law(PAPER, values, rng=np.random.default_rng(5), reps=20)
    again = fit_scaling_law(PAPER, values, rng=np.random.default_rng(5), reps=20)
    other = fit_scaling_law(PAPER, values, rng=np.random.default_rng(6), reps=20)
    assert first == again
    assert first.fit == other.fit and first.alpha_ci != other.alpha_ci


def test_held_out_check_is_exact_on_a_true_power_law_and_flags_a_broken_one():
    E, A, alpha = LAWS[2]
    exact = held_out_size_check(PAPER, [np.full(3, E + A * n**-alpha) for n in PAPER])
    assert exact.relative_error == pytest.approx(0.0, abs=1e-6)
    # The largest model is 10% worse than the law says (say, a classical U): the check shows it.
    losses = E + A * PAPER**-alpha
    losses[-1] *= 1.10
    broken = held_out_size_check(PAPER, [np.full(3, value) for value in losses])
    assert broken.relative_error == pytest.approx(1 / 1.10 - 1, rel=1e-3)
    # Three sizes are enough to fit but not to hold one out.
    assert fit_scaling_law(PAPER[:3], [np.full(2, v) for v in losses[:3]], rng=np.random.default_rng(0),
                           reps=5).held_out is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fit_power_law(PAPER[:2], [3.0, 2.0]), "at least 3 sizes"),
        (lambda: fit_power_law(PAPER[:3], [3.0, 2.0]), "3 sizes but 2"),
        (lambda: fit_power_law(PAPER[:3], [3.0, -2.0, 1.0]), "positive"),
        (lambda: fit_power_law(PAPER[:3], [3.0, np.nan, 1.0]), "NaN"),
        (lambda: fit_power_law([1e6, 1e6, 2e6], [3.0, 2.0, 1.0]), "distinct"),
        (lambda: fit_power_law(PAPER[:3], [3.0, 2.0, 1.0], huber_delta=0.0), "huber_delta"),
        (lambda: held_out_size_check(PAPER[:3], [[3.0], [2.0], [1.0]]), "at least 4 sizes"),
        (lambda: fit_scaling_law(PAPER[:3], [[3.0], [2.0]], rng=np.random.default_rng(0)), "3 parameter counts but 2"),
        (lambda: fit_scaling_law(PAPER[:3], [[3.0], [], [1.0]], rng=np.random.default_rng(0)), "empty"),
        (lambda: fit_scaling_law(PAPER[:3], [[3.0], [2.0], [1.0]], rng=None), "Generator"),
    ],
)
def test_bad_input_raises_a_named_error(call, message):
    with pytest.raises(ScaleworldError, match=message):
        call()


def test_fits_leave_the_blas_thread_count_as_they_found_it():
    # The fit runs scipy's BLAS single-threaded for speed (see _single_threaded_blas) and must restore it.
    library = _scipy_openblas()
    if library is None:
        pytest.skip("scipy does not bundle OpenBLAS here; the thread limit is a no-op")
    before = library.scipy_openblas_get_num_threads()
    with _single_threaded_blas():
        assert library.scipy_openblas_get_num_threads() == 1
    fit_scaling_law(PAPER, [np.full(2, 2.0 + n**-0.3) for n in PAPER], rng=np.random.default_rng(0), reps=3)
    assert library.scipy_openblas_get_num_threads() == before


def test_study_fits_use_block_parameters_and_flag_curves_that_rise():
    """A law planted in block (non-embedding) parameters of the paper ladder: the fit on blocks
    recovers its alpha, the second reading on total parameters (embeddings and heads added) is
    bent away from it; a curve that rises with size beyond its noise gets no law."""
    from scaleworld.analysis.summary import scaling_fits
    from scaleworld.models.dynamics_config import parameter_counts
    from scaleworld.models.ladders import get_size

    counts = [parameter_counts(get_size(f"paper-d{d}").config(context=64)) for d in (2, 8, 24, 96)]
    rng = np.random.default_rng(5)
    blocks = [c["blocks"] for c in counts]
    nll = {n: dict(enumerate(1.0 + 30.0 * n ** -0.3 * (1 + 0.001 * rng.standard_normal(3)))) for n in blocks}
    total = {c["total"]: nll[c["blocks"]] for c in counts}  # [params][seed] -> NLL
    bump = dict(zip(blocks, [nll[blocks[0]], nll[blocks[1]], {s: v + 0.5 for s, v in nll[blocks[2]].items()},
                             nll[blocks[3]]]))
    fits = scaling_fits({"single": {"Pong": nll, "Breakout": bump}}, total={"single": {"Pong": total, "Breakout": {
        c["total"]: bump[c["blocks"]] for c in counts}}}, rng=np.random.default_rng(0), reps=100)
    pong = fits["single"]["Pong"]
    assert pong["params"] == "blocks" and pong["monotone"]
    assert pong["fit"]["alpha"] == pytest.approx(0.3, abs=0.02)
    assert abs(pong["alpha_total_ci"]["point"] - 0.3) > abs(pong["fit"]["alpha"] - 0.3)
    breakout = fits["single"]["Breakout"]
    assert breakout["fit"] is None and not breakout["monotone"]
    assert breakout["reason"].startswith(f"not monotone: {blocks[2]:,} parameters are worse than {blocks[1]:,}")
