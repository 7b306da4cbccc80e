"""OneLoc model, constrained beam search, metrics, rewards: shapes, causality, the gate's
range, DPO by hand, only valid SIDs, and a tiny model that overfits a tiny corpus."""

import math

import numpy as np
import pytest
import torch

from geosid.geo import haversine_km
from geosid.trainer.baselines import most_popular, nearest_popular
from geosid.trainer.data import Batch
from geosid.trainer.model import (
    OneLoc,
    OneLocConfig,
    dpo_loss,
    dpo_margin,
    ntp_loss,
    preference_accuracy,
    sequence_logprob,
)
from geosid.trainer.rewards import geo_reward, train_gmv_model
from geosid.trainer.search import (
    SIDTrie,
    beam_search,
    ranking_metrics,
)

TOKEN_SIZES = (6, 5, 4, 3)  # three levels + digit
B, H, F, R = 5, 7, 11, 8


def tiny_items(n=40, seed=0):
    rng = np.random.default_rng(seed)
    tokens = set()
    while len(tokens) < n:
        tokens.add(tuple(int(rng.integers(0, s)) for s in TOKEN_SIZES))
    return np.array(sorted(tokens))


def batch(seed=0, b=B, items=None):
    g = torch.Generator().manual_seed(seed)
    items = tiny_items() if items is None else items
    target = torch.as_tensor(items[torch.randint(0, len(items), (b,), generator=g).numpy()])
    kind = torch.randint(0, 3, (b, H), generator=g)
    kind[:, 0] = 1  # at least one event
    return (
        Batch.zeros(n=b, H=H, T=len(TOKEN_SIZES), F=F, R=R)
        .tensors()
        .replace(
            hist_codes=torch.stack([torch.randint(0, s, (b, H), generator=g) for s in TOKEN_SIZES], -1),
            hist_item_emb=torch.randint(0, 12, (b, H), generator=g),
            hist_hour=torch.randint(1, 169, (b, H), generator=g),
            hist_age=torch.randint(1, 25, (b, H), generator=g),
            hist_visits=torch.randint(1, 7, (b, H), generator=g),
            hist_trans=torch.randint(0, 7, (b, H), generator=g),
            request_hour=torch.randint(1, 169, (b,), generator=g),
            hist_cell=torch.randint(0, 10, (b, H), generator=g),
            hist_ctx=torch.rand(b, H, F, generator=g),
            hist_kind=kind,
            user_cell=torch.randint(1, 10, (b,), generator=g),
            user_ctx=torch.rand(b, F, generator=g),
            nbr_cell=torch.randint(0, 10, (b, R), generator=g),
            nbr_ctx=torch.rand(b, R, F, generator=g),
            target=target,
            hist_routine=torch.randint(0, 7, (b, H), generator=g),  # drawn last: the other draws stay as they were
            hist_routine_week=torch.randint(0, 7, (b, H), generator=g),
        )
    )


def model(**kwargs):
    torch.manual_seed(0)
    return OneLoc(OneLocConfig.sized("tiny", token_sizes=TOKEN_SIZES, n_cells=10, n_behaviors=2, n_items=12, **kwargs)).eval()


@pytest.mark.parametrize("variant", [{}, {"location_scores": False}, {"location_gate": False}, {"prompt": "pointwise"}, {"prompt": "mlp"}])
def test_shapes_for_every_ablation(variant):
    m = model(**variant)
    x = batch()
    logits = m(x)
    assert [tuple(lg.shape) for lg in logits] == [(B, s) for s in TOKEN_SIZES]
    memory, valid, prompt, gates = m.encode(x)
    assert memory.shape == (B, H, 64) and prompt.shape == (B, 1, 64) and valid.shape == (B, H)
    assert torch.isfinite(ntp_loss(logits, x.target))


