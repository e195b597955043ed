"""The training run's `metrics.jsonl` and its learning-curve plot.

One JSON object per line. Training records (`"split": "train"`): `step`, `epoch`, `tokens` (real
targets per direction seen so far, all processes), `forward_loss`, `backward_loss`, `loss` (their
mean, nats), `forward_ppl`, `backward_ppl`, `ppl` (exp of the loss), `tokens_per_s`, `lr`,
`elapsed_s`; each averages the steps since the previous record. Validation records
(`"split": "valid"`): `step`, `forward_loss`, `backward_loss`, `loss`, `forward_ppl`,
`backward_ppl`, `ppl`, `tokens`. At each validation point, `"split": "train_full"` records the same
for the first batches of the training corpus read in order (full softmax, no dropout): the
training perplexity on the scale of the validation one (the `train` records of a sampled-softmax
run are the sampled estimate, which can sit far below the full softmax's).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_path, full_disk_error


def perplexity_record(forward_loss: float, backward_loss: float) -> dict[str, float]:
    """Losses (mean nats per token) and perplexities of both directions and their mean."""
    loss = (forward_loss + backward_loss) / 2
    return {
        "forward_loss": forward_loss, "backward_loss": backward_loss, "loss": loss,
        "forward_ppl": _exp(forward_loss), "backward_ppl": _exp(backward_loss), "ppl": _exp(loss),
    }


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else float("inf")


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a metrics file (a missing file has none; a torn last line is skipped)."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a killed process
    return records


class MetricsLog:
    """Appends records to `metrics.jsonl`, one flushed line each."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (written after the checkpoint a resumed run restarts from)."""
        kept = [record for record in read_metrics(self.path) if record.get("step", 0) <= step]
        with atomic_path(self.path) as temporary:
            temporary.write_text("".join(json.dumps(record) + "\n" for record in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (a full disk: an ElmoError naming the file)."""
        try:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
                out.flush()
        except OSError as error:
            converted = full_disk_error(error, self.path)
            if converted is None:
                raise
            raise converted from error


def plot_learning_curves(metrics_path: str | os.PathLike[str], png_path: str | os.PathLike[str]) -> bool:
    """Draw training and validation perplexity against steps into a PNG.

    Returns False (and writes nothing) when matplotlib is not installed: it is an optional
    dependency (`pip install elmo-lm[plot]`).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("split") == "train"]
    valid = [r for r in records if r.get("split") == "valid"]
    train_full = [r for r in records if r.get("split") == "train_full"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("forward_ppl", "forward"), ("backward_ppl", "backward")):
        axes[0].plot([r["step"] for r in train], [r[key] for r in train], label=f"train {label}")
        if train_full:
            axes[0].plot([r["step"] for r in train_full], [r[key] for r in train_full], "s--",
                         label=f"train {label} (full softmax)")
        if valid:
            axes[0].plot([r["step"] for r in valid], [r[key] for r in valid], "o-", label=f"valid {label}")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("perplexity")
    axes[0].set_title("Perplexity")
    axes[0].legend()
    axes[1].plot([r["step"] for r in train], [r["tokens_per_s"] for r in train])
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("tokens / s")
    axes[1].set_title("Throughput")
    figure.tight_layout()
    with atomic_path(png_path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
    return True
