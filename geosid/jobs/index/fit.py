"""Fitting a candidate codebook version on the items known on a logical date (see
inputs): the version id hashes the parameters, the model / template, the date and the
content of that training set, so the same inputs give the same version. Backfill gives a
version's SIDs over a range of days, in order.
"""

from __future__ import annotations

import datetime as dt_
import hashlib
import json
import time
from dataclasses import dataclass, field

from geosid.errors import ImmutableVersionError, InvalidRequestError
from geosid.jobs.index.assign import AssignReport, assign_sids
from geosid.jobs.index.inputs import TrainingSet, load_training_set
from geosid.jobs.index.registry import (
    DEFAULT_TEMPLATE,
    CodebookSpec,
    as_json,
    codebook_rows,
    codebook_versions,
    default_codes,
    load_tokenizer,
    published_version,
    version_metrics,
    version_row,
)
from geosid.jobs.index.report import version_fit_seconds
from geosid.jobs.index.versions import preferred_codes, previous_matrix, write_stability
from geosid.lake import Lake, as_date
from geosid.quantization.base import Alignment, Tokenizer
from geosid.quantization.metrics import conflict_floor, sid_quality
from geosid.quantization.stability import Stability
from geosid.schemas import index, silver


def version_id(params: dict, data: TrainingSet) -> str:
    payload = json.dumps(
        {"params": params, "model": data.model_id, "template": data.template_id, "as_of": data.as_of.isoformat(), "training_set": data.digest()},
        sort_keys=True,
    )
    return "cb-" + hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass
class FitReport:
    codebook_version: str
    method: str
    level_sizes: tuple[int, ...]
    n_items: int
    metrics: dict
    seconds: float
    fit_seconds: float
    reused: bool = False
    assign: "AssignReport | None" = None
    reference: str | None = None  # the version it was compared with (aligned to, or in force)
    stability: Stability | None = None

    def summary(self) -> str:
        m = self.metrics
        return (
            f"codebook {self.codebook_version} ({self.method}, {' x '.join(map(str, self.level_sizes))} codes) on {self.n_items:,} items: "
            f"conflict {m['conflict_rate']:.2%} (floor {m.get('conflict_floor', 0):.2%}), exclusive {m['exclusive_rate']:.2%}, "
            f"alone {m['items_alone_rate']:.2%}, "
            f"largest bucket {m['largest_bucket']}, fit {self.fit_seconds:.1f}s"
            + (" (stored version, reused)" if self.reused else "")
            + (f"\n  against {self.reference}: {self.stability.summary()}" if self.stability else "")
        )

    def to_dict(self) -> dict:
        return {
            "codebook_version": self.codebook_version,
            "method": self.method,
            "level_sizes": list(self.level_sizes),
            "n_items": self.n_items,
            "metrics": self.metrics,
            "reused": self.reused,
            "seconds": round(self.seconds, 2),
            "stability": None if self.stability is None else {"reference": self.reference, **self.stability.to_dict()},
        }


def fit_candidate(
    lake: Lake,
    spec: CodebookSpec,
    as_of: dt_.date | str,
    model_id: str | None = None,
    template_id: str = DEFAULT_TEMPLATE,
    embeddings_version: int | None = None,
    item_geo_version: int | None = None,
    *,
    reuse_published: bool = False,
) -> FitReport:
    """Fit a candidate version on the pinned training set of `as_of` and write it (see
    module doc).

    The same inputs give the same version id. If that version is already published (or
    retired) it is immutable: this raises ImmutableVersionError, or with
    `reuse_published` returns the stored version's report and writes nothing.
    """
    started = time.perf_counter()
    as_of = as_date(as_of)
    data = load_training_set(lake, as_of, model_id, template_id, embeddings_version, item_geo_version)
    previous = previous_version(lake, spec, data) if spec.align_to else None
    level_sizes = previous.level_sizes if previous else (spec.codes or default_codes(len(data.x)))
    tokenizer = spec.build(data.x.shape[1], tuple(level_sizes))
    params = {**tokenizer.params(), "spec": spec.stored()}
    version = version_id(params, data)
    existing = codebook_versions(lake)
    if version in set(existing.version) and version_row(lake, version)["status"] != "candidate":
        stored = version_row(lake, version)
        if not reuse_published:
            raise ImmutableVersionError(f"codebook version {version} is {stored['status']}: it cannot be re-fitted")
        metrics = version_metrics(stored)
        sizes = tuple(int(v) for v in stored["level_sizes"])
        return FitReport(
            version, spec.label, sizes, int(stored["n_items"]), metrics, time.perf_counter() - started, version_fit_seconds(stored), reused=True
        )
    fit_started = time.perf_counter()
    metrics = train_tokenizer(lake, tokenizer, data, previous, spec.align_to)
    fit_seconds = time.perf_counter() - fit_started
    sizes = tokenizer.level_sizes
    write_candidate(lake, version, spec.label, params, tokenizer, data, metrics, fit_seconds)
    report = FitReport(version, spec.label, sizes, len(data.x), metrics, 0.0, fit_seconds)
    report.assign = assign_sids(lake, version, as_of, tokenizer=tokenizer)
    reference = spec.align_to or published_version(lake, as_of=as_of)
    if reference and reference != version:
        report.stability = write_stability(lake, version, reference, as_of)
        report.reference = reference
    report.seconds = time.perf_counter() - started
    return report


