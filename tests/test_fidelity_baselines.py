"""The next-latent baselines' arithmetic, against values computed by hand on a small token set."""

from __future__ import annotations

import math

import pytest
import torch

from scaleworld.evaluation.baselines import fit_baselines


def _fit():
    # one variable, 3 classes; training episodes [0, 0, 1] and [2, 2]: codes 0, 1, 2 seen 2, 1, 2 times
    # (p = 2.5/6.5, 1.5/6.5, 2.5/6.5 after add-1/2); transitions 0->0, 0->1, 2->2: 1 change in 3
    # (r = 1.5/4)
    return fit_baselines([torch.tensor([[0], [0], [1]]), torch.tensor([[2], [2]])], classes=3)


def test_unigram_and_copy_by_hand():
    b = _fit()
    assert (b.frames, b.transitions) == (5, 3)
    p1, r = 1.5 / 6.5, 1.5 / 4
    assert b.log_unigram.exp()[0].tolist() == pytest.approx([2.5 / 6.5, p1, 2.5 / 6.5])
    assert b.change.tolist() == pytest.approx([r])
    nll = b.nll(torch.tensor([[[0], [1], [1]]]))  # a held-out window 0 -> 1 -> 1
    # unigram: -log p(1) twice; copy: 0->1 changed: -log(r p(1)); 1->1 stayed: -log(1 - r + r p(1))
    assert nll["unigram"][0].tolist() == pytest.approx([-math.log(p1), -math.log(p1)])
    assert nll["copy"][0].tolist() == pytest.approx([-math.log(r * p1), -math.log(1 - r + r * p1)])


def test_variables_add_up_to_nats_per_frame():
    # two variables with identical codes: every NLL doubles
    one = fit_baselines([torch.tensor([[0], [0], [1]])], classes=2)
    two = fit_baselines([torch.tensor([[0, 0], [0, 0], [1, 1]])], classes=2)
    window = torch.tensor([[[1], [0], [0]]])
    for name, value in one.nll(window).items():
        assert two.nll(window.expand(1, 3, 2).contiguous())[name] == pytest.approx(2 * value)


def test_a_static_game_favours_copy_and_no_training_data_is_refused():
    static = fit_baselines([torch.full((50, 4), 3)], classes=8)
    nll = static.nll(torch.full((1, 5, 4), 3))
    assert (nll["copy"] < nll["unigram"]).all() and (nll["copy"] > 0).all()  # finite, positive
    with pytest.raises(ValueError, match="at least one training frame"):
        fit_baselines([], classes=8)


def test_the_analysis_flags_every_size_with_a_seed_that_does_not_beat_both():
    from scaleworld.analysis.summary import baseline_comparison

    base = {"unigram": 3.0, "copy": 1.0}
    rows = [{"mode": "single", "game": "Pong", "size": size, "params": params, "seed": seed, "nll": nll,
             "baselines": base}
            for size, params, seed, nll in (("s", 10, 0, 1.2), ("s", 10, 1, 0.9), ("m", 20, 0, 0.8), ("m", 20, 1, 0.7))]
    rows.append({**rows[0], "game": "Boxing", "baselines": None})  # a record from before fidelity/3: left out
    out = baseline_comparison(rows)
    assert set(out) == {"Pong"}
    pong = out["Pong"]
    assert (pong["unigram"], pong["copy"]) == (3.0, 1.0)
    assert pong["models"]["single"]["s"] == {"nll": pytest.approx(1.05), "not_beating": [0], "seeds": 2}
    assert pong["models"]["single"]["m"]["not_beating"] == []
    assert pong["flagged"] == ["single s"]
    equal = [{**rows[2], "nll": 1.0}]  # equal to a baseline is not beating it
    assert baseline_comparison(equal)["Pong"]["flagged"] == ["single m"]
