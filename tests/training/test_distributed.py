"""Data-parallel training: 2 CPU processes (gloo) under torchrun end with the same parameters on both ranks,
equal to one process trained on the concatenation of the two ranks' batches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_runs import CORPUS, elmo, read_jsonl

from elmo_lm.training.data import LMBatches
from elmo_lm.model import ElmoBiLM
from elmo_lm.training.objective import LMObjective
from elmo_lm.training.softmax import LogUniformSampler, zipf_log_prior
from elmo_lm.training.loop import make_optimizer
from elmo_lm.training.config import preset
from elmo_lm.vocab import Vocabulary

STEPS = 6
WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    train = folder / "train.txt"
    train.write_text((CORPUS / "shard2").read_text(encoding="utf-8"), encoding="utf-8")
    vocab = folder / "vocab.txt"
    elmo("vocab", train, "-o", vocab)
    out = folder / "run"
    # No dropout (the processes' masks differ from one process's); sampled softmax (the negatives are
    # drawn from the same seeded generator on every process) and a clip that engages.
    options = ["--set", "dropout=0", "--set", "softmax=sampled", "--set", "n_negative_samples=64",
               "--set", "clip_norm=0.5", "--set", "unroll_steps=10", "--set", "log_every=1", "--set", "plot=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
         "--train", str(train), "--vocab", str(vocab), "--config", "tiny", "--out", str(out), "--max-steps", str(STEPS),
         "--batch-size", "3", "--seed", "5", "-q", *options],
        capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return train, vocab, out, done


def _reference(train: Path, vocab_path: Path) -> tuple[ElmoBiLM, list[float]]:
    """One process, batch = rank 0's batch followed by rank 1's, the same losses and optimizer."""
    vocab = Vocabulary.load(vocab_path)
    config = preset("tiny").replace(batch_size=3, unroll_steps=10, seed=5, dropout=0.0, softmax="sampled",
                                    n_negative_samples=64, clip_norm=0.5)
    torch.manual_seed(config.seed)
    model = ElmoBiLM(config.model, vocab_size=len(vocab)).train()
    with torch.no_grad():
        model.softmax.bias.copy_(zipf_log_prior(len(vocab)))  # (V,) as `elmo train` starts a new model
    sampler = LogUniformSampler(len(vocab))
    objective = LMObjective(model, dropout=0.0, sampler=sampler)
    optimizer = make_optimizer(model.parameters(), config)
    generator = torch.Generator().manual_seed(config.seed)
    ranks = [LMBatches([train], vocab, 3, 10, seed=config.seed, rank=r, world_size=2) for r in (0, 1)]
    state, losses = None, []
    for step, (a, b) in enumerate(zip(*ranks)):
        if step == STEPS:
            break
        inputs = [torch.cat([getattr(a, name), getattr(b, name)]) for name in
                  ("forward_chars", "forward_targets", "backward_chars", "backward_targets")]  # (2B, T, ...)
        out = objective(*inputs, state, sampler.sample(config.n_negative_samples, generator))
        state = out.state
        n = a.n_tokens + b.n_tokens
        loss = out.loss_sums.sum() / (2 * n)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
    assert len(losses) == STEPS
    return model, losses


def test_ranks_agree_and_equal_one_process_on_the_global_batch(ddp_run):
    train, vocab, out, _ = ddp_run
    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["progress"]["step"] == STEPS
    assert len(checkpoint["processes"]) == 2  # each rank's carried state and random state
    reference, losses = _reference(train, vocab)
    moved = 0.0
    torch.manual_seed(5)
    initial = ElmoBiLM(reference.config, vocab_size=rank0["softmax.weight"].shape[0]).state_dict()
    for key, value in reference.state_dict().items():
        assert torch.equal(rank0[key], rank1[key]), key
        assert torch.allclose(rank0[key], value, atol=1e-5, rtol=0), key
        assert torch.equal(checkpoint["model"][key], rank0[key]), key
        moved = max(moved, float((value - initial[key]).abs().max()))
    assert moved > 1e-3  # training did change the parameters
    records = read_jsonl(out / "metrics.jsonl")  # rank 0 alone writes, with the global losses
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in records] == pytest.approx(losses, abs=1e-5)


def test_train_module_is_an_entry_point():
    done = subprocess.run([sys.executable, "-m", "elmo_lm", "train", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "--resume" in done.stdout and "--train" in done.stdout
