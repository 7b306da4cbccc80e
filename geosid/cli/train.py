"""`geosid train`: pretrain, DPO, evaluate and the benchmark."""

from __future__ import annotations

from geosid import pipeline
from geosid.cli.common import context_of, settings_of, with_default


def train_options(args) -> dict:
    """The TrainConfig options the command line set (None: the config's default), and the
    ablation switches."""
    ablation = {"prompt": args.prompt} if args.prompt else {}
    for switch, _ in ABLATIONS:
        ablation.update({switch: False} if getattr(args, f"no_{switch}") else {})
    return {**{name: getattr(args, name) for name, _ in TRAIN_OPTIONS}, "ablation": ablation}


def cmd_train(args, p) -> int:
    lake_root = str(settings_of(args).lake_root)
    if args.action == "benchmark":
        # the benchmark's own defaults (30 epochs with patience, 20 minutes a run) unless given
        given = {"size": args.size, "epochs": args.epochs, "max_minutes": args.max_minutes, "seeds": args.seeds}
        options = {**{k: v for k, v in given.items() if v is not None}, "ablations": not args.no_ablations}
        if args.no_grid or args.grid:
            options["grid"] = ({}, *([] if args.no_grid else [p.grid_point(point) for point in args.grid]))
        with context_of(args) as ctx:
            for protocol in args.protocols or p.BENCHMARK_PROTOCOLS:
                p.benchmark(protocol, paper_decoder=args.paper_decoder, ctx=ctx, **options)
        return 0
    if args.action == "pretrain":
        p.pretrain(p.train_config(**train_options(args)), args.codebook_version, args.run_id, resume=args.resume, lake_root=lake_root)
    elif args.action == "dpo":
        given = {k: v for k, v in train_options(args).items() if v is not None and v != {}}  # over the parent's config
        cfg, changes = (p.train_config(**train_options(args)), None) if args.override else (None, given)
        if not args.sweep:
            return p.dpo(args.from_run, cfg, args.run_id, changes=changes, lake_root=lake_root) and 0
        with context_of(args) as ctx:
            p.dpo_sweep(args.from_run, cfg, args.sweep_lambdas, args.sweep_betas, changes=changes, ctx=ctx)
    else:
        p.evaluate(args.run, args.split, args.eval_limit, lake_root=lake_root)
    return 0


TRAIN_OPTIONS = (
    ("size", None),
    ("epochs", "at most; early stopping may end sooner"),
    ("batch_size", None),
    ("lr", None),
    ("dropout", "default: the model's own"),
    ("max_history", "latest events kept per behavior"),
    ("beam", None),
    ("eval_limit", "score at most N requests"),
    ("dpo_requests", "dpo: train requests sampled for pairs"),
    ("dpo_candidates", "dpo: beam candidates per request"),
    ("dpo_lambda", "dpo: L = L_ntp + lambda * L_dpo"),
    ("dpo_beta", None),
    ("dpo_epochs", None),
    ("dpo_lr", "dpo: default half the lr"),
    ("dpo_min_gap", "dpo: smallest reward gap of a pair"),
    ("dpo_pairs_per_request", None),
    ("dpo_heldout", "dpo: valid requests whose pairs measure preference accuracy"),
    ("geo_max_km", "geographic reward: 1/d within this distance"),
    ("gmv_weight", "weight of the GMV reward (sources with GMV)"),
    ("patience", "epochs without a better valid metric before stopping"),
    ("max_minutes", "a time budget per model (no epoch starts after it)"),
    ("item_min_count", "train occurrences for an own item-id embedding"),
    ("device", "auto (cuda + bf16 when available), cpu, cuda"),
    ("protocol", "the corpus's split protocol"),
    ("model", None),
    ("max_steps", "steps per epoch at most"),
    ("warm_start", "pretrain: start from this run's weights (an earlier version's: remapped through index.sid_code_map)"),
)
CHOICES = {"size": pipeline.SIZE_NAMES, "protocol": pipeline.PROTOCOLS, "model": pipeline.MODEL_KINDS}
ABLATIONS = (
    ("location_scores", "no E_lc E_lc^T in attention"),
    ("location_gate", "no location gate"),
    ("copy_head", "no copy of the history's SID tokens (the paper's decoder)"),
    ("time_features", "no hour-of-week / event-age inputs"),
    ("routine_features", "no visit counts at the request's time of day"),
    ("repeat_features", "no visit / own-transition counts of history items"),
    ("candidates", "no transition candidates (train next items of the latest item)"),
)


def add_train(command) -> None:
    p = command(
        "train",
        cmd_train,
        "OneLoc: pretrain, align with DPO, evaluate (on a pinned corpus snapshot); benchmark",
        "pretrain",
        "dpo",
        "eval",
        "benchmark",
    )
    defaults = pipeline.TRAIN_DEFAULTS
    for name, text in TRAIN_OPTIONS:
        default = getattr(defaults, name)
        kind = {"max_minutes": float, "eval_limit": int, "dropout": float, "dpo_lr": float, "max_steps": int, "warm_start": str}.get(name) or type(
            default
        )  # those default to None
        p.add_argument("--" + name.replace("_", "-"), type=kind, choices=CHOICES.get(name), help=with_default(text, default))
    p.add_argument("--protocols", nargs="*", choices=list(pipeline.BENCHMARK_PROTOCOLS), help="benchmark: the protocols (default: all)")
    p.add_argument("--no-ablations", action="store_true", help="benchmark: baselines, SASRec, TIGER and OneLoc only (no ablations, no DPO)")
    p.add_argument("--paper-decoder", action="store_true", help="benchmark: also OneLoc without copy head and time features")
    p.add_argument("--no-grid", action="store_true", help="benchmark: every learned model at its defaults only (no tuning grid)")
    p.add_argument(
        "--grid",
        nargs="+",
        metavar="NAME=VALUE",
        help="benchmark: the grid points besides the defaults, e.g. lr=0.003 dropout=0.3 size=small (default: those three)",
    )
    p.add_argument("--seeds", type=int, help="benchmark: seeds of OneLoc and the best learned baseline at their chosen points (default: 3)")
    p.add_argument("--resume", action="store_true", help="pretrain: continue --run-id from its last checkpoint")
    p.add_argument("--version", dest="codebook_version", help="codebook version of the corpus (default: the only one present)")
    p.add_argument("--run-id", help="name of the new run (default: kind-timestamp-random)")
    p.add_argument("--from-run", help="dpo: the pretrained run (default: the latest)")
    p.add_argument("--run", help="eval: the run (default: the latest DPO, else pretrain, run)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--override", action="store_true", help="dpo: options over the defaults, not the parent's")
    p.add_argument("--sweep", action="store_true", help="dpo: every lambda x beta beside a lambda-0 control, table and trade-off plot")
    p.add_argument("--sweep-lambdas", nargs="+", type=float, help="dpo --sweep: the lambdas (default: 0.05 0.2 1)")
    p.add_argument("--sweep-betas", nargs="+", type=float, help="dpo --sweep: the betas (default: 0.1 0.5)")
    for switch, text in ABLATIONS:
        p.add_argument("--no-" + switch.replace("_", "-"), action="store_true", help=f"ablation: {text}")
    p.add_argument("--prompt", choices=["neighbor", "pointwise", "mlp", "none"], help="ablation: the decoder's prompt")
