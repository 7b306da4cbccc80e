"""Commands of the data path: ingest, validate, geo, embed, codebooks, SIDs, the corpus."""

from __future__ import annotations

from geosid import pipeline
from geosid.cli.common import cmd_step, codes_arg, context_of, date_arg, span_of, time_split, usage, with_default
from geosid.pipeline import TOKENIZER_KINDS


def cmd_validate(args, p) -> int:
    first, last = span_of(args)
    if first is None:
        return usage("validate needs --date or --from/--to")
    with context_of(args) as ctx:
        return 0 if p.validate_bronze(first, last, ctx=ctx).passed else 1


def cmd_codebook(args, p) -> int:
    with context_of(args) as ctx:
        if args.action == "fit":
            aligned = {"align_to": args.align_to, "stickiness": args.stickiness} if args.align_to else {}
            spec = p.CodebookSpec(args.method, args.codes, args.niter, args.seed, args.sample_size, capacity_aware=args.capacity_aware, **aligned)
            report = p.fit_codebook(
                spec, args.date, template=args.template, embeddings_version=args.embeddings_version, item_geo_version=args.item_geo_version, ctx=ctx
            )
            print(f"version {report.codebook_version} is a candidate; publish with: geosid codebook publish --version {report.codebook_version}")
        elif args.action == "publish":
            if not args.codebook_version:
                return usage("codebook publish needs --version (see: geosid codebook list)")
            gates = {
                "max_excess_conflict": args.max_excess_conflict,
                "min_exclusive_rate": args.min_exclusive,
                "min_code_usage": args.min_usage,
                "min_first_level_retention": args.min_first_level_retention,
                "min_sid_retention": args.min_sid_retention,
            }
            gates = {k: v for k, v in gates.items() if v is not None}  # unset: the Gates defaults
            p.publish_codebook(args.codebook_version, args.date, gates, ctx=ctx)
        elif args.action == "migrate":
            if not args.codebook_version:
                return usage("codebook migrate needs --version (see: geosid codebook list)")
            return 0 if p.migrate(args.codebook_version, args.from_version, ctx=ctx).passed else 1
        else:
            print(p.list_codebooks(ctx=ctx))
    return 0


def cmd_sid(args, p) -> int:
    with context_of(args) as ctx:
        if args.action == "report":
            if not args.codebook_version:
                return usage("sid report needs --version (see: geosid codebook list)")
            print(p.sid_report(args.codebook_version, args.out, ctx=ctx)[0])
        else:
            print(p.sid_compare(args.codebook_versions, args.against, ctx=ctx))
    return 0


def cmd_corpus(args, p) -> int:
    first, last = span_of(args)
    with context_of(args) as ctx:
        if args.action == "day":
            if first is None or first != last:
                return usage("corpus day takes one --date")
            outcome = p.corpus_day(first, args.source, args.codebook_version, time_split(args), validate=True, ctx=ctx)
        elif args.action == "build":
            split = p.split_config(
                args.split, last or p.source_days(ctx, args.source)[1], args.test_start, args.valid_start, args.test_days, args.valid_days
            )
            outcome = p.corpus_build(args.source, first, last, args.codebook_version, split, ctx=ctx)
        else:
            first, last = (first, last) if first else p.source_days(ctx, args.source)
            outcome = p.validate_corpus(first, last, args.codebook_version, args.split, ctx=ctx)
    return 0 if outcome.passed else 1


def add_ingest_and_silver(command, add_range, sources) -> None:
    p = command("ingest", cmd_step, "raw source -> bronze.events/items/rejects, then data quality")
    p.add_argument("--source", choices=sources, required=True)
    p.add_argument("--path", help="file, or folder of dt=YYYY-MM-DD drops (default: the source's configured or shipped path)")
    p.add_argument("--no-validate", action="store_true", help="skip the data-quality gate")
    add_range(p)
    add_range(command("validate", cmd_validate, "run the bronze data-quality suites for a day or range"))
    command("geo", cmd_step, "silver.geo_cells and silver.item_geo as of a logical date").add_argument("--date", type=date_arg, required=True)
    p = command("embed", cmd_step, "embed new and changed item documents of a logical date")
    p.add_argument("--date", type=date_arg, required=True)
    p.add_argument("--encoder", help="minilm (default) or hf:<local model dir>; default: $GEOSID_ENCODER")
    p.add_argument("--template", help="document template: content-v1, geo-doc-v1, geo-doc-v2 (default: $GEOSID_TEMPLATE or geo-doc-v2)")


