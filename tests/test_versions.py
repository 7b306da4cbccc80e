"""Codebook versions over time: stability between versions, the aligned re-fit, the SID
migration (with its suite) and drift."""

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from geosid.errors import GateError, InvalidRequestError
from geosid.jobs.embed import run_embed
from geosid.jobs.geo import run_geo
from geosid.jobs.index import CodebookSpec, Gates, assign_sids, fit_candidate, publish, version_metrics, version_row
from geosid.jobs.index.drift import DriftPolicy, refit_advice
from geosid.jobs.index.versions import compare_versions, write_migration
from geosid.jobs.ingest import run_ingest
from geosid.jobs.validate import validate_migration
from geosid.lake import Lake
from geosid.pipeline import refit_request
from geosid.quantization.base import Alignment
from geosid.quantization.geo_prefix import GeoPrefixTokenizer
from geosid.quantization.levels import KMeansTraining
from geosid.quantization.residual import ResidualKMeans, ResidualKMeansFSQ
from geosid.quantization.stability import code_map, stability
from geosid.schemas import index
from geosid.sources.synthetic_world import WorldConfig, write_world

DAY1, DAY2 = "2024-03-01", "2024-03-02"
SPEC = CodebookSpec(method="residual_kmeans", codes=(16, 16, 16), niter=10, capacity_aware=True)


def clustered(n: int, d: int = 8, centres: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)) * 4
    return (c[rng.integers(0, centres, n)] + rng.normal(size=(n, d))).astype(np.float32)


# stability: the figures on codes whose relation is known


def test_renamed_codes_keep_matched_retention_partition_and_neighbours():
    rng = np.random.default_rng(0)
    old = rng.integers(0, 16, (2000, 3))
    perm = rng.permutation(16)
    renamed = perm[old]
    s = stability(old, renamed)
    assert s.level_retention[0] < 0.2 and s.code_retention < 0.05  # raw ids mostly differ
    assert s.level_retention_matched == (1.0, 1.0, 1.0)
    assert s.first_level_ari == pytest.approx(1.0) and s.neighbour_overlap == pytest.approx(1.0)
    m = code_map(old[:, 0], renamed[:, 0])
    assert dict(zip(m.new_code, m.old_code)) == {int(perm[c]): int(c) for c in range(16)} and (m.share == 1.0).all()
    unrelated = stability(old, rng.integers(0, 16, (2000, 3)))
    assert unrelated.first_level_ari < 0.05 and unrelated.neighbour_overlap < 0.1 and unrelated.level_retention_matched[0] < 0.2
    same = stability(old, old, old_sids=np.array(["a"] * 2000), new_sids=np.array(["a"] * 1999 + ["b"]))
    assert same.code_retention == 1.0 and same.sid_retention == pytest.approx(1999 / 2000)


def test_code_map_takes_each_new_codes_majority_old_code():
    old = np.array([0, 0, 1, 1, 1, 2])
    new = np.array([5, 5, 5, 6, 6, 7])
    m = code_map(old, new)
    assert m.new_code.tolist() == [5, 6, 7] and m.old_code.tolist() == [0, 1, 2]
    assert m.items.tolist() == [3, 2, 1] and m.share.tolist() == pytest.approx([2 / 3, 1.0, 1.0])


# the aligned re-fit, on the tokenizer


@pytest.mark.parametrize("cls", [ResidualKMeans, ResidualKMeansFSQ])
def test_aligned_refit_keeps_codes_a_naive_refit_renames(cls):
    x = clustered(3000)
    sizes = (16, 16, 16)
    first = cls.for_budget(8, sizes, KMeansTraining(niter=20, seed=1), capacity_aware=True)
    first.train(x)
    codes = first.encode(x)
    naive = cls.for_budget(8, sizes, KMeansTraining(niter=20, seed=7), capacity_aware=True)
    naive.train(x)
    aligned = cls.for_budget(8, sizes, KMeansTraining(niter=20, seed=7), capacity_aware=True, stickiness=0.1)
    aligned.train(x, align=Alignment(first, codes))
    n, a = stability(codes, naive.encode(x)), stability(codes, aligned.encode(x, prefer=codes))
    assert a.level_retention[0] >= 0.95 and a.level_retention[0] > n.level_retention[0] + 0.5
    assert a.first_level_ari > 0.9 and a.neighbour_overlap > n.neighbour_overlap
    if cls is ResidualKMeans:
        assert a.code_retention >= 0.8 > n.code_retention
    # items the previous version never saw (-1) get codes by the ordinary rules
    fresh = np.full_like(codes, -1)
    assert (aligned.encode(x, prefer=fresh) == aligned.encode(x)).all()


