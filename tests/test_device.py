"""The CUDA path proven on a CPU: a whole run on the pretend device `cpu:0` under the device audit
(tests/device_audit.py), which fails where CUDA would fail (host and device tensors mixed, RNG
states or Adam's step counters on the device) and counts the training step's host reads; and
checkpoints written on a GPU, used on a CPU-only machine."""

import random

import pytest
import torch
from typer.testing import CliRunner

from device_audit import DEVICE, DeviceAudit, DeviceError, written_on_cuda
from exposure_cli import diagnose as dg
from exposure_cli import train as train_mod
from exposure_cli.batching import collate
from exposure_cli.cli import app
from exposure_cli.export import export_run
from exposure_cli.decode.generate import generate_lines, load_run
from exposure_cli.gpu import amp_for, to_device
from exposure_cli.methods import METHODS, get_method
from exposure_cli.spec import MethodSpec, spec_from_dict
from grids import write_split

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("device-data")
    rng = random.Random(0)
    for split, n in [("train", 24), ("dev", 4), ("test", 4)]:
        write_split(d / f"{split}.tsv", n, rng)
    return d


def _spec(data, **model):
    return spec_from_dict({
        "name": "device", "data": {s: str(data / f"{s}.tsv") for s in ("train", "dev", "test")},
        "model": {"layers": 1, "hidden": 16, "heads": 2, "max_len": 48, "max_target_len": 8, "dropout": 0.1, **model},
        "train": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "dev_size": 4, "seeds": [0], "log_every": 1},
        "decode": {"beams": [1, 2], "max_len": 8}})


COPY = {"copy": True, "copy_continuation": 2, "copy_coverage": True}
# Every registered method with its defaults, the other forms of the gradient penalty, the pointer model.
CASES = [(m, {}, {}) for m in METHODS.names()] + [
    ("gradient_penalty", {"backward": "perturbation"}, {}), ("gradient_penalty", {"scope": "embedding_rows"}, {}),
    ("baseline", {}, COPY), ("scheduled_sampling", {"predict": "sample"}, COPY)]


def _steps(run, audit, log, n=2, first=0):
    """n training steps; the host reads of device tensors each made."""
    reads = []
    for s in range(first, first + n):
        batch = to_device(collate([run.train_ex[i] for i in range(8 * s, 8 * s + 8)], run.tok.pad_id), run.device)
        audit.take_reads()
        train_mod.train_step(run, batch, log)
        reads.append(audit.take_reads())
        run.state.batch_in_epoch += 1
    return reads


@pytest.mark.parametrize("name,params,model", CASES, ids=[f"{c[0]}{c[1] or ''}{'-copy' if c[2] else ''}" for c in CASES])
def test_a_training_step_of_every_method_keeps_to_the_device_and_reads_it_once(name, params, model, data, tmp_path):
    spec = _spec(data, **model)
    with DeviceAudit().active() as audit:
        run = train_mod.prepare_run(spec, MethodSpec(name, params), 0, tmp_path / "run", DEVICE)
        with open(tmp_path / "log.jsonl", "w") as log:
            reads = _steps(run, audit, log)
    if get_method(name, params).scores_texts:  # decodes and scores texts each step: reads, but no mixing
        assert all(len(r) >= 1 for r in reads), reads
    else:
        assert all(len(r) <= 1 for r in reads), reads


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")  # the scheduler sees a skipped step
@pytest.mark.parametrize("name,params", [("baseline", {}), ("gradient_penalty", {}), ("adversarial", {}),
                                         ("gradient_penalty", {"backward": "perturbation"})])
def test_the_fp16_scaler_step_keeps_to_the_device_and_reads_it_once(name, params, data, tmp_path):
    """fp16 with GradScaler (GPUs without bf16); the scaler's own overflow check is not counted."""
    with DeviceAudit().active() as audit:
        run = train_mod.prepare_run(_spec(data), MethodSpec(name, params), 0, tmp_path / "run", DEVICE)
        run.amp = amp_for(DEVICE, bf16=True, scaler=True)
        with open(tmp_path / "log.jsonl", "w") as log:
            reads = _steps(run, audit, log)
    assert all(len(r) <= 1 for r in reads), reads


