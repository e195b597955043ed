"""Model folders on the Hugging Face Hub: `Embedder.from_pretrained("org/name")` and `push_to_hub`.

A Hub repository holds the model folder as elmo-lm writes it (`config.json` + `model.safetensors`,
`vocab.txt` when the model has a softmax) and a model card (`README.md`). Downloading and uploading
go through `huggingface_hub` (`pip install "elmo-lm[hub]"`); a local folder needs nothing extra.
Loading is strict: a missing, extra or misshapen tensor is an error naming it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import ElmoError
from ..io import load_model, save_pretrained
from ..io.folder import CONFIG_NAME, VOCAB_NAME, WEIGHTS_NAME
from ..model import ElmoBiLM

MODEL_FILES = (CONFIG_NAME, WEIGHTS_NAME, VOCAB_NAME)
"""The files of a model folder on the Hub (an AllenNLP-format repo's `options.json` + `*.hdf5` work too)."""
CARD_NAME = "README.md"
CARD_TEMPLATE = Path(__file__).with_name("model_card.md")


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ElmoError('the Hugging Face Hub needs huggingface_hub: pip install "elmo-lm[hub]"') from None
    return huggingface_hub


def resolve(name: str | Path, *, revision: str | None = None, token: str | bool | None = None,
            cache_dir: str | Path | None = None, local_files_only: bool = False) -> Path:
    """A local model folder for `name`: the folder itself, or a Hub repo ("org/name") downloaded to the cache."""
    if Path(name).is_dir():
        return Path(name)
    if str(name).count("/") != 1 or Path(name).exists():
        raise ElmoError(f"{name}: no such model folder, and not a Hub repo id ('org/name')")
    hub = _hub()
    try:
        folder = hub.snapshot_download(str(name), revision=revision, token=token, cache_dir=cache_dir,
                                       local_files_only=local_files_only,
                                       allow_patterns=[*MODEL_FILES, "options.json", "*.hdf5"],
                                       library_name="elmo-lm")
    except hub.errors.LocalEntryNotFoundError:
        raise ElmoError(f"{name}: not in the local Hub cache (and downloading is off)") from None
    except (hub.errors.HfHubHTTPError, hub.errors.HFValidationError) as error:
        raise ElmoError(f"{name}: cannot download from the Hub ({str(error).splitlines()[0]})") from None
    return Path(folder)


def model_card(model: ElmoBiLM, repo_id: str, description: str = "", license: str | None = None,
               has_vocab: bool = False) -> str:
    """The model card (`README.md`): Hub metadata, the model's shape, and how to load it."""
    config = model.config
    body = CARD_TEMPLATE.read_text(encoding="utf-8").format(
        name=repo_id.split("/")[-1], repo_id=repo_id, n_layers=config.n_layers,
        n_output_layers=config.n_output_layers, output_dim=config.output_dim, lstm_dim=config.lstm_dim,
        projection_dim=config.projection_dim, cell_clip=config.cell_clip, proj_clip=config.proj_clip,
        skip="yes" if config.use_skip_connections else "no", n_filters=config.n_filters,
        widths=", ".join(str(width) for width, _ in config.filters), n_highway=config.n_highway,
        char_embed_dim=config.char_embed_dim, n_parameters=sum(p.numel() for p in model.parameters()),
        vocab_note=" + `vocab.txt` for its softmax" if has_vocab else "",
        description=description or "Not described by its uploader.")
    metadata = ["library_name: elmo-lm", "pipeline_tag: feature-extraction", "tags:", "- elmo",
                "- word-embeddings", "- contextual-embeddings"]
    if license:
        metadata.insert(0, f"license: {license}")
    return "---\n" + "\n".join(metadata) + "\n---\n\n" + body


def save_for_hub(model: ElmoBiLM | str | Path, folder: str | Path, repo_id: str, *, vocab_file: str | Path | None = None,
                 description: str = "", license: str | None = None, dtype: torch.dtype = torch.float32) -> Path:
    """Write what `push_to_hub` uploads into `folder`: the model folder and its model card.

    `model` is a loaded model or a model folder (copied as it is; an AllenNLP-format folder is converted).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(model) if not isinstance(model, ElmoBiLM) else None
    if source is not None and (source / CONFIG_NAME).is_file():
        loaded = load_model(source)  # strict: a broken folder never reaches the Hub
        for name in MODEL_FILES:
            if (source / name).is_file() and (source / name).resolve() != (folder / name).resolve():
                shutil.copyfile(source / name, folder / name)
        if vocab_file is not None:
            shutil.copyfile(vocab_file, folder / VOCAB_NAME)
    else:
        loaded = load_model(source) if source is not None else model
        save_pretrained(loaded, folder, vocab_file=vocab_file, dtype=dtype)
    card = model_card(loaded, repo_id, description, license, has_vocab=(folder / VOCAB_NAME).is_file())
    (folder / CARD_NAME).write_text(card, encoding="utf-8")
    return folder


def push_to_hub(model: ElmoBiLM | str | Path, repo_id: str, *, vocab_file: str | Path | None = None,
                description: str = "", license: str | None = None, private: bool | None = None,
                token: str | bool | None = None, commit_message: str = "Upload ELMo model",
                revision: str | None = None, create_pr: bool = False, dtype: torch.dtype = torch.float32) -> str:
    """Upload a model (a loaded model or a model folder) with a model card to the Hub repo `repo_id`.

    The repository is created if missing. Returns the URL of the commit (or pull request).
    """
    hub = _hub()
    api = hub.HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="elmo-hub-") as staging:
        save_for_hub(model, staging, repo_id, vocab_file=vocab_file, description=description, license=license,
                     dtype=dtype)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message=commit_message,
                                   revision=revision, create_pr=create_pr, repo_type="model")
    return str(getattr(commit, "pr_url", None) or getattr(commit, "commit_url", commit))
