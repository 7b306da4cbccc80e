"""Quantizers and SID metrics: properties on tiny seeded data."""

import numpy as np
import pytest

from geosid.quantization.kmeans import KMeans
from geosid.quantization.levels import FSQ
from geosid.quantization.metrics import median_pair_distance_km, sid_quality
from geosid.quantization.residual import FSQTraining, KMeansTraining, ResidualKMeans, ResidualKMeansFSQ


def blobs(n_per=3000, d=8, k=4, sigma=0.5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 10, (k, d)).astype(np.float32)
    labels = np.repeat(np.arange(k), n_per)
    return (centers[labels] + rng.normal(0, sigma, (len(labels), d))).astype(np.float32), labels


def embeddings(n=2000, d=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, d)) @ rng.normal(0, 1, (d, d))  # correlated, like real embeddings
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_kmeans_objective_falls_and_assign_shapes(backend):
    x = embeddings()
    km = KMeans(16, 32, niter=15, seed=3, backend=backend, device="cpu")
    final = km.train(x)
    assert km.centroids.shape == (32, 16)
    assert km.obj[0] > final
    dist, idx = km.assign(x)
    assert dist.shape == idx.shape == (2000,) and idx.min() >= 0 and idx.max() < 32
    assert dist.sum() == pytest.approx(final, rel=0.05)


def test_kmeans_trains_on_every_point(capfd):
    # 12,000 points: faiss's default would train one centroid on a sample of 256 of them,
    # whose mean misses the full mean by ~0.6 here; with every point it is exact.
    x, _ = blobs()
    km = KMeans(8, 1, niter=2, seed=1, backend="faiss", verbose=True)
    km.train(x)
    assert np.abs(km.centroids[0] - x.mean(0, dtype=np.float64)).max() < 1e-4
    out = capfd.readouterr()
    assert "Sampling a subset" not in out.out + out.err
    sampled = KMeans(8, 4, niter=2, seed=1, backend="faiss", sample_size=1000)
    sampled.train(x)  # an explicit sample is ours, drawn before faiss sees the data
    assert "Sampling a subset" not in "".join(capfd.readouterr())


def test_kmeans_sample_is_explicit_and_reproducible():
    x, _ = blobs()
    a = KMeans(8, 4, seed=1, sample_size=500, backend="faiss")
    b = KMeans(8, 4, seed=1, sample_size=500, backend="faiss")
    a.train(x), b.train(x)
    assert np.array_equal(a.centroids, b.centroids)
    full = KMeans(8, 4, seed=1, backend="faiss")
    full.train(x)
    assert not np.array_equal(a.centroids, full.centroids)


def test_residual_error_falls_level_by_level_and_with_more_codes():
    x = embeddings()
    rq = ResidualKMeans(16, codes=(16, 16, 16), training=KMeansTraining(niter=10, seed=0))
    rq.train(x)
    assert rq.level_mse[0] > rq.level_mse[1] > rq.level_mse[2]
    bigger = ResidualKMeans(16, codes=(64, 64, 64), training=KMeansTraining(niter=10, seed=0))
    bigger.train(x)
    assert bigger.level_mse[-1] < rq.level_mse[-1]
    dist, codes = rq.assign(x)
    assert codes.shape == (2000, 3) and codes.dtype == np.int32
    assert dist.mean() == pytest.approx(rq.level_mse[-1], rel=1e-3)


def test_residual_is_deterministic_and_round_trips_through_save(tmp_path):
    x = embeddings()
    a = ResidualKMeans(16, codes=(8, 8), training=KMeansTraining(niter=5, seed=7))
    b = ResidualKMeans(16, codes=(8, 8), training=KMeansTraining(niter=5, seed=7))
    a.train(x), b.train(x)
    assert np.array_equal(a.encode(x), b.encode(x))
    a.save(tmp_path / "rq.npz")
    loaded = ResidualKMeans.load(tmp_path / "rq.npz")
    assert np.array_equal(loaded.encode(x), a.encode(x))
    assert np.allclose(loaded.decode(a.encode(x)), a.decode(a.encode(x)))


def test_fsq_two_level_channels_stay_finite():
    import torch

    fsq = FSQ((8, 2))
    values, digits = fsq.quantize(torch.randn(1000, 2) * 2)
    assert torch.isfinite(values).all()
    assert set(digits[:, 1].tolist()) == {0, 1} and set(digits[:, 0].tolist()) == set(range(8))


def test_fsq_codes_round_trip():
    fsq = FSQ((8, 5, 5, 5))
    assert fsq.size == 1000
    digits = np.stack(np.meshgrid(*[np.arange(level) for level in fsq.levels], indexing="ij"), -1).reshape(-1, 4)
    codes = fsq.digits_to_codes(digits)
    assert sorted(codes.tolist()) == list(range(1000))
    assert np.array_equal(fsq.codes_to_digits(codes), digits)
    import torch

    values, got = fsq.quantize(torch.randn(500, 4) * 3)
    assert values.abs().max() <= 1.0 + 1e-6
    assert all(0 <= int(got[:, i].min()) and int(got[:, i].max()) < level for i, level in enumerate(fsq.levels))


