"""The training loop's parts against hand-computed values, and resumption: a run interrupted after
an epoch or in the middle of one ends bit for bit as an uninterrupted one."""

import json
import math
import random
import signal
from pathlib import Path

import pytest
import torch
import yaml

from exposure_cli import fileio, stop
from exposure_cli import train as train_mod
from exposure_cli.batching import bucketed_batches, collate, epoch_batches
from exposure_cli.methods import available
from exposure_cli.model import ModelConfig, UniLM
from exposure_cli.spec import MethodSpec, spec_from_dict
from exposure_cli.train import lr_factor, make_optimizer, run_one
from grids import write_split


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------- schedule


def test_lr_factor_by_hand():
    # warm-up of 4 steps: 1/4, 2/4, 3/4, 4/4; then over the 10 - 4 = 6 remaining steps
    assert [lr_factor(s, 4, 10, "constant") for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [lr_factor(s, 4, 10, "linear") for s in (3, 4, 7, 10, 12)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    assert lr_factor(7, 4, 10, "cosine") == pytest.approx(0.5)  # half-way: cos(π/2) = 0
    assert lr_factor(5, 4, 10, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 6)))
    assert lr_factor(0, 0, 10, "linear") == 1.0 and lr_factor(10, 0, 10, "cosine") == pytest.approx(0.0)


# -------------------------------------------------------------------------- batches


def test_bucketed_batches_partition_the_data_and_keep_lengths_close():
    rng = random.Random(0)
    lengths = [rng.randint(5, 300) for _ in range(1000)]
    batches = bucketed_batches(lengths, 16, random.Random(1), bucket=10)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000))  # every example exactly once
    assert sum(len(b) < 16 for b in batches) <= math.ceil(1000 / 160)  # only a chunk's last batch is short
    # a batch is a sorted run of a 160-example chunk: its lengths span about range × 16/160, where
    # 16 random examples would span about range × 15/17
    spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert sum(spans) / len(spans) < 0.15 * (max(lengths) - min(lengths))
    assert all([lengths[i] for i in b] == sorted(lengths[i] for i in b) for b in batches)
    # the order is random and reproducible
    again = bucketed_batches(lengths, 16, random.Random(1), bucket=10)
    assert again == batches and bucketed_batches(lengths, 16, random.Random(2), bucket=10) != batches


def test_without_bucketing_an_epoch_is_consecutive_slices_of_one_plain_shuffle():
    """train.bucket: false, as the study's scripts: shuffle, cut consecutive batches (the last one short)."""
    lengths = [random.Random(3).randint(5, 300) for _ in range(100)]
    batches = epoch_batches(lengths, 16, random.Random(7), bucket=False)
    order = list(range(100))
    random.Random(7).shuffle(order)  # the same generator's plain shuffle, by hand
    assert batches == [order[s:s + 16] for s in range(0, 100, 16)]
    assert epoch_batches(lengths, 16, random.Random(7), bucket=True) == bucketed_batches(lengths, 16, random.Random(7))


# -------------------------------------------------------------------------- the loss


def test_label_smoothing_is_the_mix_of_nll_and_the_uniform_cross_entropy():
    torch.manual_seed(0)
    model = UniLM(ModelConfig(vocab_size=20, hidden=16, layers=1, heads=2, dropout=0.0)).double().eval()
    batch = collate([([2, 10, 11, 3, 12, 13, 3], [0, 0, 0, 0, 1, 1, 1]), ([2, 14, 3, 15, 3], [0, 0, 0, 1, 1])])
    eps = 0.1
    with torch.no_grad():
        logp = torch.log_softmax(model(batch.input_ids, batch.segment_ids, batch.pad_mask), -1)
        sel = batch.labels != -100
        nll = -logp[sel].gather(1, batch.labels[sel][:, None]).squeeze(1)
        uniform = -logp[sel].mean(-1)
        expected = ((1 - eps) * nll + eps * uniform).mean()
        assert model.target_loss(batch, label_smoothing=eps).item() == pytest.approx(expected.item(), rel=1e-12)