def train_tokenizer(lake: Lake, tokenizer: Tokenizer, data: TrainingSet, previous: Tokenizer | None, align_to: str | None) -> dict:
    """Train on the training set (aligned to `previous`, version `align_to`, when given);
    returns the fit metrics over its items."""
    lat, lon = data.keys.lat.to_numpy(), data.keys.lon.to_numpy()
    if previous is None:
        tokenizer.train(data.x, lat=lat, lon=lon)
        prefer = {}
    else:
        codes = previous_matrix(data.keys, preferred_codes(lake, align_to, data.as_of).toPandas(), tokenizer.levels)
        tokenizer.train(data.x, lat=lat, lon=lon, align=Alignment(previous, codes))
        prefer = {"prefer": codes}
    metrics = sid_quality(tokenizer.encode(data.x, lat=lat, lon=lon, **prefer), tokenizer.level_sizes, lat, lon)
    metrics["reconstruction_mse"] = tokenizer.level_mse[-1] if tokenizer.level_mse else None
    metrics["conflict_floor"] = conflict_floor(data.x)
    return metrics


def write_candidate(
    lake: Lake, version: str, label: str, params: dict, tokenizer: Tokenizer, data: TrainingSet, metrics: dict, fit_seconds: float
) -> None:
    """A candidate's codebooks and version row; its SID map emptied (rebuilt on every fit)."""
    spark = lake.spark
    where = f"version = '{version}'"
    lake.write(codebook_rows(spark, version, tokenizer), index.CODEBOOKS, where=where)
    row = (
        version,
        label,
        "candidate",
        as_json(params),
        list(tokenizer.level_sizes),
        data.model_id,
        data.template_id,
        int(data.embeddings_version),
        len(data.x),
        as_json(metrics),
        data.as_of,
        None,
        None,
        int(data.item_geo_version),
        round(fit_seconds, 3),
    )
    lake.merge(spark.createDataFrame([row], index.CODEBOOK_VERSIONS.schema), index.CODEBOOK_VERSIONS)
    if lake.exists(index.SID_MAP):
        lake.write(spark.createDataFrame([], index.SID_MAP.schema), index.SID_MAP, where=where)


def previous_version(lake: Lake, spec: CodebookSpec, data: TrainingSet) -> Tokenizer:
    """The trained tokenizer an aligned fit starts from; refused in one line when it cannot
    be aligned to (another method, representation or code budget)."""
    row = version_row(lake, spec.align_to)  # UnknownNameError lists the known ones
    previous = load_tokenizer(lake, spec.align_to)
    if not previous.aligns:
        raise InvalidRequestError(f"--align-to {spec.align_to}: {previous.kind} versions cannot be aligned to (residual methods only)")
    if previous.kind != spec.method:
        raise InvalidRequestError(f"--align-to {spec.align_to}: it is a {previous.kind} version; fit --method {previous.kind} to align to it")
    if (row["model_id"], row["template_id"]) != (data.model_id, data.template_id) or previous.d != data.x.shape[1]:
        raise InvalidRequestError(
            f"--align-to {spec.align_to}: it was fit on {row['model_id']} / {row['template_id']} vectors, "
            f"this fit reads {data.model_id} / {data.template_id}"
        )
    if spec.codes and tuple(spec.codes) != previous.level_sizes:
        raise InvalidRequestError(
            f"--align-to {spec.align_to}: it has {' x '.join(map(str, previous.level_sizes))} codes; leave --codes out or give the same"
        )
    return previous


@dataclass
class BackfillReport:
    codebook_version: str
    days: list = field(default_factory=list)

    def summary(self) -> str:
        new = sum(d.new_items for d in self.days)
        return f"backfill {self.codebook_version}: {len(self.days)} days, {new:,} items given SIDs"

    def to_dict(self) -> dict:
        return {"codebook_version": self.codebook_version, "days": len(self.days), "new_items": sum(d.new_items for d in self.days)}


def backfill(lake: Lake, codebook_version: str, first: dt_.date | str, last: dt_.date | str) -> BackfillReport:
    """Tokenize every item of the days [first, last] under the version (existing SIDs
    stay); other versions' tables are untouched and stay readable."""
    row = version_row(lake, codebook_version)
    if row["status"] == "retired":
        raise ImmutableVersionError(f"codebook version {codebook_version} is retired; backfill a published or candidate version")
    tokenizer = load_tokenizer(lake, codebook_version)
    report = BackfillReport(codebook_version)
    day, last = as_date(first), as_date(last)
    days_with_items = {r.dt for r in lake.read(silver.ITEM_GEO).select("dt").distinct().collect()}
    while day <= last:
        if day in days_with_items:
            report.days.append(assign_sids(lake, codebook_version, day, tokenizer=tokenizer))
        day += dt_.timedelta(days=1)
    return report
