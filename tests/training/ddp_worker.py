"""Run by tests/test_distributed.py under torchrun: `elmo train ARGS` as `torchrun -m elmo_lm train ARGS` runs it,
then each rank saves the parameters it ended with to OUT/rank{r}.pt."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

import elmo_lm.training.loop as train_module
from elmo_lm.cli import main

captured = {}
original_train = train_module.train


def capturing_train(*args, **kwargs):
    captured["model"] = original_train(*args, **kwargs)
    return captured["model"]


train_module.train = capturing_train  # the CLI command looks `train` up when it runs
code = main(["train", *sys.argv[1:]])
if code == 0:
    out = Path(sys.argv[sys.argv.index("--out") + 1])
    torch.save(captured["model"].state_dict(), out / f"rank{dist.get_rank()}.pt")
sys.exit(code)