def test_no_decay_group_exempts_biases_and_layernorms():
    model = UniLM(ModelConfig(vocab_size=20, hidden=16, layers=1, heads=2))
    spec = spec_from_dict({"name": "x", "train": {"weight_decay": 0.01, "no_decay_norm_bias": True, "adam_eps": 1e-6}})
    opt = make_optimizer(model, spec.train)
    decay, no_decay = opt.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0 and decay["eps"] == 1e-6
    assert all(n.endswith("bias") or "LayerNorm" in n for n in (names[id(p)] for p in no_decay["params"]))
    assert all(p.dim() == 2 for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    default = make_optimizer(model, spec_from_dict({"name": "x"}).train)
    assert len(default.param_groups) == 1  # today's behaviour: every parameter decays


# ----------------------------------------------------------------------- a real run




@pytest.fixture()
def tiny_spec(tmp_path):
    rng = random.Random(0)
    for split, n in [("train", 80), ("dev", 8), ("test", 12)]:
        write_split(tmp_path / f"{split}.tsv", n, rng)

    def make(**train):
        return spec_from_dict({
            "name": "t", "data": {s: str(tmp_path / f"{s}.tsv") for s in ("train", "dev", "test")},
            "model": {"layers": 1, "hidden": 32, "heads": 2, "max_len": 48, "max_target_len": 8, "dropout": 0.1},
            "train": {"epochs": 3, "batch_size": 8, "lr": 3e-3, "seeds": [0], "dev_size": 8, "log_every": 1,
                      "checkpoint_seconds": 0, **train},
            "decode": {"beams": [1, 2], "max_len": 8}})
    return make


def _finished(run_dir: Path):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for k in ("train_seconds", "train_cpu_seconds", "dev_seconds", "eval_seconds"):
        metrics.pop(k)
    best = torch.load(run_dir / "best.pt", weights_only=True)
    preds = {k: (run_dir / f"predictions.beam{k}.tsv").read_text(encoding="utf-8") for k in (1, 2)}
    log = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    losses = [(x["step"], x["loss"]) for x in log if "step" in x]
    return metrics, best, preds, losses


def _same(a, b):
    ma, ba, pa, la = a
    mb, bb, pb, lb = b
    assert ma == mb and pa == pb and la == lb
    assert ba["epoch"] == bb["epoch"] and all(torch.equal(ba["model"][k], bb["model"][k]) for k in ba["model"])


class Crash(Exception):
    pass


def _killed_at_step_and_resumed(monkeypatch, spec, method, d: Path, crash_at: int, saved: tuple) -> Path:
    """Run until the process "dies" at its crash_at-th training step, check that last.pt holds
    (epoch, batch_in_epoch, step) == saved, then rerun the same run to its end; its directory."""
    real_step, calls, cpu = train_mod.train_step, {"n": 0}, torch.device("cpu")

    def step_then_crash(run, batch, log):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise Crash()
        return real_step(run, batch, log)

    monkeypatch.setattr(train_mod, "train_step", step_then_crash)
    with pytest.raises(Crash):
        run_one(spec, method, 0, d, cpu)
    monkeypatch.setattr(train_mod, "train_step", real_step)
    ck = torch.load(d / "last.pt", weights_only=True)
    assert (ck["state"]["epoch"], ck["state"]["batch_in_epoch"], ck["state"]["step"]) == saved
    run_one(spec, method, 0, d, cpu)
    return d


def _killed_after_selection(monkeypatch, spec, method, d: Path, epoch: int) -> None:
    """Run until the process "dies" right after epoch `epoch` was selected and checkpointed."""
    real_select = train_mod.select_on_dev

    def select_then_crash(run, report=train_mod._no_report):
        dev = real_select(run, report)
        if run.state.epoch == epoch:
            raise Crash()
        return dev

    monkeypatch.setattr(train_mod, "select_on_dev", select_then_crash)
    with pytest.raises(Crash):
        run_one(spec, method, 0, d, torch.device("cpu"))
    monkeypatch.setattr(train_mod, "select_on_dev", real_select)


def test_a_run_records_the_cpu_seconds_of_its_training_apart_from_time_spent_waiting(tmp_path, tiny_spec,
                                                                                     monkeypatch, one_thread):
    """train_cpu_seconds is the process's CPU time over the training: a run made to sleep 0.1 s a step
    (as one stopped or waiting for a core) has it in train_seconds, not in train_cpu_seconds. A run
    resumed from a last.pt written before the record existed claims none."""
    import time

    real_step, cpu = train_mod.train_step, torch.device("cpu")

    def sleepy_step(run, batch, log):
        time.sleep(0.1)
        return real_step(run, batch, log)

    monkeypatch.setattr(train_mod, "train_step", sleepy_step)
    spec = tiny_spec(epochs=2)
    m = run_one(spec, MethodSpec("baseline"), 0, tmp_path / "slept", cpu)
    assert m["train_seconds"] >= 20 * 0.1  # 2 epochs × 10 batches
    assert 0 < m["train_cpu_seconds"] <= m["train_seconds"] - 20 * 0.1 * 0.9
    monkeypatch.setattr(train_mod, "train_step", real_step)

    d = tmp_path / "old"
    _killed_after_selection(monkeypatch, spec, MethodSpec("baseline"), d, 1)
    ck = torch.load(d / "last.pt", weights_only=True)
    del ck["state"]["train_cpu_seconds"]  # as an older version wrote it
    fileio.torch_save(d / "last.pt", ck)
    resumed = run_one(spec, MethodSpec("baseline"), 0, d, cpu)
    assert resumed["epochs"] == 2 and "train_cpu_seconds" not in resumed


@pytest.mark.parametrize("bucket", [True, False])
def test_a_run_interrupted_after_an_epoch_or_mid_epoch_ends_as_an_uninterrupted_one(tmp_path, tiny_spec, monkeypatch,
                                                                                    bucket):
    spec = tiny_spec(bucket=bucket)
    method = MethodSpec("random_replace")  # draws from its own stream too
    cpu = torch.device("cpu")
    whole = tmp_path / "whole"
    run_one(spec, method, 0, whole, cpu)
    reference = _finished(whole)

    # 1. killed right after epoch 1 was selected and checkpointed
    d1 = tmp_path / "after-epoch"
    _killed_after_selection(monkeypatch, spec, method, d1, 1)
    ck = torch.load(d1 / "last.pt", weights_only=True)
    assert ck["state"]["epoch"] == 1 and ck["state"]["batch_in_epoch"] == 0
    run_one(spec, method, 0, d1, cpu)
    _same(_finished(d1), reference)

    # 2. killed in the middle of epoch 2, with a checkpoint every step
    # epoch 2 (10 batches an epoch), after 4 of its steps were saved
    d2 = _killed_at_step_and_resumed(monkeypatch, tiny_spec(checkpoint_seconds=1e-9, bucket=bucket), method,
                                     tmp_path / "mid-epoch", 15, saved=(1, 4, 14))
    _same(_finished(d2), reference)


@pytest.mark.parametrize("method", available())
def test_every_method_resumes_mid_epoch_under_the_shipped_settings(tmp_path, method, monkeypatch):
    """csl.yaml's settings in small: warm-up then linear decay (the learning rate differs at every
    step), fp32, label smoothing 0.1, the copy pointer with continuation and coverage, pre-LN. A
    run killed in the middle of epoch 2 (checkpoint after every step) and resumed ends bit for bit
    as the uninterrupted run: losses and learning rates of every step, weights, predictions."""
    rng = random.Random(0)
    for split, n in [("train", 40), ("dev", 4), ("test", 4)]:
        write_split(tmp_path / f"{split}.tsv", n, rng)
    spec = spec_from_dict({
        "name": "t", "data": {s: str(tmp_path / f"{s}.tsv") for s in ("train", "dev", "test")},
        "model": {"layers": 1, "hidden": 16, "heads": 2, "max_len": 40, "max_target_len": 6, "dropout": 0.1,
                  "pre_ln": True, "copy": True, "copy_continuation": 2, "copy_coverage": True},
        "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "warmup": 3, "schedule": "linear", "bf16": False,
                  "label_smoothing": 0.1, "seeds": [0], "dev_size": 4, "log_every": 1, "checkpoint_seconds": 1e-9},
        "decode": {"beams": [1, 2], "max_len": 6}})
    m, cpu = MethodSpec(method), torch.device("cpu")
    run_one(spec, m, 0, tmp_path / "whole", cpu)
    reference = _finished(tmp_path / "whole")
    lrs = [x["lr"] for x in map(json.loads, (tmp_path / "whole" / "train.jsonl").read_text().splitlines()) if "lr" in x]
    # the log's lr is the one set for the next step: warm-up 1/3, 2/3, 3/3 (step 0's is not logged),
    # then linear decay over the 7 remaining steps
    assert lrs == pytest.approx([3e-3 * f for f in (2 / 3, 1, 1, 6 / 7, 5 / 7, 4 / 7, 3 / 7, 2 / 7, 1 / 7, 0)])

    # epoch 2 (5 batches an epoch), after 2 of its steps were saved
    d = _killed_at_step_and_resumed(monkeypatch, spec, m, tmp_path / "resumed", 8, saved=(1, 2, 7))
    _same(_finished(d), reference)



