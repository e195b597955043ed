"""Training the bidirectional language model: the loop, checkpoints, exact resume, data parallelism.

`train` prepares a run (`_prepare`: the run folder checked, the vocabulary and corpus checked, the
model built or continued from `init`), starts or resumes it (`_Run.start`, `_Run.resume`), then runs
epochs of steps (`_Run.run`): each step is one forward and backward pass of both language models
and one optimizer update (`_Run.step`); records, validation and checkpoints come every so many
steps. The run folder's files are described in `run_folder.py`.

Exactness: every source of randomness is seeded and saved (the torch generator of each process,
used by dropout; the negative sampler's generator; the data stream is a function of the seed and
the epoch), and the checkpoint holds the data position and the LSTM state each row carries. A
run killed at any moment and resumed from its last checkpoint ends with the same parameters as
an uninterrupted run.

Data parallelism: `torchrun --nproc_per_node=N -m elmo_lm train ...` runs N processes, each reading
its share of the corpus (`data.LMBatches`) with its own `batch_size` rows; gradients are averaged
by `DistributedDataParallel`, with the loss scaled so that a step equals one process training on
the concatenation of the N local batches. Rank 0 writes every file.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from ..allocator import keep_freed_memory
from ..bilm_types import LstmState
from ..corpus import expand_corpus
from ..errors import ElmoError
from ..model import ElmoBiLM
from ..vocab import Vocabulary
from .checkpoint import Progress, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .corpus_check import CorpusStats, check_corpus
from .data import LMBatch, LMBatches
from .distributed import Distributed, setup_distributed
from .evaluate import LossTotals, stateful_totals
from .init_model import load_init_model
from .metrics import MetricsLog, perplexity_record, plot_learning_curves, read_metrics
from .objective import LMObjective
from .run_folder import CHECKPOINT_NAME, METRICS_NAME, PLOT_NAME, RUN_FILE, VOCAB_NAME, read_run, write_run
from .softmax import LogUniformSampler, zipf_log_prior

TRAIN_FULL_BATCHES = 10
"""Batches of the training corpus evaluated with the full softmax at each validation point."""


def make_optimizer(parameters: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer the config names: Adagrad (bilm-tf: lr 0.2, accumulator 1.0) or Adam."""
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(parameters, lr=config.lr, initial_accumulator_value=config.adagrad_initial_accumulator,
                                   weight_decay=config.weight_decay)
    return torch.optim.Adam(parameters, lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay)


class _Console:
    """Log lines and the progress bar; silent except on rank 0."""

    def __init__(self, enabled: bool, quiet: bool, log: Callable[[str], None] | None) -> None:
        self.enabled = enabled
        self.quiet = quiet
        self.external = log
        self.bar: Any = None

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        if self.external is not None:
            self.external(message)
        elif self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def open_bar(self, total: int | None, initial: int) -> None:
        if self.enabled and not self.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", file=sys.stderr, dynamic_ncols=True,
                            mininterval=0.5)

    def update(self, tokens_per_s: float, ppl: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{tokens_per_s:,.0f} tok/s, ppl {ppl:,.1f}", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def train(
    config: TrainConfig,
    train_data: Sequence[str],
    vocab_file: str | Path | None,
    out_dir: str | Path,
    valid_data: Sequence[str] | None = None,
    init: str | Path | None = None,
    init_options: str | Path | None = None,
    resume: bool = False,
    device: str | None = None,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
    tune_allocator: bool = False,
) -> ElmoBiLM:
    """Train (or resume training) a language model into the run folder `out_dir` (see `run_folder.py`).

    Args:
        config: model shape and training options (`config.max_steps`, `config.seed` included).
        train_data: training corpus files or globs (one sentence per line, UTF-8).
        vocab_file: the softmax vocabulary (ignored when resuming: the run's copy is used).
        out_dir: the run folder; must not hold a run unless `resume`.
        valid_data: validation corpus, evaluated every `config.valid_every` steps and at the end.
        init: continue training this model (folder or `.hdf5`); its shape replaces `config.model`.
        init_options: the `options.json` of an `.hdf5` init.
        resume: continue the run in `out_dir` from its checkpoint.
        device: `cpu`, `cuda` or None (a GPU if there is one).
        quiet: no progress bar.
        log: receives the log lines (default: stderr) on rank 0.
        tune_allocator: set glibc's allocator of this whole process to keep freed memory
            (`allocator.keep_freed_memory`: a step's large temporaries then reuse memory instead of
            faulting in fresh pages; about 2.4x faster steps for the bundled model's shape). Off by
            default, as it changes the host process; the `elmo train` command turns it on.

    Returns:
        The trained model (on every process), in training mode.

    Raises:
        ElmoError: bad corpus, vocabulary, config, init model or run folder.
    """
    if tune_allocator:
        keep_freed_memory()
    dist = setup_distributed(device)
    console = _Console(dist.is_main, quiet, log)
    try:
        run = _prepare(dist, console, config, train_data, vocab_file, Path(out_dir), valid_data, init, init_options,
                       resume)
        if resume:
            run.resume()
        else:
            run.start(train_data, valid_data, vocab_file, init, init_options)
        run.run()
        return run.model
    finally:
        console.close()