def test_gate_lies_in_zero_two():
    m = model()
    with torch.no_grad():
        for block in m.encoder:  # push the gate's pre-activation to extremes
            block.attn.gate[-1].bias.fill_(30.0)
        _, _, _, high = m.encode(batch())
        for block in m.encoder:
            block.attn.gate[-1].bias.fill_(-30.0)
        _, _, _, low = m.encode(batch())
    assert all(((g > 0) & (g <= 2)).all() for g in high + low)
    assert all(g.min() > 1.99 for g in high) and all(g.max() < 0.01 for g in low)


def test_decoder_never_attends_to_future_tokens():
    m = model()
    x = batch()
    changed = x.replace(target=x.target.clone())
    changed.target[:, 2:] = (changed.target[:, 2:] + 1) % torch.tensor(TOKEN_SIZES[2:])
    with torch.no_grad():
        a, b = m(x), m(changed)
    for k in range(3):  # positions 0..2 see tokens < k only, all unchanged
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert not torch.allclose(a[3], b[3])


def test_padding_events_do_not_change_the_encoding():
    m = model()
    x = batch()
    y = x.replace(**{name: getattr(x, name).clone() for name, a in Batch.arrays().items() if a.model})
    pad = x.hist_kind == 0
    y.hist_codes[pad] = 0
    y.hist_ctx[pad] = 99.0
    y.hist_item_emb[pad] = 7
    with torch.no_grad():
        assert torch.allclose(m(x)[0], m(y)[0], atol=1e-5)


def test_dpo_loss_equals_a_hand_computation():
    pc, pr, rc, rr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0]), torch.tensor([-1.5, -2.5]), torch.tensor([-2.0, -1.5])
    beta = 0.1
    by_hand = [-math.log(1 / (1 + math.exp(-beta * ((a - c) - (b - d))))) for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())]
    assert dpo_loss(pc, pr, rc, rr, beta).item() == pytest.approx(sum(by_hand) / 2, rel=1e-6)


def test_preference_accuracy_counts_ties_half_so_the_reference_scores_one_half():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    assert preference_accuracy(dpo_margin(logp, logp - 1, logp, logp - 1, 0.1)) == 0.5  # policy = reference
    margin = dpo_margin(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0]), torch.tensor([-1.5, -1.5]), torch.tensor([-1.5, -1.5]), 0.5)
    assert margin.tolist() == pytest.approx([0.5, -1.0]) and preference_accuracy(margin) == 0.5
    assert preference_accuracy(torch.tensor([0.1, 0.2, -0.3, 0.0])) == pytest.approx(0.625)


def test_pairs_are_kth_best_against_kth_worst_without_near_ties():
    from geosid.trainer.pairs import select_pairs

    nan = np.nan
    reward = np.array(
        [
            [5.0, 1.0, 3.0, 0.2, 2.0],  # two pairs: 5.0 vs 0.2, 3.0 vs 1.0 (2.0 left alone)
            [1.00, 1.05, nan, nan, nan],  # gap 0.05 < 0.1: a near-tie, dropped
            [2.0, 2.0, 2.0, 2.0, 2.0],  # all tied: no pair
            [4.0, nan, 0.5, nan, nan],  # one pair only (two candidates)
        ]
    )
    row, win, lose = select_pairs(reward, 0.1, 2)
    assert list(zip(row.tolist(), win.tolist(), lose.tolist())) == [(0, 0, 3), (0, 2, 1), (3, 0, 2)]
    row, win, lose = select_pairs(reward, 0.0, 1)
    assert list(zip(row.tolist(), win.tolist(), lose.tolist())) == [(0, 0, 3), (1, 1, 0), (3, 0, 2)]  # the tie row still out
    assert (reward[row, win] > reward[row, lose]).all()


