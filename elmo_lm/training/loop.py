"""Training the bidirectional language model: the loop, checkpoints, exact resume, data parallelism.

A run lives in one folder (RUN_DIR):

    run.json             the arguments and the training config (a resumed run reads them back)
    vocab.txt            the softmax vocabulary
    checkpoint.pt        the latest checkpoint (see `checkpoint.py`), replaced atomically
    metrics.jsonl        training and validation records (see `metrics.py`)
    learning_curves.png  perplexity and throughput against steps, drawn at the end

Exactness: every source of randomness is seeded and saved (the torch generator of each process,
used by dropout; the negative sampler's generator; the data stream is a function of the seed and
the epoch), and the checkpoint holds the data position and the LSTM state each row carries. A
run killed at any moment and resumed from its last checkpoint ends with the same parameters as
an uninterrupted run.

Data parallelism: `torchrun --nproc_per_node=N -m elmo_lm.training.loop ...` (the options of `elmo
train`) runs N processes, each reading its share of the corpus (`data.LMBatches`) with its own
`batch_size` rows; gradients are averaged by `DistributedDataParallel`, with the loss scaled so
that a step equals one process training on the concatenation of the N local batches. Rank 0
writes every file.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from ..allocator import keep_freed_memory
from ..corpus import expand_corpus
from ..errors import ElmoError
from ..model import ElmoBiLM, LstmState
from ..vocab import Vocabulary
from .checkpoint import CHECKPOINT_NAME, Progress, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .corpus_check import check_corpus
from .data import LMBatches
from .distributed import Distributed, setup_distributed
from .evaluate import LossTotals, stateful_totals
from .metrics import MetricsLog, perplexity_record, plot_learning_curves
from .objective import LMObjective
from .softmax import LogUniformSampler, zipf_log_prior

RUN_FILE = "run.json"
VOCAB_NAME = "vocab.txt"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "learning_curves.png"
TRAIN_FULL_BATCHES = 10
"""Batches of the training corpus evaluated with the full softmax at each validation point."""


def make_optimizer(parameters: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer the config names: Adagrad (bilm-tf: lr 0.2, accumulator 1.0) or Adam."""
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(parameters, lr=config.lr, initial_accumulator_value=config.adagrad_initial_accumulator,
                                   weight_decay=config.weight_decay)
    return torch.optim.Adam(parameters, lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay)


def read_run(out_dir: str | Path) -> dict[str, Any]:
    """The `run.json` of a run folder: train/valid patterns, vocab, config, init, world size."""
    path = Path(out_dir) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ElmoError(f"{out_dir}: not a training run (no {RUN_FILE})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as bad:
        raise ElmoError(f"{path}: not valid JSON ({bad})") from None


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings (VALUE as JSON, else a plain string) -> a dict of training options."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ElmoError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set dropout=0.2")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


def run_arguments(
    out_dir: str | Path,
    resume: bool,
    config_name: str | None,
    train_data: Sequence[str],
    vocab_file: str | None,
    valid_data: Sequence[str],
    init: str | None,
    init_options: str | None,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """The keyword arguments of `train` for the `elmo train` options.

    A fresh run needs --train, --vocab and --config (or --init, whose shape is used with the
    default training options). A resumed run reads them from RUN_DIR/run.json; it accepts new
    --train/--valid paths (the same data, moved) and a new step or epoch limit, nothing else.
    """
    from .config import resolve_config

    if resume:
        run = read_run(out_dir)
        changing = [name for name, value in (("--config", config_name), ("--init", init), ("--init-options", init_options))
                    if value]
        changing += [f"--set {key}" if key not in ("max_steps", "epochs") else "" for key in overrides]
        changing = [name for name in changing if name]
        if changing:
            raise ElmoError(f"--resume continues the run as configured in {Path(out_dir) / RUN_FILE}: "
                            f"{', '.join(changing)} cannot change (only --max-steps / --epochs and data paths)")
        config = TrainConfig.from_dict(run["config"], source=str(Path(out_dir) / RUN_FILE))
        config = config.replace(**overrides)
        return dict(config=config, train_data=list(train_data) or run["train"], vocab_file=None,
                    valid_data=list(valid_data) or run.get("valid"), init=None, init_options=None, resume=True)
    if not train_data:
        raise ElmoError("--train is required (the training corpus: files or globs)")
    if config_name is None and init is None:
        raise ElmoError(f"--config is required: a preset ({', '.join(('tiny', 'small', 'medium', 'original'))}) "
                        "or a JSON file")
    config = resolve_config(config_name) if config_name is not None else TrainConfig()
    if overrides:
        config = TrainConfig.from_dict({**config.to_dict(), **overrides}, source="--set")
    return dict(config=config, train_data=list(train_data), vocab_file=vocab_file, valid_data=list(valid_data) or None,
                init=init, init_options=init_options, resume=False)


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
) -> ElmoBiLM:
    """Train (or resume training) a language model; see the module docstring for RUN_DIR.

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

    Returns:
        The trained model (on every process), in training mode.

    Raises:
        ElmoError: bad corpus, vocabulary, config, init model or run folder.
    """
    keep_freed_memory()  # a step's large temporaries then reuse memory instead of faulting in fresh pages
    dist = setup_distributed(device)
    console = _Console(dist.is_main, quiet, log)
    try:
        return _train(dist, console, config, train_data, vocab_file, Path(out_dir), valid_data, init, init_options,
                      resume)
    finally:
        console.close()


