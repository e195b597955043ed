"""Offline tests of scripts/build_domain_text.py's pure parts: the reviews CSV reader and the by-review split
that keeps the task's sentences out of the fine-tuning text. No network: handmade strings only."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load_script():
    """Import scripts/build_domain_text.py as a module (it imports its sibling evaluate_downstream.py)."""
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location("build_domain_text", SCRIPTS / "build_domain_text.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_script()

REVIEWS_CSV = ('"1","a fine film .  \nit is , "" truly "" , fine .\n\n"\n'
               '"-1","a dull film .\nthe plot is thin ."\n'
               '"1","great fun ."\n')


def test_reviews_are_read_one_list_of_lines_each_labels_dropped():
    reviews = build.parse_reviews(REVIEWS_CSV)
    assert reviews == [["a fine film .", 'it is , " truly " , fine .'], ["a dull film .", "the plot is thin ."],
                       ["great fun ."]]


def test_split_is_by_review_drops_task_sentences_and_is_seeded():
    reviews = [[f"review {i} line {j} ." for j in range(3)] for i in range(20)]
    task = {"review 3 line 1 .", "review 7 line 0 ."}
    train, dev, dropped = build.split_reviews(reviews, task, dev_share=0.1, seed=0)
    assert dropped == 2 and not task & set(train + dev)
    dev_reviews = {line.split(" line ")[0] for line in dev}
    train_reviews = {line.split(" line ")[0] for line in train}
    assert len(dev_reviews) == 2 and not dev_reviews & train_reviews  # whole reviews on one side
    assert len(train) + len(dev) == 60 - 2
    assert build.split_reviews(reviews, task, 0.1, 0) == (train, dev, dropped)
    assert build.split_reviews(reviews, task, 0.1, 1)[1] != dev
