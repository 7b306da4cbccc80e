"""The training loop: warm-up and decay, selection on validation with early stopping,
and a resumed run equal to an uninterrupted one; the trainer end to end on a tiny pinned
corpus (records, metrics, DPO pairs, determinism, resume, evaluation, DPO sweeps)."""

import dataclasses
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


def test_a_resume_on_another_item_vocabulary_is_refused(tmp_path):
    from geosid.errors import InvalidRequestError

    rng = np.random.default_rng(2)
    rows = Rows(rng.normal(size=(64, 4)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32))
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05, patience=9, device="cpu")
    quiet = lambda *_: None  # noqa: E731
    fit(torch.nn.Linear(4, 1), rows, linear_step, None, cfg, tmp_path / "run", stop_after_epochs=1, log=quiet, vocab="aaaa")
    with pytest.raises(InvalidRequestError, match="indexes item vocabulary aaaa, the corpus gives bbbb"):
        fit(torch.nn.Linear(4, 1), rows, linear_step, None, cfg, tmp_path / "run", resume=True, log=quiet, vocab="bbbb")
    # a checkpoint written before vocabularies were recorded: its order is unknown, refused too
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    torch.save({k: v for k, v in state.items() if k != "item_vocab"}, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(InvalidRequestError, match="unrecorded"):
        fit(torch.nn.Linear(4, 1), rows, linear_step, None, cfg, tmp_path / "run", resume=True, log=quiet, vocab="aaaa")
    lines = []
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    result = fit(torch.nn.Linear(4, 1), rows, linear_step, None, cfg, tmp_path / "run", resume=True, log=lines.append, vocab="aaaa")
    assert any("resumed after epoch 1/3" in line for line in lines) and len(result.epochs) == 3


def test_the_benchmark_reuses_a_finished_run_only_when_it_was_trained_the_same_way(tmp_path):
    import dataclasses

    from geosid.pipeline.benchmark_run import _finished
    from geosid.trainer.model import OneLocConfig
    from geosid.trainer.runs import RunRecord, save_run

    def record(run_id, train_config, model_config, version="cb-1"):
        save_run(
            tmp_path,
            RunRecord(
                run_id=run_id,
                kind="pretrain",
                train_config=train_config,
                model_config=model_config,
                manifest={"codebook_version": version},
                metrics={"eval": {"oneloc": {}}},
            ),
            {},
        )

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
    from geosid.cli import build_parser
    from geosid.cli.train import TRAIN_OPTIONS
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


def test_the_benchmark_tunes_every_model_on_the_same_grid_and_reports_seed_spread(tmp_path):
    """A stubbed trainer (valid and test metrics made up per setting and seed): each model's
    row is its grid point with the best valid metric, not the best test one; the seed table
    holds mean and standard deviation; the tables carry Acc@K beside R@K and the papers'
    numbers only where they compare."""
    import types

    from geosid.pipeline import benchmark_run as B
    from geosid.pipeline.benchmark_report import render

    def metrics(value):
        keys = [f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)] + ["acc@1", "mrr@20", "geo_reward@10"]
        return {k: value for k in keys}

    # valid favours lr 0.003 for SASRec, defaults elsewhere; test would favour "small"
    valid = {("sasrec", "lr0.003"): 0.5, ("oneloc", ""): 0.6}
    trained = []

    class Stub(B._Bench):
        def train(self, method, setting, seed=0):
            key = "".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in setting.items())
            trained.append((method.model, key, seed))
            test = 0.9 if key == "sizesmall" else 0.3 + 0.01 * seed
            return {
                "eval": {
                    method.model if method.model in ("sasrec", "gru") else "oneloc": metrics(test),
                    "repeat": metrics(0.2),
                    **{k: metrics(0.1) for _, k in B.BASELINE_ROWS},
                },
                "valid": valid.get((method.model, key), 0.1),
                "minutes": 1.0,
                "run_id": f"r-{method.model}-{key}-{seed}",
                "model": method.model,
                "epochs": 4,
                "best_epoch": 1,
                "setting": B.setting_name(setting),
            }

    ctx = types.SimpleNamespace(lake=types.SimpleNamespace(reports_dir=lambda *p: tmp_path.joinpath(*p)), log=lambda *_: None)
    report = B.BenchmarkReport("trajectory")
    report.stats = {"items": 3, "targets": {"train": 1, "valid": 1, "test": 1}, "repeat_share_test": 0.5, "users": 2}
    report.rules = {k: metrics(0.15) for _, k in B.BASELINE_ROWS}  # scored by this benchmark, not the runs' records
    bench = Stub(ctx, "trajectory", report, {"geo": "g", "text": "t"}, TrainConfig())
    chosen = {m.label: bench.tune(m, B.GRID) for m in B.METHODS}
    assert chosen["SASRec"] == {"lr": 3e-3} and chosen["OneLoc"] == {}  # by valid, though "small" scores best on test
    assert len(trained) == len(B.METHODS) * len(B.GRID)
    assert sum(g["chosen"] for g in report.grid) == len(B.METHODS)
    bench.seeds(B.METHODS[-1], chosen["OneLoc"], 3)
    assert [t for t in trained if t[2]] == [("oneloc", "", 1), ("oneloc", "", 2)]
    text = render(report)
    assert "0.3100 ± 0.0100" in text  # seeds 0.30, 0.31, 0.32
    assert "Acc@1" in text and "R@5 = Acc@5" in text and "STHGCN" in text and "0.2734" in text
    assert "| SASRec |" in text and "lr 0.003" in text
    assert "| repeat | 0.1500 | 0.1500 |" in text and "| repeat | 0.1000" not in text
    assert "STHGCN" not in render(B.BenchmarkReport("user_chrono", stats=report.stats, rows=report.rows))
    assert (tmp_path / "benchmark" / "trajectory" / "results.md").read_text().startswith("**trajectory**")