def test_beam_search_returns_only_valid_sids():
    items = tiny_items()
    trie = SIDTrie(items)
    found, scores = beam_search(model(), batch(items=items), trie, beam=10)
    assert found.shape == (B, 10) and (found >= 0).all()
    assert all(len(set(row)) == len(row) for row in found.tolist())  # distinct items
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_tiny_model_overfits_a_tiny_corpus():
    items = tiny_items(n=12)
    x = batch(seed=3, b=12, items=items)
    x = x.replace(target=torch.as_tensor(items))  # 12 requests, 12 distinct targets
    torch.manual_seed(0)
    m = OneLoc(OneLocConfig.sized("tiny", token_sizes=TOKEN_SIZES, n_cells=10, n_behaviors=2))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = ntp_loss(m(x), x.target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first
    found, _ = beam_search(m.eval(), x, SIDTrie(items), beam=3)
    assert (found[:, 0] == np.arange(12)).all()  # every request's top-1 is its own target
    assert sequence_logprob(m(x), x.target).exp().min() > 0.5


def test_ranking_metrics_and_baselines():
    ranked = np.array([[3, 1, 2], [0, 9, 8], [7, 7, 7]])
    m = ranking_metrics(ranked, np.array([1, 0, 5]), ks=(1, 3))
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1) / 3)
    # the next-POI papers' names: Acc@1, and MRR within the list (target 5 is not in it)
    assert m["acc@1"] == pytest.approx(1 / 3) and m["mrr@3"] == pytest.approx((1 / 2 + 1) / 3)
    pop = most_popular(np.array([2, 2, 1, 5, 2, 1]), n=2, k=3)
    assert pop.tolist() == [[2, 1, 5], [2, 1, 5]]
    near = nearest_popular(np.array([4, 4, 6, 2, 2, 2]), np.array([1, 1, 3, 9, 9, 9]), np.array([3, 7]), np.array([[1, 0], [0, 0]]), k=3)
    assert near[0].tolist() == [6, 4, 2] and near[1].tolist() == [2, 4, 6]


def test_geo_reward_and_gmv_model():
    d = haversine_km(40.75, -73.98, 40.76, -73.98)
    assert d == pytest.approx(1.112, abs=0.01)
    assert geo_reward(np.array([0.01, 2.0, 6.0]), max_km=5.0).tolist() == [10.0, 0.5, 0.0]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4)).astype(np.float32)
    gmv = np.expm1(np.clip(2 + x[:, 0] - 0.5 * x[:, 1] + 0.1 * rng.normal(size=2000), 0, None))
    _, metrics = train_gmv_model(x, gmv, epochs=30)
    assert metrics["test_mse_log_gmv"] < 0.2 * metrics["mean_predictor_mse"]


def test_gmv_model_stays_within_the_pays_range_on_unlike_candidates():
    rng = np.random.default_rng(1)
    x = np.c_[rng.normal(size=(500, 2)), np.zeros(500)].astype(np.float32)  # the last feature never varies in train
    gmv = np.expm1(np.clip(3 + x[:, 0], 0, None))
    gmv_model, _ = train_gmv_model(x, gmv, epochs=5)
    far = np.array([[1e4, -1e4, 5.0], [0.0, 0.0, 1e6]], dtype=np.float32)
    predicted = gmv_model.predict_gmv(far)
    assert np.isfinite(predicted).all() and (predicted >= 0).all()
    assert predicted.max() <= gmv.max() * (1 + 1e-5)


def test_copy_head_points_at_history_tokens_consistent_with_the_prefix():
    items = tiny_items()
    m = model(copy_head=True)
    x = batch(items=items)
    logits = m(x)
    assert all(torch.allclose(lp.exp().sum(-1), torch.ones(B), atol=1e-4) for lp in logits)  # log-probabilities
    with torch.no_grad():
        m.copy_gate.bias.fill_(20.0)  # the gate fully open: position 0 is the copy of the history's first tokens
    first = m(x)[0].exp()
    valid = x.hist_kind > 0
    for r in range(B):
        seen = set(x.hist_codes[r, valid[r], 0].tolist())
        assert set(torch.nonzero(first[r] > 1e-6).flatten().tolist()) <= seen
    found, _ = beam_search(m, x, SIDTrie(items), beam=5)  # decodes with the history's codes
    assert (found >= 0).all()
    assert ntp_loss(m(x), x.target).item() > 0


