"""The GPU path, exercised on CPU: the precision a CUDA machine would choose, the fp16 gradient scaler
in a real training step (skipped step on overflow, state in last.pt), the fused attention taking
the dropout itself, and the stop of a GPU-sized profile on a CPU."""

import math

import pytest
import torch
from typer.testing import CliRunner

from exposure_cli import model as model_mod
from exposure_cli import train as train_mod
from exposure_cli.batching import collate
from exposure_cli.cli import app
from exposure_cli.errors import UserError
from exposure_cli.gpu import Amp, amp_for, cpu_estimate, precision, require_gpu, to_device
from exposure_cli.model import ModelConfig, UniLM, plain_attention
from exposure_cli.spec import MethodSpec, spec_from_dict


pytestmark = pytest.mark.usefixtures("one_thread")


def test_precision_is_bf16_where_supported_else_fp16_with_a_scaler():
    assert precision("cuda", bf16_supported=True) == (torch.bfloat16, False)
    assert precision("cuda", bf16_supported=False) == (torch.float16, True)
    assert precision("cpu", bf16_supported=False) == (torch.bfloat16, False)  # CPU autocast is bf16
    cpu = amp_for(torch.device("cpu"), bf16=True)
    assert cpu.dtype == torch.bfloat16 and cpu.scaler is None
    forced = amp_for(torch.device("cpu"), bf16=True, scaler=True)
    assert forced.dtype == torch.float16 and isinstance(forced.scaler, torch.amp.GradScaler)


def test_fused_attention_everywhere_but_double_backward_and_cpu_dropout():
    assert not plain_attention("cuda", training=True, dropout=0.1, double_backward=False)  # SDPA's own dropout
    assert plain_attention("cuda", training=True, dropout=0.1, double_backward=True)
    assert plain_attention("cpu", training=True, dropout=0.1, double_backward=False)
    assert not plain_attention("cpu", training=True, dropout=0.0, double_backward=False)
    assert not plain_attention("cpu", training=False, dropout=0.1, double_backward=True)


def _batch():
    return collate([([2, 10, 11, 3, 12, 13, 3], [0, 0, 0, 0, 1, 1, 1]), ([2, 14, 3, 15, 3], [0, 0, 0, 1, 1])])


def test_the_cuda_attention_path_applies_dropout_inside_sdpa(monkeypatch):
    torch.manual_seed(0)
    model = UniLM(ModelConfig(vocab_size=20, hidden=32, layers=2, heads=4, dropout=0.3))
    b = _batch()
    with torch.no_grad():
        ref = model.eval()(b.input_ids, b.segment_ids, b.pad_mask)
    monkeypatch.setattr(model_mod, "plain_attention", lambda *a: False)  # what CUDA chooses
    model.train()
    for m in model.modules():  # only the attention's own dropout left
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(k["dropout_p"]) or real(*a, **k))
    torch.manual_seed(1)
    out = model(b.input_ids, b.segment_ids, b.pad_mask)
    assert calls == [0.3, 0.3]  # each layer's SDPA got the dropout
    assert not torch.allclose(out[b.pad_mask], ref[b.pad_mask], atol=1e-3)
    out[b.pad_mask].sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.bert.encoder.parameters())


def test_to_device_on_cpu_keeps_the_batch():
    b = _batch()
    moved = to_device(b, torch.device("cpu"))
    assert torch.equal(moved.input_ids, b.input_ids) and torch.equal(moved.labels, b.labels)


@pytest.fixture()
def run(tmp_path, prepared_data):
    spec = spec_from_dict({
        "name": "gpu", "data": {s: str(prepared_data / f"csl/{s}.tsv") for s in ("train", "dev", "test")}
        | {"train_limit": 32, "test_limit": 4},
        "model": {"layers": 1, "hidden": 32, "heads": 2, "max_len": 96, "max_target_len": 16, "dropout": 0.0},
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "dev_size": 4, "seeds": [0]},
        "decode": {"beams": [1], "max_len": 16}})
    r = train_mod.prepare_run(spec, MethodSpec("baseline"), 0, tmp_path / "run", torch.device("cpu"))
    r.amp = amp_for(torch.device("cpu"), bf16=True, scaler=True)  # the fp16 path of GPUs without bf16
    return r