def test_a_run_killed_mid_epoch_resumes_decodes_and_is_diagnosed_on_the_device(data, tmp_path):
    """Train, save last.pt mid-epoch (written on "CUDA"), resume from it, select on dev, decode the
    test set, then generate, diagnose and export from best.pt: all on the device."""
    spec, method, out = _spec(data), MethodSpec("baseline"), tmp_path / "run"
    with written_on_cuda(), DeviceAudit().active() as audit:
        run = train_mod.prepare_run(spec, method, 0, out, DEVICE)
        run.epoch_start_rng = run.rng.getstate()
        with open(out / "train.jsonl", "a") as log:
            _steps(run, audit, log, n=1)
        train_mod.save_last(run)  # the kill: only last.pt survives
        resumed = train_mod.prepare_run(spec, method, 0, out, DEVICE)
        audit.check_optimizer(resumed.opt)
        assert resumed.state.step == 1 and resumed.state.batch_in_epoch == 1
        metrics = train_mod.run_one(spec, method, 0, out, DEVICE)
        assert set(metrics["test"]) == {"1", "2"}
        model, tok, rspec = load_run(out, DEVICE)
        lines = generate_lines(model, tok, rspec, ["abcabc甲乙", "丙丁"], 2, 2, DEVICE)
        assert len(lines) == 2
        opts = dg.Options(beams=(1, 2), errors=(0, 1))
        res = dg.diagnose_run(dg.load_run_data(out, opts, DEVICE), opts)
        assert res.record["checks"]["decoder_score_max_abs_diff"] < 1e-3
        export_run(out, tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors").is_file()


def test_a_model_loads_from_best_pt_straight_to_the_device(data, tmp_path):
    """Built and loaded on the host, moved once: not loaded to the device, copied back into a host
    model and moved again."""
    from exposure_cli.model import ModelConfig, UniLM

    model = UniLM(ModelConfig(vocab_size=20, hidden=16, layers=1, heads=2))
    with written_on_cuda():
        torch.save({"model": model.state_dict(), "config": vars(model.config)}, tmp_path / "best.pt")
    with DeviceAudit().active() as audit:
        loaded = UniLM.from_checkpoint(tmp_path / "best.pt", DEVICE)
        assert audit.take_reads() == []
        assert all(p.device == DEVICE for p in loaded.parameters())


def test_the_audit_fails_where_cuda_would():
    """The audit itself: the failures it must catch, each as CUDA would raise it."""
    with DeviceAudit().active() as audit:
        x = torch.ones(3, device=DEVICE)
        assert x.device == DEVICE and torch.arange(2, device=x.device).device == DEVICE
        with pytest.raises(DeviceError):
            x + torch.ones(3)  # a host tensor of rank 1
        x + torch.tensor(2.0)  # a rank-0 host tensor is allowed, as on CUDA
        y = (x * 2).cpu() + torch.ones(3)
        assert y.device == torch.device("cpu") and len(audit.take_reads()) == 1
        x.sum().item(), bool(x.sum() > 0), x[x > 1]
        assert len(audit.take_reads()) == 3
        with pytest.raises(DeviceError):
            torch.set_rng_state(torch.get_rng_state().to(DEVICE))
        with pytest.raises(DeviceError):
            torch.Generator(device=DEVICE).set_state(torch.get_rng_state().to(DEVICE))
        model = torch.nn.Linear(2, 2).to(DEVICE)
        opt = torch.optim.AdamW(model.parameters())
        model(torch.ones(1, 2, device=DEVICE)).sum().backward()
        opt.step()
        audit.check_optimizer(opt)
        for s in opt.state.values():
            s["step"] = s["step"].to(DEVICE)
        with pytest.raises(DeviceError):
            audit.check_optimizer(opt)


# ------------------------------------------------------------- checkpoints written on a GPU


def test_checkpoints_written_on_cuda_load_on_a_cpu_only_machine(data, tmp_path):
    """last.pt and best.pt tagged cuda:0 (as a GPU run writes them) resume, generate, diagnose and
    export here; without map_location torch itself refuses them, which is what the tag proves."""
    spec, method, out = _spec(data), MethodSpec("baseline"), tmp_path / "exp" / "baseline" / "seed0"
    cpu = torch.device("cpu")
    with written_on_cuda():
        run = train_mod.prepare_run(spec, method, 0, out, cpu)
        run.epoch_start_rng = run.rng.getstate()
        train_mod.train_epoch(run)
        train_mod.select_on_dev(run)  # writes best.pt
        run.state.batch_in_epoch = 1  # and a last.pt from the middle of the next epoch
        train_mod.save_last(run)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(out / "best.pt", weights_only=True)
    metrics = train_mod.run_one(spec, method, 0, out, cpu)  # resumes from the CUDA last.pt
    assert metrics["epochs"] == 1
    cli = CliRunner()
    r = cli.invoke(app, ["generate", str(out), "--device", "cpu", "-k", "2"], input="abc甲乙\n")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 1, r.output
    r = cli.invoke(app, ["diagnose", str(tmp_path / "exp"), "--device", "cpu", "--beams", "1,2", "--errors", "0,1"])
    assert r.exit_code == 0, r.output
    r = cli.invoke(app, ["export", str(out), "--out", str(tmp_path / "hf")])
    assert r.exit_code == 0 and (tmp_path / "hf" / "model.safetensors").is_file(), r.output


@pytest.mark.parametrize("option", ["auto", "cuda"])
def test_with_ray_the_device_option_is_resolved_on_the_worker_not_the_driver(option, data, tmp_path, monkeypatch):
    """This driver has no CUDA; a Ray worker may: the tasks carry the option as given."""
    import yaml

    from exposure_cli.executors import EXECUTORS
    from exposure_cli.executors.base import Executor
    from exposure_cli.errors import UserError

    seen = []

    class Captured(Executor):
        name = "ray"

        def __init__(self, **options):
            pass

        def run(self, tasks, display):
            seen.extend(t.device for t in tasks)
            raise UserError("stopped by the test")

    monkeypatch.setitem(EXECUTORS._entries, "ray", Captured)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(data).to_dict(), allow_unicode=True), encoding="utf-8")
    r = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--executor", "ray",
                                 "--device", option])
    assert "stopped by the test" in r.output and seen == [option], r.output
