"""`exposure gpu-check`: on CPU (tiny sizes) every check passes and is printed; a failing check
makes it exit 1; the FLOP count behind "share of peak" agrees with torch's own flop counter."""

import pytest
import torch
from typer.testing import CliRunner

from exposure_cli.batching import collate
from exposure_cli.cli import app
from exposure_cli.cli import gpu_check as gc
from exposure_cli.methods import available
from exposure_cli.model import ModelConfig, UniLM

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gpu_check_on_cpu_passes_every_check_with_a_line_each():
    r = CliRunner().invoke(app, ["gpu-check", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    passed = [line for line in lines if line.startswith("PASS")]
    for m in available():
        assert any(f"train {m} " in line and "ms/step" in line and "tok/s" in line for line in passed), m
    for name in ("resume mid-epoch", "decode beam 1", "decode beam 2", "decode beam 3", "diagnose scoring", "export"):
        assert any(name in line for line in passed), name
    assert not any(line.startswith("FAIL") for line in lines)


def test_a_failing_check_is_a_fail_line_and_exit_1(monkeypatch):
    import exposure_cli.export as export

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(export, "export_run", broken)
    monkeypatch.setattr(gc, "method_cases", lambda: [("baseline", {})])
    r = CliRunner().invoke(app, ["gpu-check", "--device", "cpu"])
    assert r.exit_code == 1, r.output
    assert any(line.startswith("FAIL") and "export" in line and "disk on fire" in line for line in r.output.splitlines())


def test_the_peak_table_matches_gpu_names():
    assert gc.peak_tflops("NVIDIA A100-SXM4-80GB") == 312
    assert gc.peak_tflops("NVIDIA H100 80GB HBM3") == 989 and gc.peak_tflops("NVIDIA H100 PCIe") == 756
    assert gc.peak_tflops("NVIDIA A10") == 125 and gc.peak_tflops("NVIDIA A10G") is None
    assert gc.peak_tflops("Tesla T4") == 65 and gc.peak_tflops("Tesla V100-SXM2-16GB") == 125
    assert gc.peak_tflops("NVIDIA L4") == 121 and gc.peak_tflops("NVIDIA GeForce RTX 4090") is None


def test_the_step_flops_agree_with_torchs_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = UniLM(ModelConfig(vocab_size=300, hidden=64, layers=2, heads=4, dropout=0.0))
    ex = [([2] + list(range(10, 10 + n)) + [3] + list(range(40, 48)) + [3], [0] * (n + 2) + [1] * 9)
          for n in (20, 30, 25, 12)]
    batch = collate(ex)
    model.double_backward = True  # attention in plain matmuls, which the counter sees (CPU SDPA it does not)
    with FlopCounterMode(display=False) as counter:
        model.target_loss(batch).backward()
    assert gc.step_flops(model, batch) == pytest.approx(counter.get_total_flops(), rel=0.01)