def _step(run, log):
    batch = collate([run.train_ex[i] for i in range(8)], run.tok.pad_id)
    return train_mod.train_step(run, batch, log)


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")  # the scheduler sees the skipped step
def test_the_grad_scaler_path_trains_and_skips_an_overflowing_step(run, tmp_path):
    with open(tmp_path / "log.jsonl", "w") as log:
        before = [p.detach().clone() for p in run.model.parameters()]
        run.amp.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 100)  # the scaled gradient overflows
        assert math.isfinite(_step(run, log))  # no Diverged: the scaler skips the step...
        assert all(torch.equal(a, p) for a, p in zip(before, run.model.parameters()))
        assert run.amp.scaler.get_scale() < 2.0 ** 100  # ...and lowers its scale
        run.amp.scaler = torch.amp.GradScaler("cpu")
        losses = [_step(run, log) for _ in range(5)]
    assert not all(torch.equal(a, p) for a, p in zip(before, run.model.parameters()))
    assert losses[-1] < losses[0]


def test_the_scaler_state_travels_in_last_pt(run):
    run.amp.scaler = torch.amp.GradScaler("cpu", init_scale=1234.0)
    train_mod.save_last(run)
    run.amp = Amp(torch.float16, torch.amp.GradScaler("cpu"))
    train_mod.restore(run)
    assert run.amp.scaler.get_scale() == 1234.0


# ------------------------------------------------------------------------------------ needs_gpu


def _paper_spec(prepared_data, **train):
    return spec_from_dict({"name": "paper", "data": {"train": str(prepared_data / "csl/train.tsv")},
                           "train": {"needs_gpu": True, "cpu_step_seconds": 10.0, "epochs": 20, **train},
                           "methods": ["baseline", "gradient_penalty"]})


