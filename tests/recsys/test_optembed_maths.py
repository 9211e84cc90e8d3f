"""OptEmbed's pure pieces: surrogate gradient, row masks, thresholds, dim masks, remap, search."""

import numpy as np
import pytest
import torch

from recsys.optembed import (
    BinaryStep,
    evolutionary_search,
    prefix_masks,
    prune_remap,
    round_width,
    row_mask,
    sample_dim_masks,
    threshold_penalty,
)


def test_binary_step_forward_is_a_step_and_backward_is_the_reference_surrogate():
    x = torch.tensor([-2.0, -0.7, -0.1, 0.0, 0.2, 0.5, 1.5], requires_grad=True)
    y = BinaryStep.apply(x)
    y.sum().backward()
    assert y.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert x.grad.tolist() == pytest.approx([0.0, 0.4, 1.6, 2.0, 1.2, 0.4, 0.0])


def test_row_mask_keeps_rows_whose_mean_abs_exceeds_the_threshold():
    weight = torch.tensor([[1.0, -1.0], [0.1, 0.1], [0.0, 0.0]])
    assert row_mask(weight, torch.tensor(0.5)).tolist() == [1.0, 0.0, 0.0]


def test_penalty_gradient_raises_thresholds_under_gradient_descent():
    # given thresholds at 0 and only the penalty as loss
    t = torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([t], lr=0.1)
    # when
    for _ in range(5):
        opt.zero_grad()
        threshold_penalty(t, alpha=1.0).backward()
        opt.step()
    # then every threshold moved up
    assert (t > 0).all()


def test_the_row_mask_passes_the_reference_surrogate_gradient_to_rows_and_threshold():
    # given rows whose mean |w| - t is 0.3, 0.05 (inside the bump), 0.7 (the 0.4 shelf) and 1.5 (beyond it)
    weight = torch.tensor([[0.3, 0.3], [0.05, 0.05], [0.7, -0.7], [1.5, 1.5]], requires_grad=True)
    t = torch.zeros((), requires_grad=True)
    # when the kept count is differentiated
    row_mask(weight, t).sum().backward()
    # then d/dx = 2 - 4|x| (|x| <= 0.4), 0.4 (<= 1), 0 beyond; x = mean|w| - t, so d/dw = sign(w)/D * that
    surrogate = torch.tensor([0.8, 1.8, 0.4, 0.0])
    assert torch.allclose(t.grad, -surrogate.sum())  # raising t lowers the kept count
    expected = surrogate[:, None] * torch.sign(weight.detach()) / 2
    assert torch.allclose(weight.grad, expected)


def test_prefix_masks_keep_exactly_the_first_width_columns():
    masks = prefix_masks(torch.tensor([[1, 3], [4, 2]]), 4)
    assert masks.shape == (2, 2, 4)
    assert masks[0, 1].tolist() == [1, 1, 1, 0]
    assert masks.sum(-1).tolist() == [[1, 3], [4, 2]]


def test_sampled_dim_masks_cover_every_width_and_are_seeded():
    a = sample_dim_masks(2000, 3, 8, torch.Generator().manual_seed(1))
    b = sample_dim_masks(2000, 3, 8, torch.Generator().manual_seed(1))
    widths = a.sum(-1)
    assert torch.equal(a, b)
    assert set(widths.unique().tolist()) == set(range(1, 9))
    assert abs(widths.float().mean().item() - 4.5) < 0.2  # uniform over 1..8


def test_prune_remap_sends_pruned_ids_to_the_oov_row_and_keeps_order():
    keep = np.array([False, False, True, False, True, False])
    remap = prune_remap(keep)
    assert remap.tolist() == [0, 1, 2, 1, 3, 1]
    table = np.arange(6)[:, None] * 10.0
    compact = table[np.array([True, True, True, False, True, False])]
    assert (compact[remap][[0, 2, 4]] == table[[0, 2, 4]]).all()


@pytest.mark.parametrize("width, expected", [(1, 4), (4, 4), (5, 8), (63, 64)])
def test_round_width_rounds_up_to_multiples_of_four(width, expected):
    assert round_width(width) == expected


def test_search_finds_the_known_best_widths():
    # given a fitness that peaks at widths (8, 2, 5)
    target = np.array([8, 2, 5])
    result = evolutionary_search(
        lambda w: -float(np.abs(w - target).sum()), 3, 8, lambda w: int(w.sum()), generations=30, seed=0
    )
    assert result.widths == (8, 2, 5)
    assert result.history == sorted(result.history)  # the elite never gets worse


def test_search_respects_the_parameter_budget():
    # given a fitness that always prefers wider embeddings, and a budget of 10 parameters
    result = evolutionary_search(
        lambda w: float(w.sum()), 3, 8, lambda w: int(w.sum()), max_params=10, generations=15, seed=1
    )
    assert result.num_params <= 10
    assert result.fitness == 10.0


def test_search_rejects_an_impossible_budget():
    with pytest.raises(ValueError, match="budget 2 is below"):
        evolutionary_search(lambda w: 0.0, 3, 8, lambda w: int(w.sum()), max_params=2, generations=1)
