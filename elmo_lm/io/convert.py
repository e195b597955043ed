"""`elmo convert`: write a model in the other format (this project's folder, or the AllenNLP/bilm-tf files),
or an ELMoForManyLangs model as a model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ..errors import ElmoError
from ..model import ElmoBiLM
from .allennlp import save_allennlp_weights
from .elmoformanylangs import load_elmoformanylangs
from .folder import CONFIG_NAME, WEIGHTS_NAME, save_pretrained

TARGET_FILES = {"folder": (CONFIG_NAME, WEIGHTS_NAME), "allennlp": ("options.json", "weights.hdf5")}
"""The files each target format consists of."""


def convert_model(model: ElmoBiLM, target: Literal["folder", "allennlp"], out_dir: str | Path,
                  overwrite: bool = False) -> list[Path]:
    """Write `model` into `out_dir` as a model folder or as `options.json` + `weights.hdf5`; returns the files.

    Raises:
        ElmoError: one of the files exists already and not `overwrite`.
    """
    if target == "allennlp" and getattr(model.token_encoder, "folder_options", None) is not None:
        raise ElmoError("a model converted from ELMoForManyLangs has no AllenNLP form (its token encoder differs): "
                        "use --to folder")
    out = Path(out_dir)
    files = [out / name for name in TARGET_FILES[target]]
    existing = [path for path in files if path.exists()]
    if existing and not overwrite:
        raise ElmoError(f"{existing[0]}: exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    if target == "folder":
        save_pretrained(model, out)
    else:
        save_allennlp_weights(model.config, model.state_dict(), files[0], files[1])
    return files


def convert_elmoformanylangs(source: str | Path, out: str | Path) -> Path:
    """Convert an ELMoForManyLangs model folder into an elmo-lm model folder; returns `out`."""
    source, out = Path(source), Path(out)
    save_pretrained(load_elmoformanylangs(source), out)
    return out