def _train(
    dist: Distributed,
    console: _Console,
    config: TrainConfig,
    train_data: Sequence[str],
    vocab_file: str | Path | None,
    out: Path,
    valid_data: Sequence[str] | None,
    init: str | Path | None,
    init_options: str | Path | None,
    resume: bool,
) -> ElmoBiLM:
    checkpoint_path = out / CHECKPOINT_NAME
    if resume and not checkpoint_path.is_file():
        raise ElmoError(f"{out}: no {CHECKPOINT_NAME} to resume from")
    if not resume and (checkpoint_path.exists() or (out / RUN_FILE).exists()):
        raise ElmoError(f"{out}: holds a training run already; pass --resume to continue it, or choose another --out")
    if not out.parent.is_dir():
        raise ElmoError(f"{out}: folder {out.parent} does not exist")

    # The vocabulary and the data, checked before anything is written.
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

    # The model, its softmax and the optimizer.
    torch.manual_seed(config.seed)
    if init is not None and not resume:
        from .init_model import load_init_model

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
    model.to(dist.device).train()
    V = len(vocab)
    sampler = LogUniformSampler(V) if config.use_sampled_softmax(V) else None
    if sampler is not None and config.n_negative_samples >= V:
        raise ElmoError(f"n_negative_samples ({config.n_negative_samples}) must be smaller than the vocabulary ({V}); "
                        "use the full softmax (softmax: full) for a vocabulary this small")
    matmul_dtype = config.matmul_dtype(dist.device.type)
    objective = LMObjective(model, dropout=config.dropout, sampler=sampler, matmul_dtype=matmul_dtype)
    optimizer = make_optimizer(model.parameters(), config)
    sampler_rng = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed + 1 + dist.rank)  # dropout: different masks on each process
    n_parameters = sum(p.numel() for p in model.parameters())
    console.log(f"model: {n_parameters:,} parameters; softmax: "
                + (f"sampled, {config.n_negative_samples:,} negatives" if sampler else "full")
                + f"; optimizer: {config.optimizer}, lr {config.lr:g}; matmuls in {str(matmul_dtype).removeprefix('torch.')}"
                + f"; {dist.world_size} process(es) on {dist.device}")

    progress = Progress()
    state: LstmState | None = None
    window = torch.zeros(3, dtype=torch.float64)  # forward loss sum, backward loss sum, tokens since the last record
    window_time = 0.0  # seconds spent in those steps (data, forward, backward, update)
    metrics = MetricsLog(out / METRICS_NAME)
    if resume:
        checkpoint = load_checkpoint(checkpoint_path)
        saved_run = read_run(out)
        if saved_run.get("world_size", 1) != dist.world_size:
            raise ElmoError(f"{out}: the run was trained with {saved_run.get('world_size', 1)} process(es); "
                            f"resume it with the same number, not {dist.world_size}")
        try:
            model.load_state_dict(checkpoint["model"])
        except RuntimeError as error:
            raise ElmoError(f"{checkpoint_path}: does not fit the run's config ({error})") from None
        optimizer.load_state_dict(checkpoint["optimizer"])
        progress = checkpoint["progress"]
        sampler_rng.set_state(checkpoint["sampler_rng"])
        mine = checkpoint["processes"][dist.rank]
        torch.set_rng_state(mine["torch_rng"])
        if "cuda_rng" in mine and dist.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda_rng"], dist.device)
        if mine["lstm_state"] is not None:
            h, c = mine["lstm_state"]
            state = LstmState(h.to(dist.device), c.to(dist.device))
        window, window_time = mine["metrics_window"].clone(), float(mine["metrics_window_time"])
        if dist.is_main:
            metrics.truncate_after(progress.step)
        console.log(f"resumed {out} at step {progress.step:,} (epoch {progress.epoch + 1}, "
                    f"batch {progress.batch_in_epoch:,})")
    elif dist.is_main:
        out.mkdir(exist_ok=True)
        vocab.save(out / VOCAB_NAME)
        run = {"train": [str(p) for p in train_data], "valid": [str(p) for p in valid_data or []] or None,
               "vocab": str(vocab_file), "init": str(init) if init else None,
               "init_options": str(init_options) if init_options else None, "world_size": dist.world_size,
               "config": config.to_dict()}
        (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
        metrics.path.unlink(missing_ok=True)
    dist.barrier()

    network: torch.nn.Module = objective
    if dist.enabled:
        network = DistributedDataParallel(objective, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    batcher = LMBatches(train_files, vocab, config.batch_size, config.unroll_steps, seed=config.seed, rank=dist.rank,
                        world_size=dist.world_size, shuffle=True, tokenize=config.tokenize,
                        shuffle_buffer=config.shuffle_buffer)

    def validate() -> None:
        assert valid_files is not None
        totals = stateful_totals(model, valid_files, vocab, config.batch_size, config.unroll_steps, config.tokenize,
                                 config.valid_max_batches, dist.rank, dist.world_size)
        summed = LossTotals.from_tensor(dist.all_reduce_sum(totals.as_tensor().to(dist.device)).cpu())
        record = {"split": "valid", "step": progress.step, **summed.record()}
        if dist.is_main:
            metrics.write(record)
        console.log(f"step {progress.step:,}: validation perplexity {record['ppl']:,.2f} "
                    f"(forward {record['forward_ppl']:,.2f}, backward {record['backward_ppl']:,.2f})")
        # The training perplexity under the full softmax, on the first batches of the training data.
        totals = stateful_totals(model, train_files, vocab, config.batch_size, config.unroll_steps, config.tokenize,
                                 min(config.valid_max_batches or TRAIN_FULL_BATCHES, TRAIN_FULL_BATCHES), dist.rank,
                                 dist.world_size)
        summed = LossTotals.from_tensor(dist.all_reduce_sum(totals.as_tensor().to(dist.device)).cpu())
        if dist.is_main:
            metrics.write({"split": "train_full", "step": progress.step, **summed.record()})

    def checkpoint() -> None:
        process = {"torch_rng": torch.get_rng_state(),
                   "lstm_state": None if state is None else (state.h.cpu(), state.c.cpu()),
                   "metrics_window": window.clone(), "metrics_window_time": window_time}
        if dist.device.type == "cuda":
            process["cuda_rng"] = torch.cuda.get_rng_state(dist.device)
        processes = dist.gather(process)
        if dist.is_main:
            save_checkpoint(checkpoint_path, model.state_dict(), optimizer.state_dict(), progress,
                            sampler_rng.get_state(), processes)

    def finished() -> bool:
        return (config.max_steps is not None and progress.step >= config.max_steps) or (
            config.epochs is not None and progress.epoch >= config.epochs)

    positions = stats.tokens + stats.sentences
    batches_per_epoch = max(1, math.ceil(positions / (config.batch_size * config.unroll_steps * dist.world_size)))
    total = config.max_steps
    if config.epochs is not None:
        total = min(total or sys.maxsize, config.epochs * batches_per_epoch)
    limits = [f"{config.epochs} epoch(s)" if config.epochs else "", f"{config.max_steps:,} steps" if config.max_steps else ""]
    console.log(f"training for {' or '.join(x for x in limits if x)} (~{batches_per_epoch:,} steps per epoch)")
    console.open_bar(total, progress.step)

    last_valid = last_checkpoint = -1
    clock = time.perf_counter()
    while not finished():
        batches = iter(batcher.iter_epoch(progress.epoch, start_batch=progress.batch_in_epoch))
        steps_this_epoch = 0
        while not finished():
            step_start = time.perf_counter()
            batch = next(batches, None)
            have = torch.tensor([batch is not None, 0 if batch is None else batch.n_tokens], dtype=torch.float64)  # (2,)
            have = dist.all_reduce_sum(have.to(dist.device)).cpu()  # processes with a batch, their tokens
            if have[0] < dist.world_size:  # some process ran out of data: the epoch ends for all
                break
            assert batch is not None
            global_tokens = int(have[1])
            batch = batch.to(dist.device)
            sample = sampler.sample(config.n_negative_samples, sampler_rng) if sampler is not None else None
            out_step = network(batch.forward_chars, batch.forward_targets, batch.backward_chars, batch.backward_targets,
                               state, sample)
            state = out_step.state
            # The mean of the two directions' mean losses over the global batch; DDP averages the
            # processes' gradients, hence the factor world_size.
            loss = out_step.loss_sums.sum() * (dist.world_size / (2 * global_tokens))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()

            progress.step += 1
            progress.batch_in_epoch += 1
            progress.tokens += global_tokens
            steps_this_epoch += 1
            sums = out_step.loss_sums.detach().to("cpu", torch.float64)  # (2,)
            window += torch.tensor([sums[0], sums[1], batch.n_tokens], dtype=torch.float64)
            now = time.perf_counter()
            window_time += now - step_start
            local_ppl = math.exp(min(700.0, float(window[:2].sum() / (2 * window[2]))))
            console.update(float(window[2]) * dist.world_size / max(window_time, 1e-9), local_ppl)
            if progress.step % config.log_every == 0 or finished():
                summed = dist.all_reduce_sum(window.to(dist.device)).cpu()
                progress.elapsed_s += now - clock
                clock = now
                record = {"split": "train", "step": progress.step, "epoch": progress.epoch + 1, "tokens": progress.tokens,
                          **perplexity_record(float(summed[0] / summed[2]), float(summed[1] / summed[2])),
                          "tokens_per_s": round(float(summed[2]) / max(window_time, 1e-9), 1),
                          "lr": optimizer.param_groups[0]["lr"], "elapsed_s": round(progress.elapsed_s, 3)}
                if dist.is_main:
                    metrics.write(record)
                window.zero_()
                window_time = 0.0
            if valid_files is not None and progress.step % config.valid_every == 0:
                validate()
                last_valid = progress.step
            if progress.step % config.checkpoint_every == 0:
                checkpoint()
                last_checkpoint = progress.step
        if finished():
            break
        if steps_this_epoch == 0 and progress.batch_in_epoch == 0:
            raise ElmoError("no training batch could be made: the corpus has fewer sentences than processes"
                            if dist.enabled else "no training batch could be made from the corpus")
        progress.epoch += 1
        progress.batch_in_epoch = 0
        state = None  # every epoch starts all rows at a sentence start
    console.close()

    if valid_files is not None and last_valid != progress.step:
        validate()
    if last_checkpoint != progress.step:
        checkpoint()
    if dist.is_main:
        console.log(f"done: {progress.step:,} steps, {progress.tokens:,} tokens; checkpoint {checkpoint_path}")
        if config.plot:
            if plot_learning_curves(out / METRICS_NAME, out / PLOT_NAME):
                console.log(f"learning curves: {out / PLOT_NAME}")
            else:
                console.log("matplotlib is not installed: no learning-curve plot (pip install 'elmo-lm[plot]')")
    dist.barrier()
    return model


def main(argv: list[str] | None = None) -> int:
    """`python -m elmo_lm.training.loop` (the `torchrun` entry point): the options of `elmo train`."""
    from ..cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
