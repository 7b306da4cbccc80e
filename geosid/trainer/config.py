"""The training config: every option of a pretraining / DPO run with its default, defined
here once (the CLI, the DAGs and the pipeline take their defaults from it), and the model
kinds and sizes as literals. Free of torch, so a DAG file can read the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal, get_args

from geosid.errors import InvalidRequestError
from geosid.schemas.corpus import PROTOCOLS, Protocol

# oneloc: the geo-aware SID decoder; tiger: the same decoder with every geo part off;
# sasrec and gru: item-id rankers (the transformer and the recurrent next-POI baselines).
ModelKind = Literal["oneloc", "tiger", "sasrec", "gru"]
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)
SizeName = Literal["tiny", "small", "paper"]
SIZE_NAMES: tuple[str, ...] = get_args(SizeName)


@dataclass
class TrainConfig:
    size: SizeName = "tiny"
    model: ModelKind = "oneloc"
    epochs: int = 2  # at most; early stopping may end sooner
    batch_size: int = 256
    lr: float = 1e-3
    dropout: float | None = None  # None: the model's own default (OneLoc 0.0, SASRec and GRU 0.1)
    warmup: float = 0.05  # share of the steps with a linear warm-up, then cosine decay
    min_lr: float = 0.1  # the decay's floor, as a share of lr
    patience: int = 2  # epochs without a better valid metric before stopping
    select: str = "ndcg@10"  # the valid metric that selects the checkpoint
    valid_limit: int | None = 2000  # valid requests scored after every epoch (None: all)
    max_history: int = 50  # per behavior, the latest events
    item_min_count: int = 1  # an item with fewer train occurrences shares the rare item-id row
    candidates: int = 10  # transition candidates per request (the train split's next items of the latest item)
    stream_above: int | None = 2_000_000  # train rows above which the split is streamed (None: never)
    stream_workers: int = 2  # DataLoader workers featurizing a streamed split
    shuffle_rows: int = 16_384  # a streamed split's shuffle buffer (rows)
    stream_eval_rows: int = 20_000  # test rows a streamed run evaluates on when eval_limit is None
    protocol: Protocol = "time"  # the corpus's split protocol
    seed: int = 0
    beam: int = 20
    device: str = "auto"  # auto: cuda with bf16 when available, else cpu
    eval_limit: int | None = None  # score at most this many test requests
    max_steps: int | None = None  # steps per epoch at most (benchmarks)
    max_minutes: float | None = None  # a time budget: no epoch starts after it is spent
    ablation: dict = field(default_factory=dict)  # OneLocConfig switches
    # a pretrain run (maybe under an earlier codebook version) whose weights start this
    # one, its SID tables remapped through index.sid_code_map (geosid.trainer.warm_start)
    warm_start: str | None = None
    # DPO
    dpo_requests: int = 2000
    dpo_candidates: int = 10
    dpo_lambda: float = 0.05
    dpo_beta: float = 0.1
    dpo_epochs: int = 1
    dpo_lr: float | None = None  # None: half the pretraining lr
    dpo_min_gap: float = 0.1  # a pair whose reward gap is below this is dropped (near-ties teach noise)
    dpo_pairs_per_request: int = 1  # the k-th best against the k-th worst candidate, k < this
    dpo_heldout: int = 500  # valid requests whose pairs measure preference accuracy after each epoch
    geo_max_km: float = 5.0
    gmv_weight: float = 1.0

    def __post_init__(self) -> None:
        for name, allowed in (("size", SIZE_NAMES), ("model", MODEL_KINDS), ("protocol", PROTOCOLS)):
            if getattr(self, name) not in allowed:
                raise InvalidRequestError(f"unknown {name} {getattr(self, name)!r}; known: {', '.join(allowed)}")

    @classmethod
    def from_options(cls, **options) -> TrainConfig:
        """A config from keyword options (a command line's, a DAG's params): None means the
        default; a key that is no field is refused, naming the known ones."""
        unknown = sorted(set(options) - set(TRAIN_FIELDS))
        if unknown:
            raise InvalidRequestError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(TRAIN_FIELDS)}")
        return cls(**{k: v for k, v in options.items() if v is not None})

    @property
    def decodes_sids(self) -> bool:
        """OneLoc and TIGER generate SIDs; SASRec and the GRU rank item ids."""
        return self.model in ("oneloc", "tiger")

    def resolved_dpo_lr(self) -> float:
        return self.dpo_lr or self.lr * 0.5

    def resolved_device(self) -> str:
        if self.device == "auto":
            import torch  # lazy: heavy, and only a run that trains needs it

            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


TRAIN_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))
TRAIN_DEFAULTS = TrainConfig()
# The options a benchmark grid point may set, with their types.
GRID_OPTIONS = {"lr": float, "dropout": float, "size": str, "batch_size": int}


def grid_point(text: str) -> dict:
    """`lr=0.003` -> {"lr": 0.003}: one benchmark grid point (a user's mistake: one line)."""
    name, _, value = text.partition("=")
    if name not in GRID_OPTIONS or not value:
        raise InvalidRequestError(f"grid point {text!r}: want NAME=VALUE with NAME one of {', '.join(GRID_OPTIONS)}")
    try:
        return {name: GRID_OPTIONS[name](value)}
    except ValueError:
        raise InvalidRequestError(f"grid point {text!r}: {value!r} is no {GRID_OPTIONS[name].__name__}") from None
