"""A synthetic local-life world in the OneLoc shape, for what the public check-ins lack.

A city of stores (brands, categories, prices, clustered in districts); short videos tied
to stores; users with home and work anchors and category interests; requests at the
user's real-time location; a watch -> click -> pay funnel whose probabilities fall with
distance and rise with interest; pay events carry GMV. Seeded, deterministic, vectorized.

Raw layout written under `root` (UTF-8, tab-separated, no header, one drop per day):

    events/dt=YYYY-MM-DD/_SUCCESS        written after the day's file: the drop is whole
    events/dt=YYYY-MM-DD/events.tsv.gz   request_id, user_id, item_id, action,
                                         event_time (ISO-8601 UTC, ms), user_lat,
                                         user_lon, gmv (empty unless action = pay)
    items/dt=YYYY-MM-DD/items.tsv.gz     item_id, store_id, brand, category, price,
                                         lat, lon, title, tags (|-separated),
                                         created_at (ISO-8601 UTC, ms)
    users.tsv                            ground truth, not ingested: user_id, home_lat,
                                         home_lon, work_lat, work_lon, top_categories
    manifest.json                        the config, row counts, injected corruptions

The catalog drop of the first day holds the initial catalog; later drops hold the
videos created that day. `corrupt_rate` > 0 injects bad lines of every reject kind
(recorded in manifest.json) to exercise the quarantine. The parsers of this layout are
in `geosid.sources.synthetic`; this module needs no engine.
"""

from __future__ import annotations

import datetime as dt_
import gzip
import io
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from tqdm import tqdm

from geosid.geo.geometry import KM_PER_DEG_LAT, haversine_km, offset_km
from geosid.sources.corruption import corrupt
from geosid.sources.landing import DROP_MARKER

_KEY_STRIDE = np.int64(10**9)  # > any creation time in seconds

# category -> (base price, title words, tags)
CATEGORIES: dict[str, tuple[float, tuple[str, ...], tuple[str, ...]]] = {
    "hotpot": (120.0, ("spicy beef", "mushroom broth", "lamb platter", "tomato soup base"), ("hotpot", "spicy", "group dinner")),
    "coffee": (35.0, ("latte art", "cold brew", "pour-over", "oat flat white"), ("coffee", "cafe", "brunch")),
    "bubble tea": (22.0, ("brown sugar boba", "cheese foam", "fruit tea", "taro milk"), ("milk tea", "dessert", "takeaway")),
    "bbq": (95.0, ("skewers", "grilled ribs", "late night set", "charcoal lamb"), ("bbq", "night snack", "beer")),
    "noodles": (30.0, ("beef noodle", "dan dan", "hand-pulled", "wonton soup"), ("noodles", "lunch", "quick bite")),
    "bakery": (28.0, ("croissant", "sourdough", "egg tart", "cheesecake"), ("bakery", "dessert", "breakfast")),
    "sushi": (150.0, ("omakase", "salmon set", "hand roll", "bento"), ("japanese", "sushi", "date night")),
    "fitness": (200.0, ("trial class", "spin session", "yoga pass", "personal training"), ("gym", "workout", "wellness")),
    "hair salon": (180.0, ("haircut", "color", "perm", "scalp care"), ("beauty", "hair", "salon")),
    "spa": (260.0, ("foot massage", "aroma oil", "hot stone", "couple package"), ("massage", "relax", "wellness")),
    "cinema": (60.0, ("imax night", "double feature", "premiere", "popcorn combo"), ("movie", "entertainment", "weekend")),
    "ktv": (150.0, ("private room", "happy hour", "party package", "late session"), ("karaoke", "party", "friends")),
    "hotel": (480.0, ("city view room", "staycation", "breakfast included", "suite"), ("hotel", "travel", "staycation")),
    "dim sum": (85.0, ("har gow", "siu mai", "morning tea", "char siu bao"), ("cantonese", "brunch", "family")),
    "pizza": (70.0, ("margherita", "wood-fired", "truffle", "slice deal"), ("pizza", "western", "delivery")),
    "flower shop": (110.0, ("rose bouquet", "seasonal box", "sunflowers", "orchid pot"), ("flowers", "gift", "delivery")),
}
BRAND_PREFIX = ("Golden", "Little", "Old", "Happy", "Blue", "Red", "Jade", "Sunny", "Lucky", "Urban", "Maple", "Silver")
BRAND_SUFFIX = ("Dragon", "Corner", "House", "Garden", "Lane", "Workshop", "Kitchen", "Studio", "Harbor", "Story")
TITLE_HOOKS = ("must-try", "hidden gem", "weekend special", "new opening", "limited time", "locals' favourite")


