"""What a raw source is, in one place: its feeds and their parsers, how bronze.items is
derived, the shape of its training corpus, and where its raw files are by default.

Everything else (ingest, the corpus job, the CLI, the DAGs' parameters) asks this
registry; an unknown source fails with the list of known ones. Parsers are named as
`module:function` and imported on use, so reading the registry (a DAG file does, to
list the sources) imports no engine.

Adding a source: write its parser(s) (landed lines -> candidate rows with `reason`),
its bronze.items transform, and one `Source` entry below.
"""

from __future__ import annotations

import datetime as dt_
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from geosid.errors import NotFoundError, UnknownNameError
from geosid.schemas.bronze import ACTIONS
from geosid.sources.landing import drop_days, last_day_of_file

# The shipped real data, relative to a checkout: ../shared/data beside the repo.
_REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_TSMC_FILE = _REPO_ROOT.parent / "shared" / "data" / "foursquare_nyc" / "dataset_TSMC2014_NYC.subset.txt.gz"


def _resolve(reference: str) -> Callable:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Feed:
    """One raw feed: where its files are under the source path, how to decode and parse them."""

    name: str  # recorded as bronze.rejects.source
    subdir: str | None  # under the source path; None: the path itself
    encoding: str
    kind: Literal["events", "items"]
    parser: str  # "module:function": landed lines -> candidate rows with reason/detail
    day_of_line: str | None = None  # "module:function": a raw line (bytes) -> its day, or None (whole-history files)

    @property
    def parse(self) -> Callable:
        return _resolve(self.parser)

    def root(self, path: str | Path) -> Path:
        return Path(path) / self.subdir if self.subdir else Path(path)


class BehaviorConfig(BaseModel):
    """One history: the last `max_len` events whose action is in `actions`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    actions: tuple[str, ...]
    max_len: int = Field(gt=0, le=4096)


class CorpusShape(BaseModel):
    """What a source's training rows look like: which events are targets, which
    histories a target carries, and where the user is at request time ("request": the
    request's own location; "previous_event": the cell of the user's previous event)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    target_actions: tuple[str, ...]
    behaviors: tuple[BehaviorConfig, ...]
    location: Literal["request", "previous_event"]

    @model_validator(mode="after")
    def _valid(self) -> CorpusShape:
        if not self.behaviors:
            raise ValueError("at least one behavior is needed")
        names = [b.name for b in self.behaviors]
        if len(set(names)) != len(names):
            raise ValueError(f"behavior names repeat: {names}")
        unknown = ({a for b in self.behaviors for a in b.actions} | set(self.target_actions)) - set(ACTIONS)
        if unknown:
            raise ValueError(f"unknown actions {sorted(unknown)}; bronze actions are {ACTIONS}")
        return self