def add_index(command) -> None:
    spec, gates = pipeline.CodebookSpec(), pipeline.Gates()
    p = command(
        "codebook",
        cmd_codebook,
        "fit / publish / list codebook versions; migrate: the SID migration into a version from the one it retired",
        "fit",
        "publish",
        "list",
        "migrate",
    )
    p.add_argument("--method", default=spec.method, choices=list(TOKENIZER_KINDS))
    p.add_argument("--codes", type=codes_arg, help="codes per level, e.g. 64,64,64 (default: sized to the data)")
    p.add_argument("--niter", type=int, default=spec.niter)
    p.add_argument("--seed", type=int, default=spec.seed)
    p.add_argument("--sample-size", type=int, help="train k-means on this many items (default: all)")
    p.add_argument("--embeddings-version", type=int, help="pinned silver.item_embeddings table version (default: latest)")
    p.add_argument("--item-geo-version", type=int, help="pinned silver.item_geo table version (default: latest)")
    p.add_argument("--date", type=date_arg, help="logical date (default: the latest day of silver.item_geo)")
    p.add_argument("--version", dest="codebook_version", help="publish / migrate: the version")
    p.add_argument(
        "--max-excess-conflict", type=float, help=with_default("conflict rate above the identical-vector floor", gates.max_excess_conflict)
    )
    p.add_argument("--min-exclusive", type=float, help=with_default(None, gates.min_exclusive_rate))
    p.add_argument("--min-usage", type=float, help=with_default(None, gates.min_code_usage))
    p.add_argument("--capacity-aware", action="store_true", help="fit: last level by capacity-aware assignment")
    p.add_argument("--template", help="fit: the vectors' document template (default: $GEOSID_TEMPLATE or geo-doc-v2)")
    p.add_argument("--align-to", help="fit: warm-start from this version, keep its code ids, prefer items' codes under it")
    p.add_argument(
        "--stickiness",
        type=float,
        default=spec.stickiness,
        help=with_default("fit --align-to: relative extra cost within which an item keeps its code", spec.stickiness),
    )
    p.add_argument(
        "--min-first-level-retention", type=float, help=with_default("publish: against the version it retires", gates.min_first_level_retention)
    )
    p.add_argument("--min-sid-retention", type=float, help=with_default("publish: against the version it retires", gates.min_sid_retention))
    p.add_argument("--from", dest="from_version", help="migrate: the old version (default: the one it retired)")

    p = command("sid", cmd_sid, "SID reports: report --version V (with plots), compare [V1 V2 ...] (default: all)", "report", "compare")
    p.add_argument("--version", dest="codebook_version")
    p.add_argument("--out", help="folder for the plots (default: <lake>/_reports/<version>)")
    p.add_argument("codebook_versions", nargs="*", metavar="version")
    p.add_argument("--against", help="compare: every version's stability against this one (default: each against the one before)")
    p = command("assign", cmd_step, "SIDs for a day's new items under the version in force on the day")
    p.add_argument("--date", type=date_arg, required=True)
    p.add_argument("--version", dest="codebook_version", help="codebook version (default: the one published as of the date)")
    p = command("backfill", cmd_step, "give every item of a date range a SID under a version")
    p.add_argument("--version", dest="codebook_version", required=True)
    p.add_argument("--from", dest="from_date", type=date_arg, required=True)
    p.add_argument("--to", dest="to_date", type=date_arg, required=True)


def add_corpus(command, add_range, sources) -> None:
    p = command("corpus", cmd_corpus, "training corpus: build a range from scratch, one day incrementally, or validate", "build", "day", "validate")
    p.add_argument("--source", choices=sources, default="tsmc2014")
    p.add_argument("--version", dest="codebook_version", help="codebook version (default: the one published as of the last day)")
    p.add_argument(
        "--split",
        choices=list(pipeline.PROTOCOLS),
        default="time",
        help="split protocol (user_chrono, libcity, trajectory: range builds; see the README)",
    )
    for flag, kind, text in (
        ("--test-start", date_arg, "first test day"),
        ("--valid-start", date_arg, "first valid day"),
        ("--test-days", int, "the range's last N days are test"),
        ("--valid-days", int, "the N days before the test days are valid"),
    ):
        p.add_argument(flag, type=kind, help=f"time split: {text}")
    add_range(p)


# TrainConfig fields the command line sets, with their help; the defaults are TrainConfig's.