def test_repeat_features_count_visits_and_own_transitions_within_a_behavior():
    from geosid.trainer.data import count_bucket, repeat_features

    assert count_bucket(np.array([0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 500])).tolist() == [0, 1, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    # two behaviors of 3 slots each, oldest first; times order the events across behaviors
    items = np.array([[1, 2, 1, 3, 1, 2], [7, 8, 7, 8, 7, -1]])
    times = np.array([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 0]])
    visits, trans = repeat_features(items, times, block=3)
    assert visits.tolist() == [[3, 2, 3, 1, 3, 2], [3, 2, 3, 2, 3, 0]]
    # row 0: latest is 2 (slot 5); only slot 2 (1) follows a 2 in its behavior -> item 1 once.
    # row 1: latest is 7 (time 5); 8 follows 7 in slot 1; slot 3's 8 follows slot 2's 7 of
    # the other behavior, which is no transition.
    assert trans.tolist() == [[1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 0]]


def test_routine_visits_count_an_items_visits_near_the_requests_hour_of_day():
    from geosid.trainer.data import routine_visits

    # hours of the week + 1: request at 08h on a Tuesday (hour 32 of the week)
    request = np.array([1 + 24 + 8, 1 + 24 + 23])
    items = np.array([[5, 5, 5, 6, 6, -1], [4, 4, 9, 9, 9, 9]])
    hours = np.array(
        [
            [1 + 8, 1 + 48 + 7, 1 + 20, 1 + 9, 1 + 15, 0],  # 5: 08h Mon, 07h Wed (both near), 20h; 6: 09h (near), 15h
            [1 + 0, 1 + 22, 1 + 12, 1 + 13, 1 + 14, 1 + 150],  # request at 23h: 00h and 22h wrap around midnight
        ]
    )
    counts = routine_visits(items, hours, request, window=1)
    assert counts.tolist() == [[2, 2, 2, 1, 1, 0], [2, 2, 0, 0, 0, 0]]
    assert routine_visits(items, hours, request, window=0).tolist() == [[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]]
    # weekly: item 5 on Tuesday 07h and 09h (near), Monday 20h; item 6 on Tuesday 09h (near), Monday 00h
    weekly = routine_visits(items, np.array([[1 + 24 + 7, 1 + 24 + 9, 1 + 20, 1 + 24 + 9, 1, 0], hours[1]]), request, window=1, weekly=True)
    assert weekly.tolist() == [[2, 2, 2, 1, 1, 0], [0, 0, 0, 0, 0, 0]]
    assert routine_visits(items, hours, request, window=1, weekly=True)[0].tolist() == [0] * 6  # Monday 08h is a day off
    monday_midnight = routine_visits(np.array([[3, 3]]), np.array([[1 + 167, 1 + 0]]), np.array([1 + 0]), window=1, weekly=True)
    assert monday_midnight.tolist() == [[2, 2]]  # Sunday 23h is an hour before Monday 00h


def test_routine_prior_moves_the_copy_toward_the_habitual_item_of_the_hour():
    from geosid.trainer.data import COUNT_BUCKETS

    m = model(copy_head=True)
    x = batch()
    x = x.replace(hist_routine=torch.zeros_like(x.hist_routine))
    x = x.replace(hist_routine_week=torch.zeros_like(x.hist_routine))
    x.hist_routine[:, 0] = 2  # slot 0's item is the user's venue at this time of day
    with torch.no_grad():
        m.copy_gate.bias.fill_(20.0)
        before = m(x)[0].exp()
        m.routine_prior_emb.weight[2 * COUNT_BUCKETS] = 30.0
        after = m(x)[0].exp()
    first_tokens = x.hist_codes[:, 0, 0]
    rows = torch.arange(B)
    assert (after[rows, first_tokens] > 0.99).all() and (after[rows, first_tokens] > before[rows, first_tokens]).all()
    off = model(copy_head=True, routine_features=False)
    assert not hasattr(off, "routine_emb")