def test_stickiness_trades_a_little_error_for_kept_codes():
    x = clustered(3000, seed=3)
    first = ResidualKMeans(8, (16, 16, 16), KMeansTraining(niter=20, seed=1))
    first.train(x)
    codes = first.encode(x)
    x2 = x + np.random.default_rng(5).normal(scale=0.3, size=x.shape).astype(np.float32)  # the items drifted
    kept, errors = [], []
    for stickiness in (0.0, 0.2, 1.0):
        t = ResidualKMeans(8, (16, 16, 16), KMeansTraining(niter=20, seed=2), stickiness=stickiness)
        t.train(x2, align=Alignment(first, codes))
        out = t.encode(x2, prefer=codes)
        kept.append(stability(codes, out).code_retention)
        errors.append(float(((x2 - t.decode(out)) ** 2).sum(1).mean()))
    assert kept[0] < kept[1] < kept[2]
    assert errors[0] <= errors[1] <= errors[2]


def test_tokenizers_that_cannot_align_refuse_preferences():
    x = clustered(400)
    lat, lon = np.full(400, 40.7), np.linspace(-74.0, -73.9, 400)
    geo = GeoPrefixTokenizer(8, (4, 8, 8), KMeansTraining(niter=5))
    geo.train(x, lat=lat, lon=lon)
    with pytest.raises(ValueError, match="cannot prefer"):
        geo.encode(x, lat=lat, lon=lon, prefer=np.zeros((400, 3), np.int64))


def test_specs_without_alignment_record_what_they_always_did():
    """Versions fitted before alignment existed keep their ids: the spec records no new keys."""
    assert set(SPEC.stored()) == {f.name for f in dataclasses.fields(CodebookSpec)} - {"align_to", "stickiness"}
    aligned = dataclasses.replace(SPEC, align_to="cb-x")
    assert aligned.stored()["align_to"] == "cb-x" and aligned.stored()["stickiness"] == SPEC.stickiness
    assert "stickiness" not in ResidualKMeans(8, (4, 4)).params()


# drift


def _drift(ratios, collisions, fit_collision=0.02):
    days = pd.date_range("2024-03-02", periods=len(ratios)).date
    return pd.DataFrame(
        {
            "version": "v",
            "dt": days,
            "new_items": 10,
            "quantization_mse": ratios,
            "fit_mse": 1.0,
            "collision_rate": collisions,
            "fit_collision_rate": fit_collision,
        }
    )


def test_refit_is_advised_only_after_a_sustained_excess():
    policy = DriftPolicy(max_error_ratio=1.25, max_collision_excess=0.05, days=3)
    assert not refit_advice(_drift([], []), "v", policy).advised
    assert not refit_advice(_drift([1.5, 1.5], [0.0, 0.0]), "v", policy).advised  # two days only
    assert not refit_advice(_drift([1.5, 1.1, 1.5], [0.0, 0.0, 0.0]), "v", policy).advised  # not sustained
    assert refit_advice(_drift([1.0, 1.3, 1.4, 1.5], [0.0] * 4), "v", policy).advised
    advice = refit_advice(_drift([1.0, 1.0, 1.0], [0.1, 0.2, 0.09]), "v", policy)
    assert advice.advised and "collisions" in advice.reason


def test_a_refit_the_drift_advised_takes_the_advice_source_and_lake():
    defaults = {"from": None, "to": None, "source": "tsmc2014", "lake": None, "align": True}
    assert refit_request(defaults, []) == defaults  # triggered by hand: the params alone
    advised = [{"dt": "2024-03-01", "source": "tsmc2014", "lake": "/a"}, {"dt": "2024-03-02", "source": "synthetic", "lake": "/b"}]
    request = refit_request(defaults, advised)
    assert (request["source"], request["lake"], request["to"]) == ("synthetic", "/b", None)  # the latest advice; the range is the plan's
    assert refit_request({**defaults, "lake": "/mine"}, advised)["lake"] == "/mine"


# the lake: aligned re-fit, stability gates, migration and its suite, drift rows


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("versions")
    write_world(
        root / "raw", WorldConfig(n_days=2, n_users=300, n_stores=80, n_brands=20, start_date=DAY1, new_video_fraction_per_day=0.2), progress=False
    )
    lake = Lake(root / "lake", spark)
    for day in (DAY1, DAY2):
        run_ingest(lake, "synthetic", root / "raw", day, day, progress=False)
        run_geo(lake, day)
        run_embed(lake, day, progress=False)
    first = fit_candidate(lake, SPEC, DAY1)
    publish(lake, first.codebook_version, DAY1)
    assign_sids(lake, first.codebook_version, DAY2)
    return lake, first.codebook_version


