"""The non-learned baselines on hand-built histories give the rankings they must give."""

import numpy as np

from geosid.trainer import baselines as B
from geosid.trainer.search import ranking_metrics

PAD = -1
# histories, oldest first, left-aligned
HIST = np.array(
    [
        [1, 2, 1, 3, 2, 1, PAD],  # visits: 1 x3, 2 x2, 3 x1; last item 1
        [4, 5, 4, 5, PAD, PAD, PAD],  # 4 and 5 twice each; 5 latest
        [PAD] * 7,  # no history
    ]
)
TRAIN_HIST = np.array([[1, PAD], [1, PAD], [1, PAD], [2, PAD], [7, PAD]])
TRAIN_TARGETS = np.array([6, 6, 8, 9, 9])  # after item 1: 6 twice, 8 once; 9 most popular overall (tie with 6)


def test_repeat_counts_visits_and_breaks_ties_by_recency():
    ranked = B.repeat(HIST, TRAIN_TARGETS, 5)
    assert ranked[0].tolist() == [1, 2, 3, 6, 9]  # then popular: 6 and 9 both twice, lower index first
    assert ranked[1].tolist()[:2] == [5, 4]  # a tie of two visits: the latest first
    assert ranked[2].tolist()[:2] == [6, 9]  # no history: popular only


def test_recent_is_distinct_history_most_recent_first():
    ranked = B.recent(HIST, TRAIN_TARGETS, 4)
    assert ranked[0].tolist() == [1, 2, 3, 6]
    assert ranked[1].tolist()[:2] == [5, 4]


def test_markov_follows_the_last_item_then_repeats():
    ranked = B.markov(HIST, TRAIN_HIST, TRAIN_TARGETS, 5)
    assert ranked[0].tolist() == [6, 8, 1, 2, 3]  # after 1 in train: 6 (twice), 8; then the user's repeats
    assert ranked[1].tolist()[:2] == [5, 4]  # nothing ever followed 5 in train: repeat
    own = B.markov_user(HIST, TRAIN_TARGETS, 4)
    assert own[0].tolist() == [2, 3, 1, 6]  # in the user's own history 1 was followed by 2, then 3; then repeat
    assert own[1].tolist()[:2] == [4, 5]  # 5 -> 4 once


def test_popular_baselines_and_the_shared_metric():
    assert B.most_popular(TRAIN_TARGETS, 2, 3).tolist() == [[6, 9, 8], [6, 9, 8]]
    cells = np.array([1, 1, 2, 2, 2])
    near = B.nearest_popular(TRAIN_TARGETS, cells, np.array([2, 3]), np.array([[1, 0], [0, 0]]), 3)
    assert near[0].tolist() == [9, 8, 6]  # cell 2's items, then cell 1's, then global
    assert near[1].tolist() == [6, 9, 8]  # an unseen cell: global
    m = ranking_metrics(B.repeat(HIST, TRAIN_TARGETS, 5), np.array([2, 4, 7]), ks=(1, 5))
    assert m["recall@1"] == 0.0 and m["recall@5"] == 2 / 3
    assert m["ndcg@5"] == (1 / np.log2(3) + 1 / np.log2(3)) / 3


def test_ties_fall_to_each_rules_own_evidence_not_to_the_item_index():
    # the user's own Markov: 1 was followed by 4 once and by 9 once; 9 has more visits
    own = B.markov_user(np.array([[1, 4, 1, 9, 9, 1]]), TRAIN_TARGETS, 3)
    assert own[0].tolist() == [9, 4, 1]
    # global Markov: after 7 came 2 once and 3 once; 3 is the more popular train target
    hist, targets = np.array([[7], [7], [0], [0]]), np.array([2, 3, 3, 3])
    assert B.markov(np.array([[5, 7]]), hist, targets, 2)[0].tolist() == [3, 2]
    # nearest popular: cell 1 saw 2 and 3 once each there; 3 is more popular elsewhere
    near = B.nearest_popular(np.array([2, 3, 3, 3]), np.array([1, 1, 2, 2]), np.array([1]), np.array([[0]]), 2)
    assert near[0].tolist() == [3, 2]