@dataclass(frozen=True)
class Source:
    name: str  # recorded as bronze.events/items.source
    description: str
    feeds: tuple[Feed, ...]
    items_from: Literal["events", "catalog"]  # bronze.items from accepted events, or from the catalog feed
    items: str  # "module:function" producing bronze.items rows
    corpus: CorpusShape
    has_gmv: bool
    path_setting: str | None = None  # the Settings field holding this source's raw path
    path_env: str | None = None  # ... and its environment variable, named in errors
    shipped_path: Path | None = None  # a copy beside the checkout, used when the setting is unset

    @property
    def make_items(self) -> Callable:
        return _resolve(self.items)

    def feed(self, kind: str) -> Feed | None:
        return next((f for f in self.feeds if f.kind == kind), None)

    def default_path(self, settings=None) -> Path | None:
        """The configured raw path (settings), else the shipped copy when present."""
        configured = getattr(settings, self.path_setting, None) if settings is not None and self.path_setting else None
        if configured is not None:
            return Path(configured)
        if self.shipped_path is not None and self.shipped_path.exists():
            return self.shipped_path
        return None

    def drop_days(self, path: str | Path, marker: str | None) -> dict | None:
        """Per day, each feed's drop (`landing.DropDay`) under `path`; None when the source
        path is a whole-history file (every day it holds has arrived)."""

        if any(Path(f.root(path)).is_file() for f in self.feeds):
            return None
        by_feed = [drop_days(f.root(path), marker) for f in self.feeds]
        days = sorted(set().union(*by_feed))
        return {day: [feed.get(day) for feed in by_feed] for day in days}

    def arrived(self, path: str | Path, marker: str | None) -> dict | None:
        """The days whose drops are complete in every feed, each with its delivery's
        fingerprint (the drops' files: names, sizes, times; a re-delivery changes it);
        None for a whole-history file."""
        drops = self.drop_days(path, marker)
        if drops is None:
            return None
        return {
            day: "[" + ", ".join(d.fingerprint() for d in feeds) + "]"
            for day, feeds in drops.items()
            if all(d is not None and d.complete for d in feeds)
        }

    def complete_through(self, path: str | Path) -> dt_.date | None:
        """A whole-history file's last day (it holds every day up to it, and no later one);
        None for a folder of drops, or a feed that cannot date a raw line."""
        feed = self.feed("events")
        root = feed.root(path) if feed is not None else None
        if root is None or not Path(root).is_file() or feed.day_of_line is None:
            return None
        return last_day_of_file(Path(root), _resolve(feed.day_of_line))

    def has_arrived(self, path: str | Path, marker: str | None, day: dt_.date) -> bool:
        """Whether `day` is complete in `path`: of a whole-history file, any day up to its
        last; of drops, a day whose drop is complete in every feed."""
        complete = self.complete_days(path, marker)
        if complete is not None:
            return day in complete
        last = self.complete_through(path)
        return last is None or day <= last

    def complete_days(self, path: str | Path, marker: str | None) -> set | None:
        """The days whose drops are complete in every feed; None for a whole-history file."""
        arrived = self.arrived(path, marker)
        return None if arrived is None else set(arrived)

    def raw_path(self, path: str | Path | None = None, settings=None) -> Path:
        """`path` when given, else the default; a missing one is a NotFoundError that says
        what to pass."""
        chosen = Path(path) if path else self.default_path(settings)
        if chosen is None:
            hint = f" or set {self.path_env}" if self.path_env else ""
            raise NotFoundError(f"no raw path for source {self.name!r}: pass --path{hint}")
        if not chosen.exists():
            raise NotFoundError(f"raw source {chosen} does not exist (source {self.name!r}): pass an existing file or folder")
        return chosen


_CHECKINS = CorpusShape(
    target_actions=("checkin",),
    behaviors=(BehaviorConfig(name="checkin", actions=("checkin",), max_len=100),),
    location="previous_event",
)
_LOCAL_LIFE = CorpusShape(
    target_actions=("pay",),
    behaviors=(
        BehaviorConfig(name="watch", actions=("watch",), max_len=256),
        BehaviorConfig(name="click", actions=("click",), max_len=32),
        BehaviorConfig(name="pay", actions=("pay",), max_len=10),
    ),
    location="request",
)

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            name="tsmc2014",
            description="Foursquare TSMC2014 check-ins (NYC / TKY files, unchanged; or dt= drops)",
            feeds=(Feed("tsmc2014", None, "latin-1", "events", "geosid.sources.tsmc2014:parse", "geosid.sources.tsmc2014:line_day"),),
            items_from="events",
            items="geosid.sources.tsmc2014:items_from_checkins",
            # Check-ins: every check-in is a target, one history of 100 check-ins, the
            # real-time cell is the previous check-in's (never the target's own).
            corpus=_CHECKINS,
            has_gmv=False,
            path_setting="tsmc_path",
            path_env="GEOSID_TSMC_PATH",
            shipped_path=SHIPPED_TSMC_FILE,
        ),
        Source(
            name="synthetic",
            description="the synthetic local-life world (`geosid synth`): events and catalog drops",
            feeds=(
                Feed("synthetic.events", "events", "utf-8", "events", "geosid.sources.synthetic:parse_events"),
                Feed("synthetic.items", "items", "utf-8", "items", "geosid.sources.synthetic:parse_items"),
            ),
            items_from="catalog",
            items="geosid.sources.synthetic:items_from_catalog",
            # Local life (OneLoc): pays are the targets, histories watch 256 / click 32 /
            # pay 10, the real-time cell is the request's location.
            corpus=_LOCAL_LIFE,
            has_gmv=True,
        ),
    )
}


def source_names() -> list[str]:
    return list(SOURCES)


def get_source(name: str) -> Source:
    """The registry entry of `name`; UnknownNameError lists the known sources."""
    try:
        return SOURCES[name]
    except KeyError:
        raise UnknownNameError(f"unknown source {name!r}; known sources: {', '.join(SOURCES)}") from None