def _check_folder(out: Path, resume: bool) -> None:
    """The run folder fits the request: a checkpoint to resume from, or no run to overwrite."""
    if resume and not (out / CHECKPOINT_NAME).is_file():
        raise ElmoError(f"{out}: no {CHECKPOINT_NAME} to resume from")
    if not resume and ((out / CHECKPOINT_NAME).exists() or (out / RUN_FILE).exists()):
        raise ElmoError(f"{out}: holds a training run already; pass --resume to continue it, or choose another --out")
    if not out.parent.is_dir():
        raise ElmoError(f"{out}: folder {out.parent} does not exist")


@dataclass
class _Data:
    """The vocabulary and the corpus files, checked before anything is written."""

    vocab: Vocabulary
    train_files: list[Path]
    valid_files: list[Path] | None
    stats: CorpusStats


def _read_data(out: Path, resume: bool, vocab_file: str | Path | None, train_data: Sequence[str],
               valid_data: Sequence[str] | None, console: _Console) -> _Data:
    if resume:
        vocab = Vocabulary.load(out / VOCAB_NAME)
    else:
        if vocab_file is None:
            raise ElmoError("--vocab is required (build one with `elmo vocab`)")
        vocab = Vocabulary.load(vocab_file)
    train_files = expand_corpus(train_data)
    valid_files = expand_corpus(valid_data) if valid_data else None
    stats = check_corpus(train_files)
    if stats.sentences == 0:
        raise ElmoError(f"the training corpus ({', '.join(map(str, train_data))}) has no sentences: "
                        f"all {stats.files} file(s) are empty or blank")
    if valid_files is not None and check_corpus(valid_files).sentences == 0:
        raise ElmoError(f"the validation corpus ({', '.join(map(str, valid_data or []))}) has no sentences")
    console.log(f"training corpus: {stats.files} file(s), {stats.sentences:,} sentences, ~{stats.tokens:,} tokens; "
                f"vocabulary: {len(vocab):,} tokens")
    return _Data(vocab, train_files, valid_files, stats)


def _build_model(config: TrainConfig, vocab: Vocabulary, init: str | Path | None, init_options: str | Path | None,
                 resume: bool, console: _Console) -> tuple[ElmoBiLM, TrainConfig]:
    """The model to train (seeded with `config.seed`), and the config with the model's shape."""
    torch.manual_seed(config.seed)
    if init is not None and not resume:
        model = load_init_model(init, vocab, init_options, log=console.log)
        if model.config != config.model:
            console.log(f"the model shape comes from --init {init} (cell {model.config.lstm_dim}, projection "
                        f"{model.config.projection_dim}, {model.config.n_layers} layers)")
        config = config.replace(model=model.config)
    else:
        model = ElmoBiLM(config.model, vocab_size=len(vocab))
        assert model.softmax is not None
        with torch.no_grad():
            model.softmax.bias.copy_(zipf_log_prior(len(vocab)))  # (V,) each word near its log frequency
    return model, config


def _prepare(dist: Distributed, console: _Console, config: TrainConfig, train_data: Sequence[str],
             vocab_file: str | Path | None, out: Path, valid_data: Sequence[str] | None, init: str | Path | None,
             init_options: str | Path | None, resume: bool) -> _Run:
    """Everything a run needs before its first step, checked in the order a user would fix it."""
    _check_folder(out, resume)
    data = _read_data(out, resume, vocab_file, train_data, valid_data, console)
    model, config = _build_model(config, data.vocab, init, init_options, resume, console)
    return _Run(dist, console, config, out, data, model)


