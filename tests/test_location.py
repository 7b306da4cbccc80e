"""Geo-aware item vectors and capacity-aware assignment: the location encoding's scales,
the floor on fused vectors, a last level that keeps code tuples for one item each."""

import numpy as np
import pytest

from geosid.embedding.location import LocationEncoder
from geosid.geo import haversine_km, offset_km
from geosid.quantization.assignment import resolve_last_level, tuple_keys
from geosid.quantization.metrics import conflict_floor, sid_quality
from geosid.quantization.residual import FSQTraining, KMeansTraining, ResidualKMeans, ResidualKMeansFSQ

LAT, LON = 40.7580, -73.9855  # Times Square


def cosine(a, b):
    return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))


def test_location_encoding_tells_100_m_apart_and_keeps_5_m_together():
    encoder = LocationEncoder(weight=0.4)
    near_lat, near_lon = offset_km(LAT, LON, 0.005, 0.0)  # 5 m east
    far_lat, far_lon = offset_km(LAT, LON, 0.0, 0.1)  # 100 m north
    assert haversine_km(LAT, LON, far_lat, far_lon) == pytest.approx(0.1, rel=0.01)
    loc = encoder.encode(np.array([LAT, near_lat, far_lat]), np.array([LON, near_lon, far_lon]))
    assert loc.shape == (3, encoder.dim) and np.allclose(np.linalg.norm(loc, axis=1), 1.0, atol=1e-5)
    assert cosine(loc[0], loc[1]) > 0.97
    assert cosine(loc[0], loc[2]) < 0.75
    # two cafés with the same document: their fused vectors follow their places
    text = np.tile(np.random.default_rng(0).normal(size=(1, 384)).astype(np.float32), (3, 1))
    fused = encoder.fuse(text, [LAT, near_lat, far_lat], [LON, near_lon, far_lon])
    assert fused.shape == (3, 384 + encoder.dim) and np.allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    assert cosine(fused[0], fused[1]) > 0.99 > 0.9 > cosine(fused[0], fused[2])
    # 5 km apart the coarse scales differ too
    town_lat, town_lon = offset_km(LAT, LON, 5.0, 0.0)
    assert cosine(loc[0], encoder.encode([town_lat], [town_lon])[0]) < cosine(loc[0], loc[2])


def test_every_parameter_enters_the_encoder_id():
    base = LocationEncoder()
    ids = {
        base.encoder_id,
        LocationEncoder(weight=0.3).encoder_id,
        LocationEncoder(directions=4).encoder_id,
        LocationEncoder(wavelengths_km=(0.1, 1.0)).encoder_id,
        LocationEncoder(seed=1).encoder_id,
    }
    assert len(ids) == 5 and base.encoder_id == LocationEncoder().encoder_id
    with pytest.raises(ValueError, match="weight"):
        LocationEncoder(weight=1.5)


def test_the_floor_on_fused_vectors_counts_only_co_located_same_content_items():
    rng = np.random.default_rng(1)
    text = rng.normal(size=(4, 16)).astype(np.float32)
    docs = np.repeat(text, 50, axis=0)  # 4 documents, 50 items each (a category-only catalog)
    lat, lon = offset_km(np.full(200, LAT), np.full(200, LON), rng.uniform(-3, 3, 200), rng.uniform(-3, 3, 200))
    lat[1], lon[1] = lat[0], lon[0]  # one truly co-located pair with the same document
    assert conflict_floor(docs) == pytest.approx(1 - 4 / 200)
    assert conflict_floor(LocationEncoder().fuse(docs, lat, lon)) == pytest.approx(1 / 200)


def test_capacity_aware_assignment_keeps_one_item_per_code_tuple_where_it_can():
    sizes = (2, 4)
    prefix = np.array([[0], [0], [0], [1], [1], [1], [1], [1]])
    # every item of prefix 0 wants code 2 first; prefix 1 has 5 items for 4 codes
    candidates = np.array([[2, 1, 3, 0]] * 3 + [[0, 1, 2, 3]] * 5)
    cost = np.tile(np.arange(4.0), (8, 1)) + np.arange(8)[:, None] * 0.01
    last = resolve_last_level(prefix, candidates, cost, sizes)
    assert last[:3].tolist() == [2, 1, 3]  # the nearest keeps it, the others take their next-nearest
    keys = tuple_keys(np.stack([prefix[:, 0], last], 1), sizes)
    assert len(set(keys[:3])) == 3 and len(set(keys[3:])) == 4  # capacity 4: exactly one collision
    # codes already taken (an index's earlier items) are avoided: two free codes remain
    # for three items, so the two nearest get them and the third shares its nearest
    taken = np.array([[0, 2], [0, 1]])
    again = resolve_last_level(prefix[:3], candidates[:3], cost[:3], sizes, taken)
    assert again.tolist() == [3, 0, 2]
    # deterministic
    assert np.array_equal(resolve_last_level(prefix, candidates, cost, sizes), last)


@pytest.mark.parametrize("cls", [ResidualKMeans, ResidualKMeansFSQ])
def test_capacity_aware_tokenizers_are_deterministic_and_round_trip(cls, tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    kwargs = {"fsq_training": FSQTraining(epochs=20, batch_size=512), "fsq_levels": (4, 4, 4)} if cls is ResidualKMeansFSQ else {}
    codes = (8, 8) if cls is ResidualKMeansFSQ else (8, 8, 64)
    plain = cls(16, codes, training=KMeansTraining(niter=5, seed=3), **kwargs)
    aware = cls(16, codes, training=KMeansTraining(niter=5, seed=3), capacity_aware=True, candidates=64, **kwargs)
    plain.train(x), aware.train(x)
    nearest, assigned = plain.encode(x), aware.encode(x)
    assert np.array_equal(nearest[:, :-1], assigned[:, :-1])  # the prefix is the nearest codes'
    before, after = sid_quality(nearest, plain.level_sizes), sid_quality(assigned, aware.level_sizes)
    assert after["conflict_rate"] < before["conflict_rate"] / 2 and after["exclusive_rate"] > before["exclusive_rate"]
    # no prefix that had room holds a collision
    prefix_keys = tuple_keys(assigned[:, :-1], aware.level_sizes[:-1])
    per_prefix = np.bincount(prefix_keys)
    collided = tuple_keys(assigned, aware.level_sizes)
    _, inverse, counts = np.unique(collided, return_inverse=True, return_counts=True)
    if cls is ResidualKMeans:  # every code a candidate: only a prefix holding more items than codes shares
        assert np.all(per_prefix[prefix_keys[counts[inverse] > 1]] > 64)
    assert np.array_equal(aware.encode(x), assigned)
    aware.save(tmp_path / "aware.npz")
    loaded = cls.load(tmp_path / "aware.npz")
    assert loaded.capacity_aware and np.array_equal(loaded.encode(x), assigned)
    # new items avoid the tuples earlier items hold
    fresh = loaded.encode(x[:50], taken=assigned)
    held = set(collided.tolist())
    moved = [k for k in tuple_keys(fresh, aware.level_sizes).tolist() if k in held]
    assert len(moved) < 50
