"""The training loop: warm-up and decay, selection on validation with early stopping,
and a resumed run equal to an uninterrupted one."""

import json

import numpy as np
import pytest
import torch

from geosid.trainer.config import TrainConfig
from geosid.trainer.training import fit, lr_factor


class Rows:
    """A minimal train split: 64 rows of x -> y."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def take(self, idx):
        return Rows(self.x[idx], self.y[idx])


def linear_step(model, rows):
    loss = torch.nn.functional.mse_loss(model(torch.as_tensor(rows.x)), torch.as_tensor(rows.y))
    return loss, len(rows)


def test_learning_rate_warms_up_then_decays_to_its_floor():
    factors = [lr_factor(s, 100, 0.1, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] == pytest.approx(0.1, abs=0.01)


def test_early_stopping_restores_the_best_epoch(tmp_path):
    rng = np.random.default_rng(0)
    rows = Rows(rng.normal(size=(64, 4)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32))
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.9])  # best at epoch 2, then two worse: stop after epoch 4
    snapshots = []

    def validate(m):
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return next(scores)

    cfg = TrainConfig(epochs=5, batch_size=16, lr=0.05, patience=2, device="cpu")
    result = fit(model, rows, linear_step, validate, cfg, tmp_path / "run", log=lambda *_: None)
    assert [e["epoch"] for e in result.epochs] == [1, 2, 3, 4] and result.stopped == "early"
    assert result.best_epoch == 2 and result.best_metric == 0.5
    assert all(torch.equal(model.state_dict()[k], snapshots[1][k]) for k in snapshots[1])  # epoch 2's weights
    assert not torch.equal(model.state_dict()["weight"], snapshots[3]["weight"])
    assert (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    rng = np.random.default_rng(1)
    rows = Rows(rng.normal(size=(64, 4)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32))
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.05, patience=9, device="cpu")
    metric = lambda m: -float(m.weight.detach().abs().sum())  # noqa: E731 - any deterministic function of the weights

    torch.manual_seed(0)
    whole = torch.nn.Linear(4, 1)
    full = fit(whole, rows, linear_step, metric, cfg, tmp_path / "whole", log=lambda *_: None)
    torch.manual_seed(0)
    parts = torch.nn.Linear(4, 1)
    first = fit(parts, rows, linear_step, metric, cfg, tmp_path / "parts", stop_after_epochs=2, log=lambda *_: None)
    assert first.stopped == "asked" and len(first.epochs) == 2
    torch.manual_seed(123)  # a new process: nothing but the checkpoint carries over
    resumed = torch.nn.Linear(4, 1)
    rest = fit(resumed, rows, linear_step, metric, cfg, tmp_path / "parts", resume=True, log=lambda *_: None)
    strip = lambda epochs: [{k: v for k, v in e.items() if k not in ("seconds", "tokens_per_s")} for e in epochs]  # noqa: E731
    assert strip(rest.epochs) == strip(full.epochs) and rest.best_epoch == full.best_epoch
    assert all(torch.equal(resumed.state_dict()[k], whole.state_dict()[k]) for k in whole.state_dict())
    assert json.dumps(rest.best_metric) == json.dumps(full.best_metric)


def test_the_benchmark_reuses_a_finished_run_only_when_it_was_trained_the_same_way(tmp_path):
    import dataclasses

    from geosid.pipeline.benchmark_run import _finished
    from geosid.trainer.model import OneLocConfig
    from geosid.trainer.runs import RunRecord, save_run

    def record(run_id, train_config, model_config, version="cb-1"):
        save_run(tmp_path, RunRecord(run_id=run_id, kind="pretrain", train_config=train_config, model_config=model_config,
                                     manifest={"codebook_version": version}, metrics={"eval": {"oneloc": {}}}), {})  # fmt: skip

    cfg = TrainConfig(epochs=3)
    now = json.loads(json.dumps(dataclasses.asdict(cfg)))
    switches = json.loads(json.dumps(OneLocConfig(token_sizes=(2,), n_cells=1, n_behaviors=1).to_dict()))
    record("same", now, switches)
    assert _finished(tmp_path, "same", cfg, "cb-1") is not None
    assert _finished(tmp_path, "same", cfg, "cb-2") is None  # another codebook version
    assert _finished(tmp_path, "same", dataclasses.replace(cfg, epochs=4), "cb-1") is None
    # recorded before the `candidates` option existed: its default now, so the same config
    record("older-config", {k: v for k, v in now.items() if k != "candidates"}, switches)
    assert _finished(tmp_path, "older-config", cfg, "cb-1") is not None
    # recorded before the `candidates` model switch: trained without it, not the same OneLoc...
    record("older-model", now, {k: v for k, v in switches.items() if k != "candidates"})
    assert _finished(tmp_path, "older-model", cfg, "cb-1") is None
    # ...but the same run when the switch is off now
    off = dataclasses.replace(cfg, ablation={"candidates": False})
    record("older-model-off", json.loads(json.dumps(dataclasses.asdict(off))), {k: v for k, v in switches.items() if k != "candidates"})
    assert _finished(tmp_path, "older-model-off", off, "cb-1") is not None


def test_configs_own_their_defaults_and_refuse_unknown_keys():
    from geosid import pipeline
    from geosid.cli import TRAIN_OPTIONS, build_parser
    from geosid.errors import InvalidRequestError
    from geosid.pipeline.index import gates_from

    assert pipeline.train_config(epochs=None, lr=0.5) == TrainConfig(lr=0.5)  # None: the default
    with pytest.raises(InvalidRequestError, match="unknown training option.*max_km"):
        pipeline.train_config(max_km=3.0)
    with pytest.raises(InvalidRequestError, match="unknown model 'bert'"):
        TrainConfig(model="bert")
    assert gates_from({"min_code_usage": 0.0}) == pipeline.Gates(min_code_usage=0.0)
    with pytest.raises(InvalidRequestError, match="unknown gate.*min_usage"):
        gates_from({"min_usage": 0.0})
    # the CLI's and the train DAG's defaults are the config's
    parsed = vars(build_parser().parse_args(["train", "pretrain"]))
    assert pipeline.train_config(**{name: parsed[name] for name, _ in TRAIN_OPTIONS}) == TrainConfig()