def _map(lake, version):
    return lake.read(index.SID_MAP).filter(F.col("version") == version).select("source", "item_id", "sid").toPandas()


def test_daily_assignment_records_drift_against_the_fit(world):
    lake, v1 = world
    drift = lake.read(index.SID_DRIFT).filter(F.col("version") == v1).toPandas()
    assert list(drift.dt) == [dt.date(2024, 3, 2)]  # days after the fit only
    new = lake.read(index.SID_MAP).filter((F.col("version") == v1) & (F.col("assigned_dt") == dt.date(2024, 3, 2))).toPandas()
    row = drift.iloc[0]
    assert row.new_items == len(new) > 0
    assert row.collision_rate == pytest.approx((new.disambiguation > 0).mean())
    assert row.fit_mse == pytest.approx(version_metrics(version_row(lake, v1))["reconstruction_mse"])
    assert 0 < row.quantization_mse


def test_aligned_refit_migration_and_gates_through_the_lake(world):
    lake, v1 = world
    naive = fit_candidate(lake, dataclasses.replace(SPEC, seed=7), DAY2)
    aligned = fit_candidate(lake, dataclasses.replace(SPEC, seed=7, align_to=v1), DAY2)
    assert naive.reference == aligned.reference == v1  # the naive fit is compared with the version in force
    # a day later, most documents changed (new activity): the aligned re-fit keeps most codes
    assert aligned.stability.level_retention[0] >= 0.9 and aligned.stability.sid_retention >= 0.8
    assert naive.stability.level_retention[0] < 0.5 and naive.stability.sid_retention < 0.05
    assert compare_versions(lake, v1, aligned.codebook_version) == aligned.stability
    stored = lake.read(index.SID_STABILITY).filter(F.col("version") == aligned.codebook_version).collect()
    assert [(r.reference, r.sid_retention) for r in stored] == [(v1, aligned.stability.sid_retention)]

    strict = Gates(min_first_level_retention=0.9, min_sid_retention=0.5)
    with pytest.raises(GateError, match="first-level codes kept"):
        publish(lake, naive.codebook_version, DAY2, strict)
    report = publish(lake, aligned.codebook_version, DAY2, strict)
    assert report.retired == [v1] and report.migration["from_version"] == v1

    old, new = _map(lake, v1), _map(lake, aligned.codebook_version)
    migration = lake.read(index.SID_MIGRATION).filter(F.col("to_version") == aligned.codebook_version).toPandas()
    both = old.merge(new, on=["source", "item_id"], how="outer", suffixes=("_old", "_new"))
    assert len(migration) == len(both) and not migration.duplicated(["source", "item_id"]).any()
    joined = migration.merge(both, on=["source", "item_id"])
    assert (joined.old_sid.fillna("") == joined.sid_old.fillna("")).all() and (joined.new_sid.fillna("") == joined.sid_new.fillna("")).all()
    common = joined.dropna(subset=["sid_old", "sid_new"])
    assert (migration.kind == "kept").sum() == round(aligned.stability.sid_retention * len(common)) == (common.sid_old == common.sid_new).sum()
    assert set(migration.kind) <= {"kept", "moved", "new", "retired"} and (migration.kind == "new").sum() == len(new) - len(common)
    codes = lake.read(index.SID_CODE_MAP).filter(F.col("to_version") == aligned.codebook_version).toPandas()
    assert set(codes.level) == {0, 1, 2} and codes.share.between(0, 1).all()
    assert codes[codes.level == 0]["items"].sum() == len(common)
    assert all(r.success for r in validate_migration(lake, v1, aligned.codebook_version))


def test_the_migration_suite_fails_when_an_item_is_unaccounted_for(world):
    lake, v1 = world
    target = fit_candidate(lake, dataclasses.replace(SPEC, seed=11, align_to=v1), DAY2).codebook_version
    write_migration(lake, target, v1)
    assert all(r.success for r in validate_migration(lake, v1, target))
    lost = lake.read(index.SID_MIGRATION).filter(F.col("to_version") == target).orderBy("item_id").first()
    lake.delete(index.SID_MIGRATION, f"to_version = '{target}' AND item_id = '{lost.item_id}'")
    results = {r.table: r for r in validate_migration(lake, v1, target)}
    assert not results["index.sid_migration.accounting"].success
    assert results["index.sid_migration"].success  # what is left is consistent in itself