def test_fsq_last_level_lowers_error_and_round_trips(tmp_path):
    x = embeddings()
    q = ResidualKMeansFSQ(
        16,
        codes=(16, 16),
        fsq_levels=(4, 4, 4),
        training=KMeansTraining(niter=10, seed=0),
        fsq_training=FSQTraining(epochs=60, lr=0.02, batch_size=512),
    )
    q.train(x)
    assert q.level_mse[2] < q.level_mse[1] < q.level_mse[0]
    codes = q.encode(x)
    assert codes.shape == (2000, 3) and codes[:, 2].max() < 64
    q.save(tmp_path / "fsq.npz")
    loaded = ResidualKMeansFSQ.load(tmp_path / "fsq.npz")
    assert np.array_equal(loaded.encode(x), codes)


def test_metrics_on_hand_built_codes():
    codes = np.array([[0, 0], [0, 0], [0, 1], [1, 2]])
    m = sid_quality(codes, (2, 4))
    assert m["sids"] == 3
    assert m["conflict_rate"] == pytest.approx(0.25)
    assert m["exclusive_rate"] == pytest.approx(2 / 3)
    assert m["items_alone_rate"] == pytest.approx(0.5)
    assert m["largest_bucket"] == 2
    assert m["code_usage"] == [1.0, 0.75]
    p = np.array([0.75, 0.25])
    assert m["perplexity"][0] == pytest.approx(np.exp(-(p * np.log(p)).sum()))


def test_geo_coherence_on_known_distances():
    # group 0: two points 1 degree of latitude apart (111.2 km); group 1: one point
    lat, lon = np.array([0.0, 1.0, 50.0]), np.array([0.0, 0.0, 0.0])
    assert median_pair_distance_km(np.array([0, 0, 1]), lat, lon, 100, 0) == pytest.approx(111.19, rel=1e-3)
    assert median_pair_distance_km(np.array([0, 1, 2]), lat, lon, 100, 0) is None


def test_geo_prefix_first_digit_is_spatial(tmp_path):
    from geosid.quantization.geo_prefix import GeoPrefixTokenizer

    rng = np.random.default_rng(0)
    x = embeddings()
    # three cities far apart (2/3 of random pairs cross cities); the first digit must separate them
    city = rng.integers(0, 3, len(x))
    lat = np.array([40.7, 35.7, 51.5])[city] + rng.normal(0, 0.05, len(x))
    lon = np.array([-74.0, 139.7, -0.1])[city] + rng.normal(0, 0.05, len(x))
    tok = GeoPrefixTokenizer(16, codes=(3, 8, 8), training=KMeansTraining(niter=10, seed=0))
    tok.train(x, lat=lat, lon=lon)
    codes = tok.encode(x, lat=lat, lon=lon)
    assert codes.shape == (2000, 3)
    assert len({(c, r) for c, r in zip(city, codes[:, 0])}) == 3  # one region per city
    m = sid_quality(codes, (3, 8, 8), lat, lon)
    assert m["geo_coherence_l1_km"] < 50 < m["geo_baseline_km"]
    tok.save(tmp_path / "geo.npz")
    assert np.array_equal(GeoPrefixTokenizer.load(tmp_path / "geo.npz").encode(x, lat=lat, lon=lon), codes)


def test_conflict_floor_counts_identical_documents_once():
    from geosid.quantization.metrics import conflict_floor

    x = np.array([[0.6, 0.8], [0.6, 0.8 + 1e-7], [0.8, 0.6], [1.0, 0.0]], np.float32)
    assert conflict_floor(x) == pytest.approx(0.25)  # the first two are one document


@pytest.mark.parametrize("kind", ["residual_kmeans", "residual_kmeans_fsq"])
def test_capacity_aware_costs_and_codes_do_not_depend_on_the_batch(kind):
    """An item's last-level candidates and costs are the same whether it is encoded with
    all items or in small batches (faiss's BLAS distances are not: they move in the last
    bits with the rows beside them, and the capacity-aware order follows the costs), so a
    rebuild on another file layout gives the same SIDs."""
    x = embeddings(n=3000, d=32, seed=4)
    if kind == "residual_kmeans":
        q = ResidualKMeans(32, codes=(8, 8, 16), training=KMeansTraining(niter=8, seed=1), capacity_aware=True)
    else:
        q = ResidualKMeansFSQ(
            32,
            codes=(8, 8),
            fsq_levels=(4, 4),
            training=KMeansTraining(niter=8, seed=1),
            fsq_training=FSQTraining(epochs=20, batch_size=512),
            capacity_aware=True,
        )
    q.train(x)
    prefix, candidates, cost = q.encode_candidates(x)
    parts = [q.encode_candidates(x[start : start + 7]) for start in range(0, 700, 7)]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), prefix[:700])
    assert np.array_equal(np.concatenate([p[1] for p in parts]), candidates[:700])
    assert np.array_equal(np.concatenate([p[2] for p in parts]), cost[:700])  # bit for bit
    assert np.all(np.diff(cost, axis=1) >= 0)  # still best first
    assert np.array_equal(q.encode(x), q.encode(x.copy()))