class _Run:
    """One process's share of a training run: the model, its optimizer and where the run is."""

    def __init__(self, dist: Distributed, console: _Console, config: TrainConfig, out: Path, data: _Data,
                 model: ElmoBiLM) -> None:
        self.dist, self.console, self.config, self.out, self.data = dist, console, config, out, data
        self.model = model
        model.to(dist.device).train()
        V = len(data.vocab)
        self.sampler = LogUniformSampler(V) if config.use_sampled_softmax(V) else None
        if self.sampler is not None and config.n_negative_samples >= V:
            raise ElmoError(f"n_negative_samples ({config.n_negative_samples}) must be smaller than the vocabulary "
                            f"({V}); use the full softmax (softmax: full) for a vocabulary this small")
        matmul_dtype = config.matmul_dtype(dist.device.type)
        self.objective = LMObjective(model, dropout=config.dropout, sampler=self.sampler, matmul_dtype=matmul_dtype)
        self.optimizer = make_optimizer(model.parameters(), config)
        self.sampler_rng = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed + 1 + dist.rank)  # dropout: different masks on each process
        n_parameters = sum(p.numel() for p in model.parameters())
        console.log(f"model: {n_parameters:,} parameters; softmax: "
                    + (f"sampled, {config.n_negative_samples:,} negatives" if self.sampler else "full")
                    + f"; optimizer: {config.optimizer}, lr {config.lr:g}; matmuls in "
                    + f"{str(matmul_dtype).removeprefix('torch.')}; {dist.world_size} process(es) on "
                    f"{dist.device}")
        self.progress = Progress()
        self.state: LstmState | None = None
        """The LSTM state each batch row carries into the next batch (None at an epoch start)."""
        self.window = torch.zeros(3, dtype=torch.float64)
        """Forward loss sum, backward loss sum, tokens since the last record."""
        self.window_time = 0.0
        """Seconds spent in those steps (data, forward, backward, update)."""
        self.metrics = MetricsLog(out / METRICS_NAME)
        self.last_valid = self.last_checkpoint = -1
        self.clock = time.perf_counter()

    def start(self, train_data: Sequence[str], valid_data: Sequence[str] | None, vocab_file: str | Path | None,
              init: str | Path | None, init_options: str | Path | None) -> None:
        """A new run: rank 0 writes the run folder's `run.json` and `vocab.txt`."""
        if self.dist.is_main:
            self.out.mkdir(exist_ok=True)
            self.data.vocab.save(self.out / VOCAB_NAME)
            write_run(self.out, self.config, train_data, valid_data, vocab_file, init, init_options,
                      self.dist.world_size)
            self.metrics.path.unlink(missing_ok=True)
        self.dist.barrier()

    def resume(self) -> None:
        """Continue from the run folder's checkpoint, exactly where it stopped."""
        dist, out = self.dist, self.out
        checkpoint_path = out / CHECKPOINT_NAME
        checkpoint = load_checkpoint(checkpoint_path)
        saved_run = read_run(out)
        if saved_run.get("world_size", 1) != dist.world_size:
            raise ElmoError(f"{out}: the run was trained with {saved_run.get('world_size', 1)} process(es); "
                            f"resume it with the same number, not {dist.world_size}")
        try:
            self.model.load_state_dict(checkpoint["model"])
        except RuntimeError as error:
            raise ElmoError(f"{checkpoint_path}: does not fit the run's config ({error})") from None
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.progress = checkpoint["progress"]
        self.sampler_rng.set_state(checkpoint["sampler_rng"])
        mine = checkpoint["processes"][dist.rank]
        torch.set_rng_state(mine["torch_rng"])
        if "cuda_rng" in mine and dist.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda_rng"], dist.device)
        if mine["lstm_state"] is not None:
            h, c = mine["lstm_state"]
            self.state = LstmState(h.to(dist.device), c.to(dist.device))
        self.window, self.window_time = mine["metrics_window"].clone(), float(mine["metrics_window_time"])
        if dist.is_main:
            self.metrics.truncate_after(self.progress.step)
        # What the checkpoint's step already has: resuming a finished run adds no record.
        self.last_checkpoint = self.progress.step
        if any(r.get("split") == "valid" and r.get("step") == self.progress.step
               for r in read_metrics(self.metrics.path)):
            self.last_valid = self.progress.step
        self.console.log(f"resumed {out} at step {self.progress.step:,} (epoch {self.progress.epoch + 1}, "
                         f"batch {self.progress.batch_in_epoch:,})")
        dist.barrier()

    def run(self) -> None:
        """Epochs of steps until the step or epoch limit, then the last validation, checkpoint and plot."""
        config, dist, progress = self.config, self.dist, self.progress
        network: torch.nn.Module = self.objective
        if dist.enabled:
            network = DistributedDataParallel(self.objective,
                                              device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
        batcher = LMBatches(self.data.train_files, self.data.vocab, config.batch_size, config.unroll_steps,
                            seed=config.seed, rank=dist.rank, world_size=dist.world_size, shuffle=True,
                            tokenize=config.tokenize, shuffle_buffer=config.shuffle_buffer)
        self._open_progress_bar()
        self.clock = time.perf_counter()
        while not self.finished():
            batches = iter(batcher.iter_epoch(progress.epoch, start_batch=progress.batch_in_epoch))
            steps_this_epoch = 0
            while not self.finished():
                step_start = time.perf_counter()
                batch = next(batches, None)
                have = torch.tensor([batch is not None, 0 if batch is None else batch.n_tokens],
                                    dtype=torch.float64)  # (2,)
                have = dist.all_reduce_sum(have.to(dist.device)).cpu()  # processes with a batch, their tokens
                if have[0] < dist.world_size:  # some process ran out of data: the epoch ends for all
                    break
                assert batch is not None
                self.step(network, batch.to(dist.device), int(have[1]), step_start)
                steps_this_epoch += 1
            if self.finished():
                break
            if steps_this_epoch == 0 and progress.batch_in_epoch == 0:
                raise ElmoError("no training batch could be made: the corpus has fewer sentences than processes"
                                if dist.enabled else "no training batch could be made from the corpus")
            progress.epoch += 1
            progress.batch_in_epoch = 0
            self.state = None  # every epoch starts all rows at a sentence start
        self.console.close()
        self._finish()

    def finished(self) -> bool:
        """Whether the step or epoch limit is reached."""
        config, progress = self.config, self.progress
        return (config.max_steps is not None and progress.step >= config.max_steps) or (
            config.epochs is not None and progress.epoch >= config.epochs)

    def step(self, network: torch.nn.Module, batch: LMBatch, global_tokens: int, step_start: float) -> None:
        """One optimizer step on this process's batch (`global_tokens` over all processes), then
        whatever falls due: a metrics record, validation, a checkpoint."""
        config, dist, progress = self.config, self.dist, self.progress
        sample = self.sampler.sample(config.n_negative_samples, self.sampler_rng) if self.sampler is not None else None
        out_step = network(batch.forward_chars, batch.forward_targets, batch.backward_chars, batch.backward_targets,
                           self.state, sample)
        self.state = out_step.state
        # The mean of the two directions' mean losses over the global batch; DDP averages the
        # processes' gradients, hence the factor world_size.
        loss = out_step.loss_sums.sum() * (dist.world_size / (2 * global_tokens))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_norm)
        self.optimizer.step()

        progress.step += 1
        progress.batch_in_epoch += 1
        progress.tokens += global_tokens
        sums = out_step.loss_sums.detach().to("cpu", torch.float64)  # (2,)
        self.window += torch.tensor([sums[0], sums[1], batch.n_tokens], dtype=torch.float64)
        now = time.perf_counter()
        self.window_time += now - step_start
        local_ppl = math.exp(min(700.0, float(self.window[:2].sum() / (2 * self.window[2]))))
        self.console.update(float(self.window[2]) * dist.world_size / max(self.window_time, 1e-9), local_ppl)
        if progress.step % config.log_every == 0 or self.finished():
            self._record(now)
        if self.data.valid_files is not None and progress.step % config.valid_every == 0:
            self.validate()
        if progress.step % config.checkpoint_every == 0:
            self.checkpoint()

    def _record(self, now: float) -> None:
        """A training record of the steps since the last one, summed over the processes."""
        progress = self.progress
        summed = self.dist.all_reduce_sum(self.window.to(self.dist.device)).cpu()
        progress.elapsed_s += now - self.clock
        self.clock = now
        record = {"split": "train", "step": progress.step, "epoch": progress.epoch + 1, "tokens": progress.tokens,
                  **perplexity_record(float(summed[0] / summed[2]), float(summed[1] / summed[2])),
                  "tokens_per_s": round(float(summed[2]) / max(self.window_time, 1e-9), 1),
                  "lr": self.optimizer.param_groups[0]["lr"], "elapsed_s": round(progress.elapsed_s, 3)}
        if self.dist.is_main:
            self.metrics.write(record)
        self.window.zero_()
        self.window_time = 0.0

    def validate(self) -> None:
        """Stateful validation perplexity over all processes, recorded and logged."""
        config, dist = self.config, self.dist
        assert self.data.valid_files is not None
        totals = stateful_totals(self.model, self.data.valid_files, self.data.vocab, config.batch_size,
                                 config.unroll_steps, config.tokenize, config.valid_max_batches, dist.rank,
                                 dist.world_size)
        summed = LossTotals.from_tensor(dist.all_reduce_sum(totals.as_tensor().to(dist.device)).cpu())
        record = {"split": "valid", "step": self.progress.step, **summed.record()}
        if dist.is_main:
            self.metrics.write(record)
        self.console.log(f"step {self.progress.step:,}: validation perplexity {record['ppl']:,.2f} "
                         f"(forward {record['forward_ppl']:,.2f}, backward {record['backward_ppl']:,.2f})")
        # The training perplexity under the full softmax, on the first batches of the training data.
        totals = stateful_totals(self.model, self.data.train_files, self.data.vocab, config.batch_size,
                                 config.unroll_steps, config.tokenize,
                                 min(config.valid_max_batches or TRAIN_FULL_BATCHES, TRAIN_FULL_BATCHES), dist.rank,
                                 dist.world_size)
        summed = LossTotals.from_tensor(dist.all_reduce_sum(totals.as_tensor().to(dist.device)).cpu())
        if dist.is_main:
            self.metrics.write({"split": "train_full", "step": self.progress.step, **summed.record()})
        self.last_valid = self.progress.step

    def checkpoint(self) -> None:
        """Every process's random and carried state gathered; rank 0 writes the checkpoint."""
        dist = self.dist
        process = {"torch_rng": torch.get_rng_state(),
                   "lstm_state": None if self.state is None else (self.state.h.cpu(), self.state.c.cpu()),
                   "metrics_window": self.window.clone(), "metrics_window_time": self.window_time}
        if dist.device.type == "cuda":
            process["cuda_rng"] = torch.cuda.get_rng_state(dist.device)
        processes = dist.gather(process)
        if dist.is_main:
            save_checkpoint(self.out / CHECKPOINT_NAME, self.model.state_dict(), self.optimizer.state_dict(),
                            self.progress, self.sampler_rng.get_state(), processes)
        self.last_checkpoint = self.progress.step

    def _open_progress_bar(self) -> None:
        config, stats = self.config, self.data.stats
        positions = stats.tokens + stats.sentences
        batches_per_epoch = max(1, math.ceil(positions / (config.batch_size * config.unroll_steps
                                                          * self.dist.world_size)))
        total = config.max_steps
        if config.epochs is not None:
            total = min(total or sys.maxsize, config.epochs * batches_per_epoch)
        limits = [f"{config.epochs} epoch(s)" if config.epochs else "",
                  f"{config.max_steps:,} steps" if config.max_steps else ""]
        self.console.log(f"training for {' or '.join(x for x in limits if x)} (~{batches_per_epoch:,} steps per epoch)")
        self.console.open_bar(total, self.progress.step)

    def _finish(self) -> None:
        """The last validation and checkpoint (unless the last step made them), the plot."""
        progress, out = self.progress, self.out
        if self.data.valid_files is not None and self.last_valid != progress.step:
            self.validate()
        if self.last_checkpoint != progress.step:
            self.checkpoint()
        if self.dist.is_main:
            self.console.log(f"done: {progress.step:,} steps, {progress.tokens:,} tokens; checkpoint "
                             f"{out / CHECKPOINT_NAME}")
            if self.config.plot:
                if plot_learning_curves(out / METRICS_NAME, out / PLOT_NAME):
                    self.console.log(f"learning curves: {out / PLOT_NAME}")
                else:
                    self.console.log("matplotlib is not installed: no learning-curve plot (pip install 'elmo-lm[plot]')")
        self.dist.barrier()
