"""`geosid` command line: ingest, validate, demo, sql, tables, history, synth."""

from __future__ import annotations

import argparse
import datetime as dt_
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from geosid.config import Settings


def _date(value: str) -> dt_.date:
    try:
        return dt_.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc


def _quiet_logs() -> None:
    # Sail's Rust server logs every session at INFO to stderr; the CLI prints its own progress.
    os.environ.setdefault("RUST_LOG", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("py4j", "great_expectations", "pyspark"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def _step(label: str):
    print(f"==> {label}", flush=True)
    started = time.perf_counter()
    yield
    print(f"    done in {time.perf_counter() - started:.1f}s", flush=True)


def _settings(args) -> Settings:
    return Settings.from_env(engine=args.engine, spark_remote=args.remote, lake=args.lake, cell_system=args.cells)


@contextmanager
def _lake(args):
    from geosid.jobs.engine import spark_session
    from geosid.jobs.lake import Lake

    settings = _settings(args)
    with spark_session(settings) as spark:
        yield settings, spark, Lake(settings.lake, spark, committer=settings.committer())


def _source_path(settings: Settings, source: str, path: str | None) -> Path:
    if path:
        return Path(path)
    if source == "tsmc2014":
        resolved = settings.resolved_tsmc_path()
        if resolved is None:
            raise SystemExit(
                "no TSMC2014 file: pass --path, or set GEOSID_TSMC_PATH to dataset_TSMC2014_NYC.txt "
                "(or a folder of dt=YYYY-MM-DD drops)"
            )
        return resolved
    raise SystemExit("the synthetic source needs --path (a folder written by `geosid synth`)")


def _range(args, spark, source: str, path: Path) -> tuple[dt_.date, dt_.date]:
    from geosid.jobs.ingest import scan_date_range

    if args.date:
        return args.date, args.date
    if args.from_date and args.to_date:
        return args.from_date, args.to_date
    if args.from_date or args.to_date:
        raise SystemExit("--from and --to go together")
    return scan_date_range(spark, source, path)


def _ingest_and_validate(settings, spark, lake, source, path, first, last, validate=True) -> bool:
    from geosid.jobs.ingest import run_ingest
    from geosid.jobs.quality import validate_bronze

    with _step(f"ingest {source} {first} .. {last} from {path}"):
        report = run_ingest(spark, lake, source, path, first, last)
    print(report.summary())
    if not validate:
        return True
    with _step("data quality (great-expectations)"):
        results = validate_bronze(lake, (first, last), settings.reject_rate_threshold)
    for result in results:
        print(result.summary().splitlines()[0] if result.success else result.summary())
    print(f"    results under {lake.root / '_quality'}")
    return all(r.success for r in results)


def _geo_embed_validate(settings, spark, lake, day) -> bool:
    from geosid.jobs.embed import run_embed
    from geosid.jobs.geo import GeoConfig, run_geo
    from geosid.jobs.quality import validate_silver

    config = GeoConfig.from_settings(settings)
    with _step(f"geo context as of {day} ({config.cells().name} cells, {config.window_days}-day activity window)"):
        print(run_geo(spark, lake, day, config).summary())
    with _step(f"item embeddings as of {day} (encoder {settings.encoder})"):
        report = run_embed(spark, lake, day, settings.encoder)
        print(report.summary())
        if report.embedded:
            print(f"    {report.docs_per_s:,.0f} documents/s")
    with _step("data quality (great-expectations)"):
        results = validate_silver(lake, day)
    for result in results:
        print(result.summary().splitlines()[0] if result.success else result.summary())
    return all(r.success for r in results)


def _codes(value: str | None) -> tuple[int, ...] | None:
    return tuple(int(v) for v in value.split(",")) if value else None


def _index_stage(spark, lake, day, codes=None) -> bool:
    """Fit the three tokenizers at one code budget, compare, publish the best that passes.
    Returns True unless something broke: gates refusing every candidate is an outcome."""
    from geosid.jobs.index import METHODS, CodebookSpec, GateError, fit_candidate, publish
    from geosid.jobs.report import quality_row, quality_table, sid_report

    reports = []
    for method in METHODS:
        with _step(f"codebook candidate: {method}"):
            report = fit_candidate(spark, lake, CodebookSpec(method=method, codes=codes), day, reuse_published=True)
            print(report.summary())
            reports.append(report)
    print("\nSID quality at the same code budget (before disambiguation):\n")
    print(quality_table([quality_row(lake, r.version) for r in reports]))
    print()
    # publish the candidate with the fewest conflicts that passes the gates
    from geosid.jobs.index import version_row

    for report in sorted(reports, key=lambda r: r.metrics["conflict_rate"]):
        if version_row(lake, report.version)["status"] == "published":
            print(f"{report.version} ({report.method}) is already published: same inputs, same version, unchanged")
            text, _ = sid_report(lake, report.version, Path(lake.root) / "_reports" / report.version)
            print(text)
            return True
        try:
            publish(spark, lake, report.version, day)
        except GateError as exc:
            print(f"    {exc}")
            continue
        print(f"published {report.version} ({report.method})")
        text, _ = sid_report(lake, report.version, Path(lake.root) / "_reports" / report.version)
        print(text)
        return True
    # Not a failure of the run: publishing is a decision the gates may refuse.
    print(
        "no candidate passed the publish gates: nothing published; the daily run assigns SIDs "
        "once a version is (geosid codebook publish --version V, with gates of your choosing)"
    )
    return True


def _corpus_split(args_split, first, last, test_start=None, valid_start=None, test_days=None, valid_days=None):
    from geosid.jobs.corpus import SplitConfig

    if args_split == "user_chrono":
        return SplitConfig(protocol="user_chrono")
    if test_days and not test_start:
        test_start = last - dt_.timedelta(days=test_days - 1)
    if valid_days and test_start and not valid_start:
        valid_start = test_start - dt_.timedelta(days=valid_days)
    return SplitConfig(protocol="time", test_start=test_start, valid_start=valid_start)


def _content_digest(lake, version: str, day) -> tuple[int, str]:
    """(rows, digest) of a day's sequences under a version: equal digests, equal content."""
    import hashlib

    from geosid.schemas import corpus

    rows = lake.read(corpus.TRAINING_SEQUENCES, dt=day).filter(f"codebook_version = '{version}'").collect()
    text = "\n".join(sorted(repr(r.asDict(recursive=True)) for r in rows))
    return len(rows), hashlib.sha256(text.encode()).hexdigest()[:16]


def _corpus_stage(settings, spark, lake, source, first, last, context_every: int, test_days: int, valid_days: int) -> tuple[bool, str | None]:
    """Cell context snapshots, cell context and sequences for every day, the corpus suites,
    then one day re-run incrementally to show it reproduces the rebuild."""
    from pyspark.sql import functions as F

    from geosid.jobs.corpus import build_cell_context, build_day, build_range
    from geosid.jobs.geo import GeoConfig, run_geo
    from geosid.jobs.index import published_version, version_row
    from geosid.jobs.quality import validate_corpus
    from geosid.pipeline import corpus_config
    from geosid.schemas import index, silver

    version = published_version(lake)
    if version is None:
        # Publishing is the gates' decision; the corpus (like a backfill) can still be
        # built under a candidate, and the demo says which.
        quality = lake.read(index.SID_QUALITY).orderBy("conflict_rate", "version").select("version").first()
        if quality is None:
            print("no codebook version: no training corpus")
            return True, None
        version = quality["version"]
        print(f"no published codebook version: building the corpus under the best candidate {version} (fewest conflicts)")
    geo = GeoConfig.from_settings(settings)
    have = {r.dt for r in lake.read(silver.GEO_CELLS).filter(F.col("cell_system") == geo.cells().name).select("dt").distinct().collect()}
    wanted = [first + dt_.timedelta(days=k) for k in range(context_every - 1, (last - first).days, context_every)]
    todo = [d for d in wanted if d not in have]
    with _step(f"geo context snapshots every {context_every} days for the cell context ({len(todo)} to compute)"):
        for day in todo:
            run_geo(spark, lake, day, geo, with_items=False)
    config = corpus_config(source, settings).model_copy(
        update={"split": _corpus_split("time", first, last, test_days=test_days, valid_days=valid_days)}
    )
    with _step(f"corpus.cell_context {first} .. {last}"):
        print(build_cell_context(spark, lake, first, last, config.cells()).summary())
    split = config.split
    with _step(f"training sequences {first} .. {last} under {version} (test from {split.test_start}, valid from {split.valid_start})"):
        report = build_range(spark, lake, version, first, last, config)
        print(report.summary())
        print(f"    {report.input_events / max(report.seconds, 1e-9):,.0f} events/s")
    print("targets per split: " + ", ".join(f"{k} {report.splits.get(k, 0):,}" for k in ("train", "valid", "test")))
    with _step("data quality (great-expectations)"):
        sizes = tuple(int(v) for v in version_row(lake, version)["level_sizes"])
        results = validate_corpus(lake, (first, last), version, sizes, config.cells().name)
    for result in results:
        print(result.summary().splitlines()[0] if result.success else result.summary())
    with _step(f"re-run {last} incrementally from the {last - dt_.timedelta(days=1)} history state"):
        before = _content_digest(lake, version, last)
        day_report = build_day(spark, lake, version, last, config)
        after = _content_digest(lake, version, last)
    same = "identical to the full rebuild" if before == after else "DIFFERENT from the full rebuild"
    print(f"{day_report.summary()}\n    {after[0]:,} rows, digest {after[1]}: {same}")
    return all(r.success for r in results) and before == after, version


def cmd_corpus(args) -> int:
    from geosid.jobs.corpus import build_cell_context, build_day, build_range, corpus_scan
    from geosid.jobs.index import published_version, version_row
    from geosid.jobs.quality import validate_corpus
    from geosid.pipeline import corpus_config

    with _lake(args) as (settings, spark, lake):
        version = args.version or published_version(lake)
        if version is None:
            print("geosid: no published codebook version; pass --version", file=sys.stderr)
            return 1
        scan = corpus_scan(lake, args.source)
        if scan is None:
            print(f"geosid: no bronze events of {args.source}", file=sys.stderr)
            return 1
        first = args.date or args.from_date or scan[0]
        last = args.date or args.to_date or scan[1]
        config = corpus_config(args.source, settings).model_copy(
            update={"split": _corpus_split(args.split, first, last, args.test_start, args.valid_start, args.test_days, args.valid_days)}
        )
        ok = True
        if args.action in ("build", "day"):
            with _step(f"corpus.cell_context {first} .. {last}"):
                print(build_cell_context(spark, lake, first, last, config.cells()).summary())
            if args.action == "build":
                with _step(f"training sequences {first} .. {last} under {version} (from scratch)"):
                    report = build_range(spark, lake, version, first, last, config)
            else:
                if first != last:
                    print("geosid: corpus day takes one --date", file=sys.stderr)
                    return 1
                with _step(f"training sequences {first} under {version} (incremental)"):
                    report = build_day(spark, lake, version, first, config)
            print(report.summary())
        sizes = tuple(int(v) for v in version_row(lake, version)["level_sizes"])
        with _step("data quality (great-expectations)"):
            results = validate_corpus(lake, (first, last), version, sizes, config.cells().name)
        for result in results:
            print(result.summary().splitlines()[0] if result.success else result.summary())
            ok = ok and result.success
    return 0 if ok else 1


def _train_config(args):
    from geosid.trainer.train import TrainConfig

    ablation = {}
    if getattr(args, "no_location_scores", False):
        ablation["location_scores"] = False
    if getattr(args, "no_location_gate", False):
        ablation["location_gate"] = False
    if getattr(args, "prompt", None):
        ablation["prompt"] = args.prompt
    values = {
        "size": args.size, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "max_history": args.max_history, "beam": args.beam, "device": args.device, "eval_limit": args.eval_limit,
        "ablation": ablation, "dpo_requests": args.requests, "dpo_candidates": args.candidates,
        "dpo_lambda": args.dpo_lambda, "dpo_beta": args.beta, "dpo_epochs": args.dpo_epochs,
        "geo_max_km": args.max_km, "gmv_weight": args.gmv_weight,
    }  # fmt: skip
    return TrainConfig(**values)


def _latest_run(lake_root: Path, kind: str) -> str | None:
    import json

    runs = []
    for record in (lake_root / "_models").glob("*/run.json"):
        meta = json.loads(record.read_text())
        if meta.get("kind") == kind:
            runs.append((record.stat().st_mtime, meta["run_id"]))
    return max(runs)[1] if runs else None


def _print_unknown(meta: dict) -> None:
    if any(meta.get("unknown_targets", {}).values()):
        print(f"    left out, target not in the version's SID map: {meta['unknown_targets']}")


def _print_eval(evaluation: dict, label: str) -> None:
    from geosid.trainer.train import metrics_table

    print(f"{evaluation['split']} split, {evaluation['requests']:,} requests (beam search {evaluation['beam_search_s']}s):")
    print(metrics_table(evaluation, label))


def cmd_train(args) -> int:
    from geosid.trainer.train import dpo, eval_run, pretrain

    settings = _settings(args)
    lake_root = Path(settings.lake).resolve()
    if args.action == "pretrain":
        cfg = _train_config(args)
        with _step(f"pretrain OneLoc ({cfg.size}, {cfg.epochs} epoch(s), device {cfg.resolved_device()})"):
            meta = pretrain(lake_root, cfg, codebook_version=args.version, run_id=args.run_id)
        m = meta["metrics"]
        print(f"run {meta['run_id']}: {meta['parameters']:,} parameters, {meta['rows']['train']:,} train rows, "
              f"{m['tokens_per_s']:,} tokens/s; pinned {meta['manifest']['table_versions']}")  # fmt: skip
        _print_unknown(meta)
        _print_eval(m["eval"], "OneLoc")
    elif args.action == "dpo":
        parent = args.from_run or _latest_run(lake_root, "pretrain")
        if parent is None:
            print("geosid: no pretrain run under the lake; run `geosid train pretrain` first", file=sys.stderr)
            return 1
        cfg = _train_config(args) if args.override else None
        with _step(f"DPO on {parent}"):
            meta = dpo(lake_root, parent, cfg=cfg, run_id=args.run_id)
        print(f"run {meta['run_id']} (parent {parent})")
        _print_eval(meta["metrics"]["eval"], "OneLoc + DPO")
        before = (meta.get("parent_eval") or {}).get("oneloc", {}).get("geo_reward@10")
        after = meta["metrics"]["eval"]["oneloc"]["geo_reward@10"]
        if before is not None:
            print(f"mean geographic reward of the top 10: {before:.4f} pretrained -> {after:.4f} after DPO")
    else:
        run = args.run or _latest_run(lake_root, "dpo") or _latest_run(lake_root, "pretrain")
        if run is None:
            print("geosid: no run to evaluate", file=sys.stderr)
            return 1
        _print_eval(eval_run(lake_root, run, split=args.split, eval_limit=args.eval_limit), run)
    return 0


def _train_stage(settings, version: str) -> bool:
    """Pretrain a tiny OneLoc on the corpus, align it with DPO, and compare with a control
    that takes the same extra next-token steps without the DPO term (lambda = 0)."""
    import dataclasses

    from geosid.trainer.train import TrainConfig, dpo, pretrain

    lake_root = Path(settings.lake).resolve()
    cfg = TrainConfig(size="tiny", epochs=1, batch_size=256, max_history=20, dpo_requests=6000, dpo_candidates=10, dpo_epochs=3)
    with _step(f"pretrain a tiny OneLoc on the corpus (1 epoch, device {cfg.resolved_device()})"):
        pre = pretrain(lake_root, cfg, codebook_version=version)
    m = pre["metrics"]
    print(f"run {pre['run_id']}: {pre['parameters']:,} parameters, {pre['rows']['train']:,} train rows, {m['tokens_per_s']:,} tokens/s")
    _print_unknown(pre)
    _print_eval(m["eval"], "OneLoc (pretrained)")
    with _step(f"DPO, lambda {cfg.dpo_lambda}, geographic reward (+ GMV where the source has it)"):
        aligned = dpo(lake_root, pre["run_id"], cfg=cfg)
    _print_eval(aligned["metrics"]["eval"], "OneLoc + DPO")
    with _step("control: the same extra steps with lambda = 0 (next-token loss only)"):
        control = dpo(lake_root, pre["run_id"], cfg=dataclasses.replace(cfg, dpo_lambda=0.0))
    rewards = [r["oneloc"]["geo_reward@10"] for r in (m["eval"], control["metrics"]["eval"], aligned["metrics"]["eval"])]
    print(
        "mean geographic reward of the top 10: pretrained {:.4f}, control (lambda 0) {:.4f}, DPO {:.4f}".format(*rewards)
    )
    print(f"    runs under {lake_root / '_models'} (each run.json records the pinned table versions)")
    return True


def cmd_codebook(args) -> int:
    from geosid.jobs.index import CodebookSpec, Gates, fit_candidate, publish, versions

    with _lake(args) as (settings, spark, lake):
        if args.action == "fit":
            spec = CodebookSpec(method=args.method, codes=_codes(args.codes), niter=args.niter, seed=args.seed, sample_size=args.sample_size)
            report = fit_candidate(spark, lake, spec, args.date or _latest_day(lake), embeddings_version=args.embeddings_version)
            print(report.summary())
            print(f"version {report.version} is a candidate; publish with: geosid codebook publish --version {report.version}")
        elif args.action == "publish":
            gates = Gates(args.max_excess_conflict, args.min_exclusive, args.min_usage)
            print(publish(spark, lake, args.version, args.date or _latest_day(lake), gates))
        else:
            table = versions(lake)
            columns = ["version", "method", "status", "level_sizes", "n_items", "embeddings_version", "created_dt", "published_dt"]
            print(table[columns].to_string(index=False) if len(table) else "no codebook versions yet")
    return 0


def _latest_day(lake) -> "dt_.date":
    from pyspark.sql import functions as F

    return lake.read("silver.item_geo").agg(F.max("dt")).collect()[0][0]


def cmd_sid(args) -> int:
    from geosid.jobs.report import quality_row, quality_table, sid_report

    with _lake(args) as (_, _spark, lake):
        if args.action == "report":
            text, _ = sid_report(lake, args.version, args.out or Path(lake.root) / "_reports" / args.version)
            print(text)
        else:
            print(quality_table([quality_row(lake, v) for v in args.versions]))
    return 0


def cmd_backfill(args) -> int:
    from geosid.jobs.index import backfill

    with _lake(args) as (_, spark, lake):
        report = backfill(spark, lake, args.version, args.from_date, args.to_date)
        for day in report.days:
            print(day.summary())
        print(report.summary())
    return 0


def cmd_geo(args) -> int:
    from geosid.jobs.geo import GeoConfig, run_geo

    with _lake(args) as (settings, spark, lake):
        print(run_geo(spark, lake, args.date, GeoConfig.from_settings(settings)).summary())
    return 0


def cmd_embed(args) -> int:
    from geosid.jobs.embed import run_embed

    with _lake(args) as (settings, spark, lake):
        print(run_embed(spark, lake, args.date, args.encoder or settings.encoder).summary())
    return 0


def cmd_ingest(args) -> int:
    with _lake(args) as (settings, spark, lake):
        path = _source_path(settings, args.source, args.path)
        first, last = _range(args, spark, args.source, path)
        ok = _ingest_and_validate(settings, spark, lake, args.source, path, first, last, validate=not args.no_validate)
    return 0 if ok else 1


def cmd_validate(args) -> int:
    from geosid.jobs.quality import validate_bronze

    with _lake(args) as (settings, spark, lake):
        if args.date:
            dt = args.date
        elif args.from_date and args.to_date:
            dt = (args.from_date, args.to_date)
        else:
            raise SystemExit("validate needs --date or --from/--to")
        results = validate_bronze(lake, dt, settings.reject_rate_threshold)
        for result in results:
            print(result.summary())
    return 0 if all(r.success for r in results) else 1


def cmd_synth(args) -> int:
    from geosid.jobs.sources.synthetic import WorldConfig, write_world

    config = WorldConfig(
        seed=args.seed,
        start_date=args.start.isoformat(),
        n_days=args.days,
        n_users=args.users,
        n_stores=args.stores,
        corrupt_rate=args.corrupt_rate,
    )
    started = time.perf_counter()
    manifest = write_world(args.out, config)
    seconds = time.perf_counter() - started
    totals = manifest["totals"]
    print(
        f"wrote {totals['events']:,} events and {totals['items']:,} items over {config.n_days} days to {args.out} "
        f"in {seconds:.1f}s ({totals['events'] / seconds * 60:,.0f} events/min)"
    )
    if manifest["corrupted"]:
        print(f"injected bad lines: {json.dumps(manifest['corrupted'], sort_keys=True)}")
    return 0


def _print_tables(lake) -> None:
    from pyspark.sql import functions as F

    print(f"{'table':<24}{'version':>8}{'rows':>12}{'days':>7}  first .. last")
    for spec in lake.registry:
        if not lake.exists(spec):
            print(f"{spec.name:<24}{'-':>8}{'-':>12}{'-':>7}  (not created yet)")
            continue
        df = lake.read(spec)
        if spec.partition_by:
            row = df.agg(
                F.count(F.lit(1)).alias("n"),
                F.countDistinct("dt").alias("days"),
                F.min("dt").alias("first"),
                F.max("dt").alias("last"),
            ).collect()[0]
            span = f"{row['first']} .. {row['last']}" if row["n"] else ""
            print(f"{spec.name:<24}{lake.version(spec):>8}{row['n']:>12,}{row['days']:>7}  {span}")
        else:
            print(f"{spec.name:<24}{lake.version(spec):>8}{df.count():>12,}{'':>7}")


def cmd_tables(args) -> int:
    with _lake(args) as (_, _spark, lake):
        _print_tables(lake)
    return 0


def cmd_history(args) -> int:
    from geosid.jobs.lake import Lake

    lake = Lake(_settings(args).lake)
    for entry in lake.history(args.table):
        params = entry.get("operationParameters", {})
        print(f"v{entry.get('version')}  {entry.get('operation'):<13} predicate={params.get('predicate', '')}")
    return 0


def cmd_sql(args) -> int:
    import pandas as pd

    with _lake(args) as (_, spark, lake):
        lake.register_views()
        frame = spark.sql(args.query).limit(args.limit).toPandas()
    with pd.option_context("display.max_rows", args.limit, "display.max_columns", 50, "display.width", 200):
        print(frame.to_string(index=False))
    return 0


def cmd_demo(args) -> int:
    """The whole pipeline that exists, on the shipped NYC check-ins (or the synthetic world)."""
    with _lake(args) as (settings, spark, lake):
        tsmc = settings.resolved_tsmc_path()
        if tsmc is not None and not args.synthetic:
            print(f"geosid demo: Foursquare TSMC2014 NYC check-ins from {tsmc}")
            source, path = "tsmc2014", tsmc
        else:
            from geosid.jobs.sources.synthetic import WorldConfig, write_world

            if tsmc is None:
                print(
                    "geosid demo: the TSMC2014 file was not found (../shared/data or GEOSID_TSMC_PATH); "
                    "running on the SYNTHETIC local-life world instead"
                )
            path = Path(settings.lake) / "_raw" / "synthetic"
            with _step(f"generate the synthetic world under {path}"):
                write_world(path, WorldConfig(n_days=7, n_users=5_000, n_stores=1_000, corrupt_rate=0.001))
            source = "synthetic"
        first, last = _range(argparse.Namespace(date=None, from_date=None, to_date=None), spark, source, path)
        ok = _ingest_and_validate(settings, spark, lake, source, path, first, last)
        # The silver stage is a daily snapshot: the demo takes it as of the data's last day.
        ok = _geo_embed_validate(settings, spark, lake, last) and ok
        ok = _index_stage(spark, lake, last) and ok
        days = (last - first).days + 1
        corpus_ok, version = _corpus_stage(
            settings, spark, lake, source, first, last, context_every=7 if days > 14 else 1,
            test_days=3 if days > 14 else 1, valid_days=3 if days > 14 else 1,
        )  # fmt: skip
        ok = corpus_ok and ok
        if version is not None:
            ok = _train_stage(settings, version) and ok
        print()
        _print_tables(lake)
    print(f"\nlake: {Path(settings.lake).resolve()}  (try: geosid sql \"SELECT reason, count(*) FROM rejects GROUP BY reason\")")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geosid", description=__doc__)
    parser.add_argument("--lake", help="lake root (default: $GEOSID_LAKE or ./lake)")
    parser.add_argument("--engine", choices=["sail", "spark-local", "remote"], help="default: $GEOSID_ENGINE or sail")
    parser.add_argument("--remote", help="Spark Connect URL for --engine remote (sc://host:15002)")
    parser.add_argument("--cells", choices=["geohash", "h3"], help="cell system (default: $GEOSID_CELL_SYSTEM or geohash)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_range(p):
        p.add_argument("--date", type=_date, help="one logical date")
        p.add_argument("--from", dest="from_date", type=_date, help="first date of a range")
        p.add_argument("--to", dest="to_date", type=_date, help="last date of a range (inclusive)")

    p = sub.add_parser("ingest", help="raw source -> bronze.events/items/rejects, then data quality")
    p.add_argument("--source", choices=["tsmc2014", "synthetic"], required=True)
    p.add_argument("--path", help="file, or folder of dt=YYYY-MM-DD drops (default for tsmc2014: the shipped file)")
    p.add_argument("--no-validate", action="store_true", help="skip the data-quality gate")
    add_range(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("validate", help="run the bronze data-quality suites for a day or range")
    add_range(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("geo", help="silver.geo_cells and silver.item_geo as of a logical date")
    p.add_argument("--date", type=_date, required=True)
    p.set_defaults(func=cmd_geo)

    p = sub.add_parser("embed", help="embed new and changed item documents of a logical date")
    p.add_argument("--date", type=_date, required=True)
    p.add_argument("--encoder", help="minilm (default) or hf:<local model dir>; default: $GEOSID_ENCODER")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("codebook", help="fit / publish / list codebook versions")
    p.add_argument("action", choices=["fit", "publish", "list"])
    p.add_argument("--method", default="residual_kmeans_fsq", choices=["residual_kmeans", "residual_kmeans_fsq", "geo_prefix"])
    p.add_argument("--codes", help="codes per level, e.g. 64,64,64 (default: sized to the data)")
    p.add_argument("--niter", type=int, default=20)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--sample-size", type=int, help="train k-means on this many items (default: all)")
    p.add_argument("--embeddings-version", type=int, help="pinned silver.item_embeddings version (default: latest)")
    p.add_argument("--date", type=_date, help="logical date (default: the latest day of silver.item_geo)")
    p.add_argument("--version", help="the version to publish")
    p.add_argument("--max-excess-conflict", type=float, default=0.15, help="conflict rate above the identical-embedding floor")
    p.add_argument("--min-exclusive", type=float, default=0.50)
    p.add_argument("--min-usage", type=float, default=0.20)
    p.set_defaults(func=cmd_codebook)

    p = sub.add_parser("sid", help="SID reports: report --version V (with plots), compare V1 V2 ...")
    p.add_argument("action", choices=["report", "compare"])
    p.add_argument("--version")
    p.add_argument("--out", help="folder for the plots (default: <lake>/_reports/<version>)")
    p.add_argument("versions", nargs="*")
    p.set_defaults(func=cmd_sid)

    p = sub.add_parser("backfill", help="give every item of a date range a SID under a version")
    p.add_argument("--version", required=True)
    p.add_argument("--from", dest="from_date", type=_date, required=True)
    p.add_argument("--to", dest="to_date", type=_date, required=True)
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("corpus", help="training corpus: build a range from scratch, one day incrementally, or validate")
    p.add_argument("action", choices=["build", "day", "validate"])
    p.add_argument("--source", choices=["tsmc2014", "synthetic"], default="tsmc2014")
    p.add_argument("--version", help="codebook version (default: the published one)")
    p.add_argument("--split", choices=["time", "user_chrono"], default="time", help="split protocol (user_chrono: build only)")
    p.add_argument("--test-start", type=_date, help="time split: first test day")
    p.add_argument("--valid-start", type=_date, help="time split: first valid day")
    p.add_argument("--test-days", type=int, help="time split: the range's last N days are test")
    p.add_argument("--valid-days", type=int, help="time split: the N days before the test days are valid")
    add_range(p)
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("train", help="OneLoc: pretrain, align with DPO, evaluate (on a pinned corpus snapshot)")
    p.add_argument("action", choices=["pretrain", "dpo", "eval"])
    p.add_argument("--version", help="codebook version of the corpus (default: the only one present)")
    p.add_argument("--run-id", help="name of the new run (default: kind-timestamp-random)")
    p.add_argument("--from-run", help="dpo: the pretrained run (default: the latest)")
    p.add_argument("--run", help="eval: the run (default: the latest DPO, else pretrain, run)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--override", action="store_true", help="dpo: use these options instead of the parent's")
    p.add_argument("--size", default="tiny", choices=["tiny", "small", "paper"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-history", type=int, default=50, help="latest events kept per behavior")
    p.add_argument("--beam", type=int, default=20)
    p.add_argument("--device", default="auto", help="auto (cuda + bf16 when available), cpu, cuda")
    p.add_argument("--eval-limit", type=int, help="score at most N requests")
    p.add_argument("--no-location-scores", action="store_true", help="ablation: no E_lc E_lc^T in attention")
    p.add_argument("--no-location-gate", action="store_true", help="ablation: no location gate")
    p.add_argument("--prompt", choices=["neighbor", "pointwise", "mlp"], help="ablation: the decoder's prompt")
    p.add_argument("--requests", type=int, default=2000, help="dpo: train requests sampled for pairs")
    p.add_argument("--candidates", type=int, default=10, help="dpo: beam candidates per request")
    p.add_argument("--dpo-lambda", type=float, default=0.05, help="dpo: L = L_ntp + lambda * L_dpo")
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--dpo-epochs", type=int, default=1)
    p.add_argument("--max-km", type=float, default=5.0, help="geographic reward: 1/d within this distance")
    p.add_argument("--gmv-weight", type=float, default=1.0, help="weight of the GMV reward (sources with GMV)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("synth", help="write a synthetic local-life world as raw daily drops")
    p.add_argument("--out", required=True)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--stores", type=int, default=3_000)
    p.add_argument("--start", type=_date, default=dt_.date(2024, 1, 1))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--corrupt-rate", type=float, default=0.0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("demo", help="the whole pipeline on the shipped NYC data (synthetic if absent)")
    p.add_argument("--synthetic", action="store_true", help="use the synthetic world even if the NYC file exists")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("sql", help="run SQL over the lake's tables (by short name: events, rejects, ...)")
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("tables", help="each table's version, rows and days")
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser("history", help="a table's Delta history")
    p.add_argument("table")
    p.set_defaults(func=cmd_history)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_logs()
    args = build_parser().parse_args(argv)
    from geosid.jobs.corpus import MissingStateError
    from geosid.jobs.index import GateError, ImmutableVersionError
    from geosid.jobs.lake import SchemaMismatchError

    try:
        return args.func(args)
    except (GateError, ImmutableVersionError, SchemaMismatchError, MissingStateError) as exc:
        # Refusals the user acts on: say why, no traceback.
        print(f"geosid: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