def test_own_transition_feature_marks_what_the_user_markov_rule_ranks_first():
    from geosid.trainer.baselines import markov_user, transitions
    from geosid.trainer.data import repeat_features

    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 13, 200)
    items = np.where(np.arange(12)[None, :] < lengths[:, None], rng.integers(0, 6, (200, 12)), -1)  # left-aligned
    _, trans = repeat_features(items, np.cumsum(np.ones_like(items), 1), block=12)
    ranked = markov_user(items, np.arange(6), k=6)
    for row, t, top in zip(items, trans, ranked[:, 0]):
        history = row[row >= 0].tolist()
        if not history:
            continue
        own = transitions(np.array(history[:-1]), np.array(history[1:])).get(history[-1], [])
        marked = set(row[t > 0].tolist())
        assert marked == set(own)
        if own:
            assert top in marked and t[row == top].max() == t.max()


def test_copy_prior_moves_the_copy_toward_the_own_transition_item():
    from geosid.trainer.data import COUNT_BUCKETS

    m = model(copy_head=True)
    x = batch()
    x = x.replace(hist_trans=torch.zeros_like(x.hist_trans))
    x.hist_trans[:, 0] = 1  # slot 0's item followed the latest item once
    with torch.no_grad():
        m.copy_gate.bias.fill_(20.0)
        before = m(x)[0].exp()
        m.copy_prior_emb.weight.view(COUNT_BUCKETS, COUNT_BUCKETS)[:, 1] = 30.0
        after = m(x)[0].exp()
    first_tokens = x.hist_codes[:, 0, 0]
    rows = torch.arange(B)
    assert (after[rows, first_tokens] > 0.99).all() and (after[rows, first_tokens] > before[rows, first_tokens]).all()
    assert OneLoc(OneLocConfig.tiger("tiny", token_sizes=TOKEN_SIZES, n_cells=10, n_behaviors=2)).copy_prior(x) is None


def test_transitions_rank_the_next_items_of_the_latest_item_leaving_a_rows_own_out():
    from geosid.trainer.data import Transitions

    # train pairs (latest -> target): 0 -> 5 three times, 0 -> 2 twice, 0 -> 7 once, 1 -> 3 once
    latest = np.array([0, 0, 0, 0, 0, 0, 1, -1])
    target = np.array([5, 5, 5, 2, 2, 7, 3, 4])
    tr = Transitions.count(latest, target, n_items=8, keep=3)
    assert tr.following[0].tolist() == [5, 2, 7] and tr.counts[0].tolist() == [3, 2, 1]
    assert tr.following[1].tolist() == [3, -1, -1] and tr.following[4].tolist() == [-1, -1, -1]
    items, counts = tr.candidates(np.array([0, 1, 2, -1]), None, slots=2)
    assert items.tolist() == [[5, 2], [3, -1], [-1, -1], [-1, -1]] and counts[0].tolist() == [3, 2]
    # leave-one-out: a train row 0 -> 2 sees 2 counted once; a row 1 -> 3 no longer sees 3
    items, counts = tr.candidates(np.array([0, 1]), np.array([2, 3]), slots=2)
    assert items.tolist() == [[5, 2], [-1, -1]] and counts.tolist() == [[3, 1], [0, 0]]
    items, counts = tr.candidates(np.array([0]), np.array([5]), slots=2)  # 5: 3 -> 2, a tie keeps the earlier rank
    assert items.tolist() == [[5, 2]] and counts.tolist() == [[2, 2]]