# ---------------------------------------------------------------------------------------
# The trainer end to end on a tiny Spark-built corpus: one pretrained run ("pre") and its
# DPO run ("aligned") shared by the tests below, each test one concern.

E2E = TrainConfig(epochs=2, batch_size=16, max_history=8, beam=20, dpo_requests=20, dpo_candidates=5)
quiet = lambda *_: None


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    from test_corpus import tiny_checkin_corpus

    from geosid.lake import Lake
    from geosid.trainer.dpo import dpo
    from geosid.trainer.training import pretrain

    lake = Lake(tmp_path_factory.mktemp("trained") / "lake", spark)
    tiny_checkin_corpus(spark, lake)
    pre = pretrain(lake.root, E2E, run_id="pre", log=quiet)
    aligned = dpo(lake.root, "pre", run_id="aligned", log=quiet)
    return lake, pre, aligned


def test_a_run_records_its_pinned_table_versions_and_rows(trained):
    from test_corpus import V

    from geosid.schemas import corpus
    from geosid.trainer.runs import read_run

    lake, pre, _ = trained
    record = read_run(lake.root, "pre")  # what was written, read back
    assert record.run_id == pre.run_id and record.metrics["train_loss"] == pre.metrics["train_loss"]
    assert record.table_versions == pre.table_versions
    assert record.table_versions["corpus.training_sequences"] == lake.table_version(corpus.TRAINING_SEQUENCES)
    assert record.codebook_version == V and record.rows["test"] == 20


def test_a_run_scores_the_model_and_every_rule_with_the_same_metrics(trained):
    _, pre, _ = trained
    evaluation = pre.metrics["eval"]
    assert {"oneloc", "most_popular", "nearest_popular", "repeat", "recent", "markov", "markov_user"} <= set(evaluation)
    assert set(evaluation["oneloc"]) == {f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)} | {"geo_reward@10", "acc@1", "mrr@20"} | {
        f"{part}_{m}" for part in ("repeat", "new") for m in ("recall@5", "ndcg@5", "recall@20")
    }
    assert evaluation["oneloc"]["recall@20"] >= evaluation["oneloc"]["recall@5"]