def test_a_gpu_profile_on_a_cpu_stops_with_the_cost_unless_cpu_is_asked_for(prepared_data):
    spec = _paper_spec(prepared_data)
    steps, seconds = cpu_estimate(spec, 3000)
    assert steps == 188 * 20 * 2 * 2 and seconds == steps * 10.0
    cpu = torch.device("cpu")
    with pytest.raises(UserError) as e:
        require_gpu(spec, cpu, "auto", 3000)
    msg = str(e.value)
    assert "needs a GPU" in msg and f"{steps:,} training steps" in msg and "--device cpu" in msg and "\n" not in msg
    assert f"{seconds / 3600:.1f} hours" in msg
    require_gpu(spec, cpu, "cpu", 3000)  # asked for explicitly: runs
    require_gpu(spec_from_dict({"name": "x"}), cpu, "auto", 3000)  # not a GPU profile


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the stop on a machine without CUDA")
def test_make_reproduce_without_cuda_stops_at_once_in_one_line(prepared_data, tmp_path):
    args = ["run", "paper/csl.yaml", "--out", str(tmp_path / "out"), "--set", f"model.checkpoint={tmp_path}"]
    args += ["--set", f"data.train={prepared_data / 'csl/train.tsv'}"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.count("\n") == 0 and "paper-csl: this profile needs a GPU" in err and "days on a CPU" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ what only a GPU would show


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled:UserWarning")  # no CUDA here
def test_a_gpu_that_only_emulates_bf16_gets_fp16_with_a_scaler_asked_on_the_runs_device(monkeypatch):
    """A V100 or T4: torch's is_bf16_supported() says True by default (emulated); the run must ask for
    native support, on its own device (cuda:1 here), not on the current one."""
    entered = []

    class Device:
        def __init__(self, d):
            self.d = d

        def __enter__(self):
            entered.append(torch.device(self.d))

        def __exit__(self, *exc):
            entered.pop()

    def is_bf16_supported(including_emulation=True):
        assert entered == [torch.device("cuda:1")], "asked about another device than the run's"
        return including_emulation  # bf16 only by emulation
    monkeypatch.setattr(torch.cuda, "device", Device)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        amp = amp_for(torch.device("cuda:1"), bf16=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    assert amp.dtype == torch.float16 and amp.scaler is not None


def _penalty(model, batch, *, fp16=False, scale=None):
    from exposure_cli.methods import StepContext, get_method

    ctx = StepContext(0, 1, torch.Generator(), loss_scale=scale)
    with torch.autocast("cpu", dtype=torch.float16, enabled=fp16):
        loss, logs = get_method("gradient_penalty").loss(model, batch, ctx)
    return logs["penalty"].item(), ctx


def test_the_exact_penalty_under_fp16_takes_the_scaled_inner_gradient(monkeypatch):
    """PyTorch's AMP recipe for gradient penalties: with the CE ×1e-6 the fp16 inner gradient of the
    loss itself underflows and the penalty comes out 0; scaled by GradScaler's 65536 and unscaled
    after, it matches fp32's."""
    torch.manual_seed(0)
    model = UniLM(ModelConfig(vocab_size=20, hidden=32, layers=2, heads=4, dropout=0.0))
    model.double_backward = True
    small = UniLM.target_loss
    monkeypatch.setattr(UniLM, "target_loss", lambda self, b, **kw: 1e-6 * small(self, b, **kw))
    b = _batch()
    fp32, _ = _penalty(model, b)
    assert 1e-13 < fp32 < 1e-10
    unscaled, _ = _penalty(model, b, fp16=True)
    assert unscaled < 0.01 * fp32  # underflowed: what the penalty was under fp16 before
    scale = torch.amp.GradScaler("cpu").scale(torch.ones(()))
    scaled, ctx = _penalty(model, b, fp16=True, scale=scale)
    assert scaled == pytest.approx(fp32, rel=0.05)
    assert not torch.stack(ctx.overflow).any()


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")  # the scheduler sees the skipped step
@pytest.mark.parametrize("method", [{"gradient_penalty": {}}, {"gradient_penalty": {"backward": "perturbation"}},
                                    {"adversarial": {}}])
def test_an_overflowed_scaled_inner_gradient_skips_the_step_and_is_no_divergence(method, run, tmp_path):
    from exposure_cli.methods import get_method

    (name, params), = method.items()
    run.method = get_method(name, params)
    run.model.double_backward = run.method.needs_double_backward
    before = [p.detach().clone() for p in run.model.parameters()]
    run.amp.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 100)  # the scaled inner gradient overflows
    with open(tmp_path / "log.jsonl", "w") as log:
        _step(run, log)  # no Diverged
        assert all(torch.equal(a, p) for a, p in zip(before, run.model.parameters()))  # skipped
        assert run.amp.scaler.get_scale() < 2.0 ** 100
        run.amp.scaler = torch.amp.GradScaler("cpu")
        assert math.isfinite(_step(run, log))
    assert not all(torch.equal(a, p) for a, p in zip(before, run.model.parameters()))


def test_attention_bias_computes_scores_and_softmax_in_fp32_under_bf16():
    """Scores of 30 ± 2 under bf16 autocast against an fp64 reference of the same bf16 inputs: a bf16
    score near 30 is off by up to 0.06, its probability by up to 6%; computed in fp32 only the bf16
    rounding of the output remains (0.4%)."""
    g = torch.Generator().manual_seed(0)
    B, H, L, D = 2, 2, 8, 8
    q = torch.zeros(B, H, L, D)
    q[..., 0] = 4.0
    k = torch.randn(B, H, L, D, generator=g) * 0.3
    k[..., 0] = (30 + 4 * torch.rand(B, H, L, generator=g) - 2) * D ** 0.5 / 4.0  # q·k/√D = 30 ± 2 (+ noise)
    q, k = q.to(torch.bfloat16), k.to(torch.bfloat16)
    v = torch.eye(L).expand(B, H, L, L).to(torch.bfloat16)  # the output is the probabilities
    mask = torch.ones(B, 1, L, L, dtype=torch.bool)
    s = torch.matmul(q.double(), k.double().transpose(-1, -2)) * D ** -0.5
    assert 27 < s.min() and s.max() < 33
    ref = torch.softmax(s, -1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model_mod.AttentionBias(mask, torch.bfloat16).attend(q, k, v, 0.0)
    assert out.dtype == torch.bfloat16
    rel = ((out.double() - ref).abs() / ref).max().item()
    assert rel < 0.01, rel