def test_alignment_is_refused_in_one_line_where_it_cannot_hold(world):
    lake, v1 = world
    with pytest.raises(InvalidRequestError, match="codes"):
        fit_candidate(lake, dataclasses.replace(SPEC, codes=(8, 8, 8), align_to=v1), DAY2)
    with pytest.raises(InvalidRequestError, match="method"):
        fit_candidate(lake, dataclasses.replace(SPEC, method="residual_kmeans_fsq", align_to=v1), DAY2)


# the downstream model: a warm start through the code map


def _vocab(items: list[str], cells: list[str], sizes: tuple[int, ...]):
    from geosid.trainer.data import Vocab

    n = len(items)
    vocab = Vocab(
        item_ids=np.array(items),
        tokens=np.zeros((n, len(sizes)), np.int64),
        item_lat=np.zeros(n),
        item_lon=np.zeros(n),
        item_cell=np.ones(n, np.int64),
        token_sizes=sizes,
        cells=pd.Index(cells),
        cell_centres=np.zeros((len(cells) + 1, 2)),
    )
    vocab.set_item_embeddings(np.full(n, 5), 1)
    return vocab


def _model(vocab, seed: int):
    import torch

    from geosid.trainer.model import OneLoc, OneLocConfig

    torch.manual_seed(seed)
    cfg = OneLocConfig.sized("tiny", token_sizes=vocab.token_sizes, n_cells=len(vocab.cells), n_behaviors=1, n_items=vocab.n_item_embeddings)
    return OneLoc(cfg)


def test_warm_start_remaps_sid_item_and_cell_rows_and_copies_the_rest():
    import torch

    from geosid.trainer.warm_start import warm_start

    sizes = (4, 4, 3)  # two levels of 4 codes, then digits 0..2
    old_vocab = _vocab(["a", "b", "c"], ["c1", "c2"], sizes)
    new_vocab = _vocab(["c", "d", "a"], ["c2", "c3"], (4, 4, 2))
    old, new = _model(old_vocab, 0), _model(new_vocab, 1)
    fresh = {k: v.clone() for k, v in new.state_dict().items()}
    maps = [np.array([2, 0, 1, -1]), np.arange(4)]  # level 0: new code 0 <- old 2, 1 <- 0, 2 <- 1, 3 had no items before
    report = warm_start(new, new_vocab, old, old_vocab, maps)
    o, n = old.state_dict(), new.state_dict()
    for name in ("code_emb.0.weight", "tok_emb.0.weight", "heads.0.weight"):
        assert torch.equal(n[name][:3], o[name][[2, 0, 1]]) and torch.equal(n[name][3], fresh[name][3])
    assert torch.equal(n["heads.0.bias"][:3], o["heads.0.bias"][[2, 0, 1]])
    assert torch.equal(n["code_emb.1.weight"], o["code_emb.1.weight"])
    assert torch.equal(n["code_emb.2.weight"], o["code_emb.2.weight"][:2])  # the digits both have
    # items by id: c (old row 4) and a (old row 2) keep theirs, d is new
    new_rows = dict(zip(new_vocab.item_ids, new_vocab.item_embed))
    assert torch.equal(n["item_emb.weight"][new_rows["c"]], o["item_emb.weight"][4])
    assert torch.equal(n["item_emb.weight"][new_rows["a"]], o["item_emb.weight"][2])
    assert torch.equal(n["item_emb.weight"][new_rows["d"]], fresh["item_emb.weight"][new_rows["d"]])
    assert torch.equal(n["cell_emb.weight"][1], o["cell_emb.weight"][2])  # c2
    assert torch.equal(n["cell_emb.weight"][2], fresh["cell_emb.weight"][2])  # c3 is new
    assert torch.equal(n["encoder.0.attn.qkv.weight"], o["encoder.0.attn.qkv.weight"])  # the same shape: copied
    assert not torch.equal(fresh["encoder.0.attn.qkv.weight"], o["encoder.0.attn.qkv.weight"])
    assert report.remapped["code_emb.0.weight"] == pytest.approx(0.75) and "encoder.0.attn.qkv.weight" in report.copied


def test_adjusted_rand_index_of_a_known_pair_of_partitions():
    from geosid.quantization.stability import adjusted_rand

    # {0,1,2}{3,4,5} against {0,1}{2,3}{4,5}: index 2 pairs, expected 6*3/15, max 4.5
    assert adjusted_rand(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 1, 1, 2, 2])) == pytest.approx((2 - 1.2) / (4.5 - 1.2))