@dataclass(frozen=True)
class WorldConfig:
    """Size and shape of the synthetic world. Events ~ users x requests x watches x days."""

    seed: int = 7
    start_date: str = "2024-01-01"
    n_days: int = 7
    n_users: int = 20_000
    n_stores: int = 3_000
    n_brands: int = 300
    videos_per_store: float = 3.0
    new_video_fraction_per_day: float = 0.02
    requests_per_user_day: float = 1.5
    watches_per_request: float = 5.0
    max_watches_per_request: int = 12
    center_lat: float = 31.2304
    center_lon: float = 121.4737
    city_radius_km: float = 12.0
    n_districts: int = 12
    candidate_radius_km: float = 2.5
    corrupt_rate: float = 0.0

    @property
    def start(self) -> dt_.date:
        return dt_.date.fromisoformat(self.start_date)

    def days(self) -> list[dt_.date]:
        return [self.start + dt_.timedelta(days=i) for i in range(self.n_days)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class _StoreGrid:
    """Stores bucketed on a square km grid, to draw a store near any point in O(1)."""

    def __init__(self, lat: np.ndarray, lon: np.ndarray, center_lat: float, center_lon: float, cell_km: float):
        self.center_lat, self.center_lon, self.cell_km = center_lat, center_lon, cell_km
        cells = self.cell_of(lat, lon)
        self.order = np.argsort(cells, kind="stable")
        self.cells, self.starts, self.counts = np.unique(cells[self.order], return_index=True, return_counts=True)

    def cell_of(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        y = np.floor((lat - self.center_lat) * KM_PER_DEG_LAT / self.cell_km).astype(np.int64)
        x = np.floor((lon - self.center_lon) * KM_PER_DEG_LAT * np.cos(np.radians(self.center_lat)) / self.cell_km).astype(np.int64)
        return (y + 100_000) * 1_000_000 + (x + 100_000)

    def sample(self, lat: np.ndarray, lon: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random store in each point's cell; -1 where the cell is empty."""
        cells = self.cell_of(lat, lon)
        pos = np.searchsorted(self.cells, cells)
        pos_clipped = np.minimum(pos, len(self.cells) - 1)
        found = self.cells[pos_clipped] == cells
        pick = self.starts[pos_clipped] + (rng.random(len(cells)) * self.counts[pos_clipped]).astype(np.int64)
        return np.where(found, self.order[np.minimum(pick, len(self.order) - 1)], -1)


# ---------------------------------------------------------------------------------------
# The world


@dataclass
class World:
    config: WorldConfig
    categories: list[str]
    store_brand: np.ndarray
    store_category: np.ndarray
    store_price: np.ndarray
    store_lat: np.ndarray
    store_lon: np.ndarray
    brand_names: list[str]
    video_store: np.ndarray  # videos sorted by (store, created_day)
    video_created: np.ndarray  # seconds since start_date
    video_title: list[str]
    video_tags: list[str]
    user_home: np.ndarray  # [n_users, 2] lat, lon
    user_work: np.ndarray
    user_interest: np.ndarray  # [n_users, n_categories], rows sum to 1
    user_activity: np.ndarray


def build_world(config: WorldConfig) -> World:
    rng = np.random.default_rng(config.seed)
    categories = list(CATEGORIES)
    n_cat = len(categories)

    # Districts: dense centres around the city centre, with unequal weights.
    d_dx, d_dy = rng.normal(0, config.city_radius_km / 2, (2, config.n_districts))
    d_lat, d_lon = offset_km(np.full(config.n_districts, config.center_lat), np.full(config.n_districts, config.center_lon), d_dx, d_dy)
    d_weight = rng.dirichlet(np.full(config.n_districts, 2.0))

    # Brands: a category each, a price level, Zipf-like popularity.
    brand_category = rng.integers(0, n_cat, config.n_brands)
    brand_price = np.array([CATEGORIES[categories[c]][0] for c in brand_category]) * rng.lognormal(0, 0.35, config.n_brands)
    brand_names = [
        f"{BRAND_PREFIX[i % len(BRAND_PREFIX)]} {BRAND_SUFFIX[(i // len(BRAND_PREFIX)) % len(BRAND_SUFFIX)]}"
        + (f" {i // (len(BRAND_PREFIX) * len(BRAND_SUFFIX)) + 1}" if i >= len(BRAND_PREFIX) * len(BRAND_SUFFIX) else "")
        + f" {categories[brand_category[i]].title()}"
        for i in range(config.n_brands)
    ]
    brand_pop = 1.0 / np.arange(1, config.n_brands + 1) ** 0.8
    brand_pop /= brand_pop.sum()

    # Stores: a brand, a district, a location near the district centre.
    store_brand = rng.choice(config.n_brands, config.n_stores, p=brand_pop)
    store_district = rng.choice(config.n_districts, config.n_stores, p=d_weight)
    s_dx, s_dy = rng.normal(0, 1.2, (2, config.n_stores))
    store_lat, store_lon = offset_km(d_lat[store_district], d_lon[store_district], s_dx, s_dy)
    store_price = brand_price[store_brand] * rng.lognormal(0, 0.1, config.n_stores)
    store_category = brand_category[store_brand]

    # Videos: an initial catalog (at least one per store) plus new videos every day.
    initial = 1 + rng.poisson(max(config.videos_per_store - 1, 0), config.n_stores)
    v_store = [np.repeat(np.arange(config.n_stores), initial)]
    # The initial catalog exists before the first request of day 0 (requests start at 06:00).
    v_created = [rng.integers(0, 6 * 3_600, initial.sum())]
    n_new = int(round(config.new_video_fraction_per_day * initial.sum()))
    for day in range(1, config.n_days):
        v_store.append(rng.integers(0, config.n_stores, n_new))
        v_created.append(day * 86_400 + rng.integers(0, 86_400 - 3_600, n_new))
    video_store, video_created = np.concatenate(v_store), np.concatenate(v_created)
    order = np.lexsort((video_created, video_store))
    video_store, video_created = video_store[order], video_created[order]

    hooks = rng.integers(0, len(TITLE_HOOKS), len(video_store))
    words = rng.integers(0, 4, len(video_store))
    video_title, video_tags = [], []
    for store, hook, word in zip(video_store.tolist(), hooks.tolist(), words.tolist()):
        category = categories[store_category[store]]
        _, dishes, tags = CATEGORIES[category]
        video_title.append(f"{brand_names[store_brand[store]]}: {dishes[word]}, {TITLE_HOOKS[hook]}")
        video_tags.append("|".join((*tags[: 1 + (word % 3)], TITLE_HOOKS[hook])))

    # Users: home and work anchors near district centres, sparse interests, activity.
    home_d = rng.choice(config.n_districts, config.n_users, p=d_weight)
    work_d = rng.choice(config.n_districts, config.n_users, p=d_weight)
    h_dx, h_dy, w_dx, w_dy = rng.normal(0, [[2.0], [2.0], [1.5], [1.5]], (4, config.n_users))
    user_home = np.stack(offset_km(d_lat[home_d], d_lon[home_d], h_dx, h_dy), axis=1)
    user_work = np.stack(offset_km(d_lat[work_d], d_lon[work_d], w_dx, w_dy), axis=1)
    user_interest = rng.dirichlet(np.full(n_cat, 0.3), config.n_users)
    user_activity = rng.lognormal(0, 0.6, config.n_users)
    user_activity /= user_activity.mean()

    return World(
        config,
        categories,
        store_brand,
        store_category,
        store_price,
        store_lat,
        store_lon,
        brand_names,
        video_store,
        video_created,
        video_title,
        video_tags,
        user_home,
        user_work,
        user_interest,
        user_activity,
    )


def _requests(world: World, day: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The day's requests: (user, second of the day, lat, lon) per request."""
    cfg = world.config
    rates = cfg.requests_per_user_day * world.user_activity
    n_req_per_user = rng.poisson(rates)
    req_user = np.repeat(np.arange(cfg.n_users), n_req_per_user)
    n_req = len(req_user)

    # Request time: lunch, dinner and background traffic; ends an hour before midnight
    # so that every funnel step stays inside the day's drop.
    mixture = rng.choice(3, n_req, p=[0.35, 0.4, 0.25])
    seconds = np.where(
        mixture == 0,
        rng.normal(12.5 * 3600, 3600, n_req),
        np.where(mixture == 1, rng.normal(19 * 3600, 4000, n_req), rng.uniform(7 * 3600, 22 * 3600, n_req)),
    )
    seconds = np.clip(seconds, 6 * 3_600, 86_400 - 3_600).astype(np.int64)
    weekday = (world.config.start + dt_.timedelta(days=day)).weekday() < 5
    at_work = weekday & (seconds > 9 * 3600) & (seconds < 18 * 3600)
    anchor = np.where(at_work[:, None], world.user_work[req_user], world.user_home[req_user])
    r_lat, r_lon = offset_km(anchor[:, 0], anchor[:, 1], *rng.normal(0, 0.3, (2, n_req)))
    return req_user, seconds, r_lat, r_lon


def _watches(
    world: World, rng: np.random.Generator, grid: _StoreGrid, req_user: np.ndarray, r_lat: np.ndarray, r_lon: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exposure (watch): candidates near each request, the most interesting ones kept.
    Returns per watch (request index, store, the user's interest in it, slot)."""
    cfg, n_req = world.config, len(req_user)
    width = cfg.max_watches_per_request
    n_watch = np.minimum(1 + rng.poisson(max(cfg.watches_per_request - 1, 0), n_req), width)
    n_cand = 3 * width
    far = rng.random((n_req, n_cand)) < 0.15
    radius = np.where(far, 4 * cfg.candidate_radius_km, cfg.candidate_radius_km)
    c_lat, c_lon = offset_km(
        np.repeat(r_lat[:, None], n_cand, 1),
        np.repeat(r_lon[:, None], n_cand, 1),
        rng.normal(0, 1, (n_req, n_cand)) * radius,
        rng.normal(0, 1, (n_req, n_cand)) * radius,
    )
    store = grid.sample(c_lat.ravel(), c_lon.ravel(), rng).reshape(n_req, n_cand)
    fallback = rng.integers(0, cfg.n_stores, store.shape)
    store = np.where(store >= 0, store, fallback)
    interest = world.user_interest[req_user[:, None], world.store_category[store]]
    score = np.log(interest + 0.02) + rng.gumbel(size=store.shape)
    top = np.argsort(-score, axis=1)[:, :width]
    store = np.take_along_axis(store, top, axis=1)
    interest = np.take_along_axis(interest, top, axis=1)
    keep = np.arange(width)[None, :] < n_watch[:, None]
    w_req = np.nonzero(keep)[0]
    w_store, w_interest = store[keep], interest[keep]
    w_slot = np.nonzero(keep)[1]
    return w_req, w_store, w_interest, w_slot


def _day_events(world: World, day: int, rng: np.random.Generator, grid: _StoreGrid) -> pa.Table:
    """One day of the funnel as an Arrow table (event_time in ms since the epoch)."""
    cfg = world.config
    n_cat = len(world.categories)
    req_user, seconds, r_lat, r_lon = _requests(world, day, rng)
    w_req, w_store, w_interest, w_slot = _watches(world, rng, grid, req_user, r_lat, r_lon)

    # A video of that store that already exists at request time. Videos are sorted by
    # (store, created), so store * BIG + created is one sorted key for all stores.
    req_abs = day * 86_400 + seconds[w_req]
    store_first = np.searchsorted(world.video_store, np.arange(cfg.n_stores))
    video_key = world.video_store * _KEY_STRIDE + world.video_created
    first = store_first[w_store]
    n_avail = np.searchsorted(video_key, w_store * _KEY_STRIDE + req_abs, side="right") - first
    n_avail = np.maximum(n_avail, 1)  # a store's first video may be minutes younger than the request
    w_video = first + (rng.random(len(first)) * n_avail).astype(np.int64)

    w_dist = haversine_km(r_lat[w_req], r_lon[w_req], world.store_lat[w_store], world.store_lon[w_store])
    lift = np.log1p(w_interest * n_cat)
    clicked = rng.random(len(w_req)) < _sigmoid(-2.2 + 1.4 * lift - 0.45 * w_dist)
    paid = clicked & (rng.random(len(w_req)) < _sigmoid(-1.6 + 1.0 * lift - 0.35 * w_dist))

    t_watch = req_abs * 1000 + w_slot * 20_000 + rng.integers(0, 15_000, len(w_req))
    t_click = t_watch + rng.integers(2_000, 30_000, len(w_req))
    t_pay = t_click + rng.integers(30_000, 600_000, len(w_req))
    qty = 1 + rng.poisson(0.5, len(w_req))
    gmv = np.round(world.store_price[w_store] * rng.lognormal(0, 0.3, len(w_req)) * qty, 2)

    parts = []
    for action, mask, times in (("watch", np.ones(len(w_req), bool), t_watch), ("click", clicked, t_click), ("pay", paid, t_pay)):
        idx = np.nonzero(mask)[0]
        parts.append(
            {
                "req": w_req[idx],
                "user": req_user[w_req[idx]],
                "video": w_video[idx],
                "action": np.full(len(idx), {"watch": 0, "click": 1, "pay": 2}[action], np.int8),
                "time": times[idx],
                "lat": r_lat[w_req[idx]],
                "lon": r_lon[w_req[idx]],
                "gmv": np.where(action == "pay", gmv[idx], np.nan),
            }
        )
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((cols["action"], cols["time"]))
    cols = {k: v[order] for k, v in cols.items()}
    epoch_ms = int(dt_.datetime.combine(cfg.start, dt_.time(), tzinfo=dt_.timezone.utc).timestamp() * 1000)
    action_names = pa.array(["watch", "click", "pay"])
    return pa.table(
        {
            "request_id": _prefixed("r", cols["req"] + day * 10_000_000_000),
            "user_id": _prefixed("u", cols["user"]),
            "item_id": _prefixed("v", cols["video"]),
            "action": pc.take(action_names, pa.array(cols["action"].astype(np.int32))),
            "event_time": _iso(cols["time"] + epoch_ms),
            "user_lat": pa.array(np.round(cols["lat"], 6)),
            "user_lon": pa.array(np.round(cols["lon"], 6)),
            "gmv": pa.array(cols["gmv"], from_pandas=True),
        }
    )


def _prefixed(prefix: str, ids: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(ids), pa.string()), "")


def _iso(epoch_ms: np.ndarray) -> pa.Array:
    ts = pa.array(epoch_ms, pa.timestamp("ms", tz="UTC"))
    return pc.strftime(ts, format="%Y-%m-%dT%H:%M:%SZ")


def _catalog_table(world: World, index: np.ndarray) -> pa.Table:
    cfg = world.config
    store = world.video_store[index]
    epoch_ms = int(dt_.datetime.combine(cfg.start, dt_.time(), tzinfo=dt_.timezone.utc).timestamp() * 1000)
    return pa.table(
        {
            "item_id": _prefixed("v", index),
            "store_id": _prefixed("s", store),
            "brand": pa.array([world.brand_names[b] for b in world.store_brand[store]]),
            "category": pa.array([world.categories[c] for c in world.store_category[store]]),
            "price": pa.array(np.round(world.store_price[store], 2)),
            "lat": pa.array(np.round(world.store_lat[store], 6)),
            "lon": pa.array(np.round(world.store_lon[store], 6)),
            "title": pa.array([world.video_title[i] for i in index]),
            "tags": pa.array([world.video_tags[i] for i in index]),
            "created_at": _iso(world.video_created[index] * 1000 + epoch_ms),
        }
    )


def _tsv_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(
        table,
        sink,
        write_options=pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"),
    )
    return sink.getvalue()


def write_world(root: str | Path, config: WorldConfig, *, progress: bool = True) -> dict:
    """Generate the world and write its raw drops under `root` (replaced). Returns the manifest."""

    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    world = build_world(config)
    grid = _StoreGrid(world.store_lat, world.store_lon, config.center_lat, config.center_lon, cell_km=1.0)
    manifest = {"config": asdict(config), "days": {}, "corrupted": {}}
    for day_index, day in enumerate(tqdm(config.days(), desc="synthetic world", unit="day", disable=not progress)):
        rng = np.random.default_rng([config.seed, day_index])
        created_day = world.video_created // 86_400
        catalog = _catalog_table(world, np.flatnonzero(created_day == day_index))
        events = _day_events(world, day_index, rng, grid)
        event_bytes = _tsv_bytes(events)
        corrupted = {}
        if config.corrupt_rate > 0:
            event_bytes, corrupted = corrupt(event_bytes, day, config.corrupt_rate, rng)
        for feed, payload in (("items", _tsv_bytes(catalog)), ("events", event_bytes)):
            out = root / feed / f"dt={day.isoformat()}" / f"{feed}.tsv.gz"
            out.parent.mkdir(parents=True, exist_ok=True)
            with gzip.open(out, "wb", compresslevel=1) as handle:
                handle.write(payload)
            (out.parent / DROP_MARKER).write_bytes(b"")  # the day's drop is whole
        actions = pc.value_counts(events["action"]).to_pylist()
        manifest["days"][day.isoformat()] = {
            "items": catalog.num_rows,
            "events": events.num_rows,
            "lines": event_bytes.count(b"\n"),
            "actions": {a["values"]: a["counts"] for a in actions},
        }
        for kind, n in corrupted.items():
            manifest["corrupted"][kind] = manifest["corrupted"].get(kind, 0) + n
    top = np.argsort(-world.user_interest, axis=1)[:, :3]
    users = pa.table(
        {
            "user_id": _prefixed("u", np.arange(config.n_users)),
            "home_lat": world.user_home[:, 0].round(6),
            "home_lon": world.user_home[:, 1].round(6),
            "work_lat": world.user_work[:, 0].round(6),
            "work_lon": world.user_work[:, 1].round(6),
            "top_categories": ["|".join(world.categories[c] for c in row) for row in top.tolist()],
        }
    )
    (root / "users.tsv").write_bytes(_tsv_bytes(users))
    manifest["totals"] = {
        "events": sum(d["events"] for d in manifest["days"].values()),
        "event_lines": sum(d["lines"] for d in manifest["days"].values()),
        "items": sum(d["items"] for d in manifest["days"].values()),
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
