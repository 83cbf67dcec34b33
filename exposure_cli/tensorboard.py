"""Training curves for TensorBoard (`train.tensorboard: true` or `exposure run --tensorboard`).

A mirror of train.jsonl, which stays the source of truth: every record written to the log is
also written as scalars to event files in the run's `tensorboard/` directory, next to it. Step
records give `train/loss`, `train/lr`, `train/grad_norm` and the method's own terms (`train/ce`,
`train/penalty`, ...); an epoch's dev record gives `dev/bleu`, `dev/rouge_l`, ... at the step
the epoch ended on (epoch × steps per epoch). A process that starts (or resumes) a run writes a new event file that opens
with the whole log as it stands (resumption has cut it back to the checkpoint) and marks step 0
as a restart (`purge_step`), so TensorBoard drops what an interrupted process had written beyond it.

Needs the `tensorboard` extra (`pip install 'exposure[tensorboard]'`); torch's SummaryWriter writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError
from .runner import rundir

DIR = "tensorboard"


def require(where: str) -> None:
    """A one-line error (exit 2) when TensorBoard's package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError(f"{where}: TensorBoard event files need the tensorboard package "
                        "(pip install 'exposure[tensorboard]')") from None


def scalars(record: dict) -> dict[str, float]:
    """Tag → value of one train.jsonl record: a training step's numbers, or an epoch's dev scores."""
    if "dev" in record:
        return {f"dev/{k}": v for k, v in record["dev"].items() if isinstance(v, (int, float))}
    return {f"train/{k}": v for k, v in record.items()
            if k not in ("step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)}


class EventMirror:
    """Writes each log record as scalars; opened on a run directory, it first mirrors its log."""

    def __init__(self, run_dir: Path, steps_per_epoch: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(run_dir) / DIR), purge_step=0, flush_secs=10)
        self.steps_per_epoch = steps_per_epoch
        log = Path(run_dir) / rundir.LOG
        for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
            self.add(json.loads(line))

    def add(self, record: dict) -> None:
        step = record["step"] if "step" in record else record["epoch"] * self.steps_per_epoch
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()