@pytest.fixture
def ray_task_signals(monkeypatch):
    """SIGINT handled as in a Ray task (its cancel is an interrupt, repeated every few seconds until
    the task ends), with the process's handler and stop state restored afterwards."""
    previous = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(stop, "_state", dict(stop._state))
    stop.install((signal.SIGINT,), patient=True)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("lands", ["after the epoch's last step", "in the dev decoding, again in the save",
                                   "after the epoch's selection"])
def test_a_stop_between_an_epochs_steps_and_its_selection_saves_the_trained_epoch(tmp_path, tiny_spec, monkeypatch,
                                                                                   ray_task_signals, lands):
    """No periodic checkpoint: a signal after epoch 1's last step, or during its dev decoding and
    again while the run saves (Ray re-sends its cancel), leaves last.pt holding the whole trained
    epoch, nothing pending, and the resumed run ends as the uninterrupted one. (Before, the first
    raised outside any deferred region and the second inside the save: no last.pt at all.) A signal
    after the selection stops before epoch 2's first step (before, it trained one step more)."""
    spec, method, cpu = tiny_spec(), MethodSpec("random_replace"), torch.device("cpu")
    run_one(spec, method, 0, tmp_path / "whole", cpu)
    reference = _finished(tmp_path / "whole")
    real_epoch, real_decode, real_save = train_mod.train_epoch, train_mod.decode_texts, train_mod.save_last
    real_select = train_mod.select_on_dev
    if lands == "after the epoch's selection":
        def select_on_dev(run, report=train_mod._no_report):
            dev = real_select(run, report)
            signal.raise_signal(signal.SIGINT)
            return dev
        monkeypatch.setattr(train_mod, "select_on_dev", select_on_dev)
    elif lands.startswith("after"):
        def train_epoch(run, report=train_mod._no_report):
            real_epoch(run, report)
            signal.raise_signal(signal.SIGINT)
        monkeypatch.setattr(train_mod, "train_epoch", train_epoch)
    else:
        def decode_texts(*a, **kw):
            signal.raise_signal(signal.SIGINT)
            return real_decode(*a, **kw)

        def save_last(run):
            signal.raise_signal(signal.SIGINT)
            real_save(run)
        monkeypatch.setattr(train_mod, "decode_texts", decode_texts)
        monkeypatch.setattr(train_mod, "save_last", save_last)
    d = tmp_path / "stopped"
    with pytest.raises(stop.Interrupted):
        run_one(spec, method, 0, d, cpu)
    ck = torch.load(d / "last.pt", weights_only=True)
    where = (1, 0, 10) if lands.endswith("selection") else (0, 10, 10)
    assert (ck["state"]["epoch"], ck["state"]["batch_in_epoch"], ck["state"]["step"]) == where
    assert not stop.pending()
    monkeypatch.undo()
    run_one(spec, method, 0, d, cpu)
    _same(_finished(d), reference)

