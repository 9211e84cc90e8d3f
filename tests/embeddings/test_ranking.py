"""Ranking metrics: recall@k and NDCG@k (binary relevance, log2 discount) against hand-computed values."""

import math

import pytest

from embeddings.ranking import mean_metrics, ndcg_at_k, recall_at_k

LOG2_3, LOG2_5 = math.log2(3), math.log2(5)


def test_recall_is_the_fraction_of_relevant_items_in_the_top_k():
    # given one query whose relevant items b, d, x sit at ranks 2 and 4 (x never retrieved)
    ranked, relevant = [["a", "b", "c", "d"]], [{"b", "d", "x"}]
    # then recall@2 finds 1 of 3, recall@4 2 of 3
    assert recall_at_k(ranked, relevant, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, relevant, 4) == pytest.approx(2 / 3)


def test_ndcg_discounts_by_log2_of_rank_plus_one_and_normalises_by_the_ideal_of_min_relevant_k():
    ranked, relevant = [["a", "b", "c", "d"]], [{"b", "d", "x"}]
    # k=2: DCG = 1/log2(3); ideal: 2 relevant fit, 1 + 1/log2(3)
    assert ndcg_at_k(ranked, relevant, 2) == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3))
    # k=4: DCG = 1/log2(3) + 1/log2(5); ideal: only 3 relevant exist, 1 + 1/log2(3) + 1/log2(4)
    assert ndcg_at_k(ranked, relevant, 4) == pytest.approx((1 / LOG2_3 + 1 / LOG2_5) / (1 + 1 / LOG2_3 + 0.5))
    assert ndcg_at_k(ranked, relevant, 4) == pytest.approx(0.498190, abs=1e-6)


def test_a_perfect_ranking_scores_one_and_a_ranking_without_hits_zero():
    assert ndcg_at_k([["x", "y", "z"]], [{"x", "y"}], 3) == 1.0
    assert recall_at_k([["x", "y", "z"]], [{"x", "y"}], 3) == 1.0
    assert ndcg_at_k([["a", "b"]], [{"x"}], 2) == 0.0
    assert recall_at_k([["a", "b"]], [{"x"}], 2) == 0.0


def test_means_are_over_queries_with_relevant_items_only():
    # given three queries: a hit at rank 1, no relevant items at all (skipped), a miss
    ranked = [["a", "b"], ["a", "b"], ["c", "d"]]
    relevant = [{"a"}, set(), {"z"}]
    # then each mean is over the two queries that have relevant items
    assert recall_at_k(ranked, relevant, 2) == pytest.approx(0.5)
    assert ndcg_at_k(ranked, relevant, 2) == pytest.approx(0.5)


def test_a_short_list_counts_what_it_has_and_a_repeated_candidate_counts_once():
    assert recall_at_k([["a"]], [{"a", "b"}], 10) == pytest.approx(0.5)
    assert ndcg_at_k([["a"]], [{"a", "b"}], 10) == pytest.approx(1 / (1 + 1 / LOG2_3))
    assert recall_at_k([["a", "a", "b"]], [{"a", "b"}], 2) == 1.0  # a, then b: the repeat takes no place


def test_mean_metrics_names_each_metric_by_its_k():
    metrics = mean_metrics([["a", "b", "c", "d"]], [{"b", "d", "x"}], ks=(2, 4))
    assert metrics == pytest.approx(
        {
            "recall@2": 1 / 3,
            "ndcg@2": (1 / LOG2_3) / (1 + 1 / LOG2_3),
            "recall@4": 2 / 3,
            "ndcg@4": (1 / LOG2_3 + 1 / LOG2_5) / (1 + 1 / LOG2_3 + 0.5),
        }
    )
    assert set(mean_metrics([["a"]], [{"a"}])) == {
        "recall@10",
        "ndcg@10",
        "recall@50",
        "ndcg@50",
        "recall@100",
        "ndcg@100",
    }


def test_no_query_with_relevant_items_gives_nan():
    assert math.isnan(recall_at_k([["a"]], [set()], 5)) and math.isnan(ndcg_at_k([], [], 5))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="k must be > 0"):
        recall_at_k([["a"]], [{"a"}], 0)
    with pytest.raises(ValueError, match="ranked has 2 queries but relevant has 1"):
        ndcg_at_k([["a"], ["b"]], [{"a"}], 1)