def test_dpo_writes_its_pairs_without_near_ties_and_scores_held_out_preferences(trained):
    from deltalake import DeltaTable

    lake, pre, aligned = trained
    pairs = DeltaTable(str(lake.root / "corpus" / "preference_pairs")).to_pyarrow_table().to_pylist()
    assert len(pairs) == aligned.metrics["pairs"]["pairs"] > 0
    assert all(p["chosen_reward"] >= p["rejected_reward"] + 0.1 and p["run_id"] == "aligned" for p in pairs)
    epoch = aligned.metrics["dpo"][0]
    assert 0 <= epoch["train_accuracy"] <= 1 and 0 <= epoch["heldout_accuracy"] <= 1 and epoch["heldout_margin"] is not None
    assert aligned.metrics["pairs"]["heldout"]["pairs"] > 0 and aligned.metrics["pairs"]["mean_reward_gap"] >= 0.1
    assert aligned.parent == "pre" and aligned.table_versions == pre.table_versions


def test_the_same_snapshot_and_seed_train_the_same_run(trained):
    from geosid.trainer.training import pretrain

    lake, pre, _ = trained
    twin = pretrain(lake.root, E2E, run_id="pre-twin", log=quiet)
    assert twin.metrics["train_loss"] == pre.metrics["train_loss"] and twin.metrics["eval"]["oneloc"] == pre.metrics["eval"]["oneloc"]


def test_a_run_stopped_after_an_epoch_resumes_to_the_uninterrupted_run(trained):
    from geosid.trainer.training import pretrain

    lake, pre, _ = trained
    cut = pretrain(lake.root, E2E, run_id="cut", log=quiet, stop_after_epochs=1)  # as a kill would
    assert cut.metrics["stopped"] == "asked" and "eval" not in cut.metrics
    resumed = pretrain(lake.root, E2E, run_id="cut", log=quiet, resume=True)
    assert resumed.metrics["train_loss"] == pre.metrics["train_loss"]
    assert resumed.metrics["eval"]["oneloc"] == pre.metrics["eval"]["oneloc"]


def test_evaluating_a_run_again_gives_its_recorded_numbers(trained):
    from geosid.trainer.evaluation import eval_run

    lake, _, aligned = trained
    assert eval_run(lake.root, "aligned")["oneloc"] == aligned.metrics["eval"]["oneloc"]  # the same pinned data


def test_dpo_options_replace_the_parents_and_unknown_ones_are_refused(trained):
    from geosid.errors import InvalidRequestError
    from geosid.pipeline.train import parent_config

    lake, _, _ = trained
    assert parent_config(lake.root, "pre", {"dpo_epochs": 1}) == dataclasses.replace(E2E, dpo_epochs=1)
    with pytest.raises(InvalidRequestError, match="unknown training option"):
        parent_config(lake.root, "pre", {"dpo_epoch": 1})


def test_dpo_sweeps_keep_earlier_points_and_give_each_learning_rate_its_control(spark, trained):
    from geosid.config import Settings
    from geosid.pipeline.context import Context
    from geosid.pipeline.sweep_run import dpo_sweep

    lake, _, _ = trained
    ctx = Context(Settings(lake_root=lake.root), spark, lake, quiet)
    sweep = dpo_sweep("pre", lambdas=(0.5,), betas=(0.2,), changes={"dpo_epochs": 1}, ctx=ctx)
    assert [r["label"] for r in sweep.rows] == ["pretrained", "control (lambda 0)", "DPO lambda 0.5, beta 0.2"]
    assert sweep.rows[1]["lambda"] == 0.0 and sweep.rows[2]["heldout_accuracy"] is not None
    assert all(p.exists() for p in sweep.paths) and "held-out preference accuracy" in sweep.markdown
    # another DPO learning rate: its own runs and control, the first sweep's points kept beside them
    other = dpo_sweep("pre", lambdas=(0.5,), betas=(0.2,), changes={"dpo_epochs": 1, "dpo_lr": 0.002}, ctx=ctx)
    assert len(other.rows) == 5 and len({r["run_id"] for r in other.rows}) == 5
    assert other.rows[4]["control"] == other.rows[3]["run_id"] != sweep.rows[1]["run_id"] and "lr 0.002" in other.rows[4]["steps"]
    more = dpo_sweep("pre", lambdas=(1.0,), betas=(0.2,), changes={"dpo_epochs": 1, "dpo_lr": 0.002}, ctx=ctx)
    assert [r["run_id"] for r in more.rows[:5]] == [r["run_id"] for r in other.rows] and more.rows[5]["control"] == other.rows[3]["run_id"]
