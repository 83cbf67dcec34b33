"""The torch floor in pyproject.toml is the newest torch API the package calls. CI installs one torch
(the pinned CPU wheel), so an API newer than the floor would pass here and fail for a user with an
older CUDA build: the table below lists every call newer than torch 2.0 with the release that
brought it, each must still be used (a stale row fails), and the floor must reach the newest."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# API (as written in the package) → the torch release that added it (the form called here).
NEWER_APIS = {
    "torch.nn.utils.get_total_norm": (2, 6),
    "torch.get_autocast_dtype": (2, 4),
    "torch.is_autocast_enabled(": (2, 4),  # with a device type argument
    "torch.amp.GradScaler": (2, 3),  # device-generic, with "cpu"
    "is_bf16_supported(including_emulation": (2, 3),
    "torch.nn.functional.scaled_dot_product_attention": (2, 0),
}
# How the package may spell them (F. for torch.nn.functional).
SPELLINGS = {"torch.nn.functional.scaled_dot_product_attention": "F.scaled_dot_product_attention"}


def _source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "exposure_cli").rglob("*.py"))


def _floor() -> tuple[int, int]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    m = re.search(r'"torch>=(\d+)\.(\d+)', text)
    assert m, "pyproject.toml: no torch>= floor"
    return int(m.group(1)), int(m.group(2))


def test_every_listed_api_is_used_and_the_floor_reaches_the_newest():
    src = _source()
    for api in NEWER_APIS:
        assert api in src or SPELLINGS.get(api, "\0") in src, f"{api}: listed but no longer used; drop its row"
    newest = max(NEWER_APIS.values())
    assert _floor() >= newest, f"pyproject.toml says torch>={_floor()}, but the package calls APIs of {newest}"


def test_the_installed_torch_is_at_least_the_floor():
    import torch

    major, minor = (int(x) for x in torch.__version__.split(".")[:2])
    assert (major, minor) >= _floor()