def test_the_copy_head_can_point_at_a_transition_candidate():
    items = tiny_items()
    m = model(copy_head=True, candidates=True)
    x = batch(items=items)
    M = 3
    x = x.replace(cand_codes=torch.as_tensor(items[:M]).expand(B, M, -1).clone())  # candidates: items 0..2
    x = x.replace(cand_item_emb=torch.ones(B, M, dtype=torch.long))
    x = x.replace(cand_cell=torch.zeros(B, M, dtype=torch.long))
    x = x.replace(cand_ctx=torch.zeros(B, M, F))
    x = x.replace(cand_count=torch.tensor([[2, 1, 0]] * B))  # the third slot is empty
    with torch.no_grad():
        memory, valid, _, _ = m.encode(x)
        assert memory.shape == (B, H + M, 64) and valid[:, H:].tolist() == [[True, True, False]] * B
        m.copy_gate.bias.fill_(20.0)
        m.copy_prior_emb.weight.fill_(-30.0)  # history events: no copy
        m.cand_prior_emb.weight[2] = 30.0  # the most frequent candidate: all of it
        first = m(x)[0].exp()
    assert (first[:, items[0, 0]] > 0.99).all()
    found, _ = beam_search(m, x, SIDTrie(items), beam=3)
    assert (found[:, 0] == 0).all()  # decoded: the candidate item itself


def test_gru_learns_a_next_item_rule_that_needs_the_request_time():
    """History ... a -> (a + 1) at even request hours, (a + 2) at odd ones: the GRU ranks
    it first, so it reads both the sequence and the time (without the hour: <= 50%)."""
    import torch.nn.functional as F

    from geosid.trainer.gru import GRURec, GRURecConfig

    torch.manual_seed(0)
    items, slots = 40, 6
    model = GRURec(GRURecConfig(n_items=items, n_cells=3, max_len=slots, d_model=32, dropout=0.0))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)

    def batch(n):
        start = torch.randint(0, items, (n, 1))
        length = torch.randint(1, slots + 1, (n,))
        seq = (start + torch.arange(slots)) % items  # [n, H]
        kept = torch.arange(slots)[None, :] < length[:, None]
        history = torch.where(kept, seq, torch.full_like(seq, -1))
        side = torch.where(kept, torch.ones_like(seq), torch.zeros_like(seq))  # hour / age / cell 1 where kept
        hour = torch.randint(1, 169, (n,))
        target = (start[:, 0] + length - 1 + 1 + (hour % 2)) % items
        return (history, side, side, side, hour), target

    for _ in range(400):
        inputs, target = batch(64)
        loss = F.cross_entropy(model(*inputs), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    inputs, target = batch(500)
    accuracy = (model(*inputs).argmax(1) == target).float().mean().item()
    assert accuracy > 0.9, accuracy


def test_sasrec_learns_a_next_item_rule():
    """History ... a -> next item (a + 1) mod I: after a few hundred steps SASRec ranks it first."""
    import torch.nn.functional as F

    from geosid.trainer.sasrec import SASRec, SASRecConfig

    torch.manual_seed(0)
    items, slots = 50, 6
    model = SASRec(SASRecConfig(n_items=items, max_len=slots, d_model=32, n_heads=2, layers=1, d_ff=64, dropout=0.0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def batch(n):
        start = torch.randint(0, items, (n, 1))
        length = torch.randint(1, slots + 1, (n,))
        seq = (start + torch.arange(slots)) % items  # [n, H] consecutive items
        history = torch.where(torch.arange(slots)[None, :] < length[:, None], seq, torch.full_like(seq, -1))
        target = (start[:, 0] + length) % items
        return history, target

    first_loss = None
    for _ in range(300):
        history, target = batch(64)
        loss = F.cross_entropy(model(history), target)
        first_loss = first_loss if first_loss is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(first_loss - np.log(items)) < 0.5  # starts near uniform, not far above it
    model.eval()
    history, target = batch(500)
    accuracy = (model(history).argmax(1) == target).float().mean().item()
    assert accuracy > 0.9, accuracy