def test_scheduled_sampling_is_fed_the_real_step_count(tmp_path, tiny_spec):
    """A linear schedule over 2 epochs of 10 steps: step s (1-based) trains at p = 0.5 · (s − 1)/20,
    as its log line says; replaced shares rise with it."""
    d = tmp_path / "run"
    run = train_mod.prepare_run(tiny_spec(epochs=2), MethodSpec("scheduled_sampling", {"schedule": "linear",
                                "max_prob": 0.5}), 0, d, torch.device("cpu"))
    for _ in range(2):
        train_mod.train_epoch(run)
        run.state.epoch, run.state.batch_in_epoch = run.state.epoch + 1, 0  # select_on_dev's part that counts
    steps = [x for x in map(json.loads, (d / "train.jsonl").read_text().splitlines()) if "step" in x]
    assert [x["step"] for x in steps] == list(range(1, 21))
    assert [x["ss_prob"] for x in steps] == pytest.approx([0.5 * s / 20 for s in range(20)], abs=1e-12)
    first, last = steps[:5], steps[-5:]
    assert sum(x["ss_replaced"] for x in first) < sum(x["ss_replaced"] for x in last)


def test_selection_keeps_the_best_dev_epoch_and_test_decoding_uses_it(tmp_path, tiny_spec, monkeypatch):
    """Dev BLEU 3, 5, 4 over three epochs: epoch 2's weights are best.pt, and the test predictions
    are those of epoch 2's weights, not of the last ones."""
    bleus = iter([3.0, 5.0, 4.0])
    real_scores = train_mod.study_scores
    snapshots = {}

    def fake_dev_scores(preds, refs, lowercase=True):
        out = real_scores(preds, refs, lowercase)
        return {**out, "bleu": next(bleus)}

    real_select = train_mod.select_on_dev

    def select(run, report=train_mod._no_report):
        snapshots[run.state.epoch + 1] = {k: v.clone() for k, v in run.model.state_dict().items()}
        return real_select(run, report)

    monkeypatch.setattr(train_mod, "select_on_dev", select)
    monkeypatch.setattr(train_mod, "study_scores", fake_dev_scores)
    real_eval = train_mod.evaluate_run

    def evaluate(run, report=train_mod._no_report):
        monkeypatch.setattr(train_mod, "study_scores", real_scores)  # the test set is scored for real
        return real_eval(run, report)

    monkeypatch.setattr(train_mod, "evaluate_run", evaluate)
    d = tmp_path / "run"
    m = run_one(tiny_spec(), MethodSpec("baseline"), 0, d, torch.device("cpu"))
    assert (m["best_epoch"], m["dev_bleu"], m["epochs"]) == (2, 5.0, 3)
    best = torch.load(d / "best.pt", weights_only=True)
    assert best["epoch"] == 2
    assert all(torch.equal(best["model"][k], snapshots[2][k]) for k in snapshots[2])
    assert not all(torch.equal(snapshots[3][k], snapshots[2][k]) for k in snapshots[2])

    from exposure_cli.decode.beam import decode_texts
    from exposure_cli.tokenizers import CharTokenizer

    model = UniLM(UniLM.from_checkpoint(d / "best.pt").config)
    tok = CharTokenizer.load(d)
    sources = [line.split("\t")[1] for line in (tmp_path / "test.tsv").read_text(encoding="utf-8").splitlines()]
    preds = [line.split("\t")[2] for line in (d / "predictions.beam1.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    for epoch, expect_equal in ((2, True), (3, False)):
        model.load_state_dict(snapshots[epoch])
        ours = decode_texts(model.eval(), tok, sources, 1, 48 - 8 - 2, 8)
        assert (ours == preds) == expect_equal, epoch


def _scripted_dev_bleu(monkeypatch, bleus: list[float]) -> None:
    """Dev BLEU follows `bleus`, one per selection; the test set is scored for real."""
    seq, real_scores = iter(bleus), train_mod.study_scores

    def fake(preds, refs, lowercase=True):
        return {**real_scores(preds, refs, lowercase), "bleu": next(seq)}

    monkeypatch.setattr(train_mod, "study_scores", fake)
    real_eval = train_mod.evaluate_run

    def evaluate(run, report=train_mod._no_report):
        monkeypatch.setattr(train_mod, "study_scores", real_scores)
        return real_eval(run, report)

    monkeypatch.setattr(train_mod, "evaluate_run", evaluate)


def test_early_stopping_ends_patience_epochs_after_the_best_also_across_a_kill(tmp_path, tiny_spec, monkeypatch):
    """Dev BLEU 3, 5, 5, 4, 9 with patience 2 and 5 epochs: epoch 2 is best, epochs 3 (a tie is no
    improvement) and 4 do not improve, so training ends after epoch 4 and epoch 5 never runs. A
    process killed after epoch 3's selection resumes and stops at the same place; a rerun of the
    finished run trains nothing more."""
    spec, cpu = tiny_spec(epochs=5, patience=2), torch.device("cpu")
    _scripted_dev_bleu(monkeypatch, [3.0, 5.0, 5.0, 4.0, 9.0])
    whole = tmp_path / "whole"
    m = run_one(spec, MethodSpec("baseline"), 0, whole, cpu)
    assert (m["best_epoch"], m["dev_bleu"], m["epochs"], m["stopped_early"]) == (2, 5.0, 4, True)
    assert [r["epoch"] for r in map(json.loads, (whole / "train.jsonl").read_text().splitlines()) if "dev" in r] == [1, 2, 3, 4]

    _scripted_dev_bleu(monkeypatch, [3.0, 5.0, 5.0, 4.0, 9.0])
    d = tmp_path / "killed"
    _killed_after_selection(monkeypatch, spec, MethodSpec("baseline"), d, 3)
    run_one(spec, MethodSpec("baseline"), 0, d, cpu)  # the scripted sequence goes on: epoch 4 gets 4.0
    _same(_finished(d), _finished(whole))
    assert run_one(spec, MethodSpec("baseline"), 0, d, cpu)["epochs"] == 4

    # without patience every epoch runs and the late best wins
    _scripted_dev_bleu(monkeypatch, [3.0, 5.0, 5.0, 4.0, 9.0])
    m = run_one(tiny_spec(epochs=5), MethodSpec("baseline"), 0, tmp_path / "all", cpu)
    assert (m["best_epoch"], m["epochs"], m["stopped_early"]) == (5, 5, False)


def test_split_limits_take_the_first_examples_in_file_order(tmp_path, tiny_spec):
    spec = tiny_spec(dev_size=3)
    spec.data.train_limit, spec.data.test_limit = 20, 5
    run = train_mod.prepare_run(spec, MethodSpec("baseline"), 0, tmp_path / "run", torch.device("cpu"))
    lines = {s: (tmp_path / f"{s}.tsv").read_text(encoding="utf-8").splitlines() for s in ("train", "dev", "test")}
    assert [p.target for p in run.test_pairs] == [line.split("\t")[0] for line in lines["test"][:5]]
    assert [p.target for p in run.dev_pairs] == [line.split("\t")[0] for line in lines["dev"][:3]]
    assert len(run.train_ex) == 20 and run.total_steps == math.ceil(20 / 8) * 3


def test_gradient_clipping_bounds_the_update_direction(tmp_path, tiny_spec, monkeypatch):
    """With clip c the optimizer sees gradients of global norm min(‖g‖, c): checked at every step."""
    seen = []
    real_step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for g in self.param_groups
                                                          for p in g["params"] if p.grad is not None])).item())
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    run = train_mod.prepare_run(tiny_spec(grad_clip=0.05, epochs=1), MethodSpec("baseline"), 0, tmp_path / "r",
                                torch.device("cpu"))
    train_mod.train_epoch(run)
    assert len(seen) == 10 and max(seen) <= 0.05 * (1 + 1e-5)
    assert min(seen) > 0.05 * 0.999  # early gradients are far larger than 0.05: every step was clipped
    seen.clear()
    run = train_mod.prepare_run(tiny_spec(grad_clip=None, epochs=1), MethodSpec("baseline"), 0, tmp_path / "n",
                                torch.device("cpu"))
    train_mod.train_epoch(run)
    assert max(seen) > 0.5  # unclipped


def test_a_diverging_run_stops_with_its_reason_and_the_grid_goes_on(tmp_path, tiny_spec):
    spec = tiny_spec(lr=1e30)  # the first update sends the weights to inf
    d = tmp_path / "run"
    out = run_one(spec, MethodSpec("baseline"), 0, d, torch.device("cpu"))
    failed = json.loads((d / "failed.json").read_text())
    assert out["failed"] == failed and failed["what"] in ("loss", "gradient") and failed["epoch"] == 1
    assert failed["step"] >= 2 and "non-finite" in failed["reason"] and not (d / "metrics.json").exists()
    # a rerun without --retry-failed reports it again without training
    assert run_one(spec, MethodSpec("baseline"), 0, d, torch.device("cpu")) == out
    assert yaml.safe_load((d / "spec.yaml").read_text())["run"]["seed"] == 0
