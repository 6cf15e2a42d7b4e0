import math

import pytest

from fairseq_wae.schedules import PeakStopper, kl_weight, word_dropout_rate


def weight(schedule, step, **kw):
    settings = dict(max_weight=2.0, anneal_steps=100, midpoint=50, steepness=0.1)
    settings.update(kw)
    return kl_weight(schedule, step, **settings)


def test_constant():
    assert [weight("constant", s) for s in (0, 10, 10**6)] == [2.0, 2.0, 2.0]


def test_linear():
    assert [weight("linear", s) for s in (0, 25, 100, 500)] == [0.0, 0.5, 2.0, 2.0]


def test_sigmoid():
    assert weight("sigmoid", 50) == pytest.approx(1.0)
    assert weight("sigmoid", 60) == pytest.approx(2.0 / (1 + math.exp(-1.0)))
    assert weight("sigmoid", 0) == pytest.approx(2.0 / (1 + math.exp(5.0)))
    assert weight("sigmoid", 10**7) == pytest.approx(2.0) and weight("sigmoid", -10**7) == pytest.approx(0.0)


def test_tanh_is_the_authors_formula():
    # authors: (tanh((step - 4500) / 1000) + 1) / 2
    for step in (0, 3000, 4500, 6000, 20000):
        expected = (math.tanh((step - 4500) / 1000) + 1) / 2
        assert kl_weight("tanh", step, 1.0, 1, 4500, 0.001) == pytest.approx(expected)


def test_cyclical():
    # cycles of 100 updates: ramp over the first 50, flat over the last 50
    assert [weight("cyclical", s) for s in (0, 25, 50, 99, 100, 125)] == [0.0, 1.0, 2.0, 2.0, 0.0, 1.0]


def test_unknown_schedule():
    with pytest.raises(ValueError, match="kl-anneal"):
        weight("cosine", 3)


def test_word_dropout_paper_schedule():
    rates = [word_dropout_rate(epoch, 0.0, 0.05, 0.5) for epoch in (1, 2, 3, 11, 12, 30)]
    assert rates == pytest.approx([0.0, 0.05, 0.10, 0.5, 0.5, 0.5])
    assert word_dropout_rate(7, 0.25, 0.0, 0.5) == 0.25


def run_stopper(weights, curve, **kw):
    stopper = PeakStopper(**kw)
    frozen_at = None
    for step, (weight, value) in enumerate(zip(weights, curve)):
        stopper.update(weight=weight, weighted_kl=value)
        if stopper.frozen_weight is not None and frozen_at is None:
            frozen_at = step
    return stopper, frozen_at


def test_peak_stopper_freezes_after_the_peak_and_survives_a_checkpoint():
    weights = [0.1 * (step + 1) for step in range(9)]
    curve = [1, 2, 3, 4, 5, 5, 4, 3, 2]
    stopper, frozen_at = run_stopper(weights, curve, decay=0.5, tolerance=0.05)
    assert frozen_at is not None and frozen_at > curve.index(5) and stopper.frozen_weight == weights[frozen_at]
    restored = PeakStopper()
    restored.load_state_dict(stopper.state_dict())
    restored.update(weight=9.0, weighted_kl=100.0)
    assert restored.frozen_weight == stopper.frozen_weight


def test_peak_stopper_ignores_the_start_up_transient():
    # lambda*KL of the SNLI run: a spike from the fresh encoder while the weight has barely moved,
    # a trough, then the rise driven by annealing, its peak and the collapse
    # (the weight doubles at step 3, while lambda*KL is still falling from the spike)
    weights = [1, 1.3, 1.7, 2.2, 2.8, 3.5, 4.5, 6, 8, 11, 15, 20, 27, 36, 48, 64, 85]
    curve = [9, 14, 10, 6, 5, 4.5, 4.5, 5, 5.5, 6, 6.2, 6.2, 5.8, 5, 4, 3, 2]
    stopper, frozen_at = run_stopper(weights, curve, decay=0.5, tolerance=0.05)
    assert frozen_at is not None and frozen_at > curve.index(6.2)


def test_peak_stopper_keeps_annealing_while_rising():
    stopper = PeakStopper()
    for step in range(200):
        stopper.update(weight=step, weighted_kl=step * 0.1)
    assert stopper.frozen_weight is None
