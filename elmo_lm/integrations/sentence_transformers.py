"""`ElmoModule`: ELMo as the input module of a `SentenceTransformer` (`pip install "elmo-lm[sentence-transformers]"`).

    model = SentenceTransformer(modules=[ElmoModule(), Pooling(ElmoModule().get_embedding_dimension())])

Texts are split by elmo-lm's tokenizer (or given as token lists); the module outputs `token_embeddings`
`(B, T, D)` and `attention_mask` `(B, T)` for Pooling. The language model is frozen unless
`requires_grad=True`; the "mix" layer weights are trained by any loss either way.

Saving writes the module's settings, the language model as a model folder and the mix weights into the
module's subfolder. Loading the saved model needs `trust_remote_code=True` with sentence-transformers 6:
it imports only classes of its own namespace without it, and this one lives in the installed elmo_lm
package. The flag downloads nothing here (a saved model holds no code: `modules.json` names the installed
class), but on a Hub repo it would also let that repo's own Python files run, so give it only to
repositories you trust.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

try:
    from sentence_transformers.base.modules import InputModule
except ImportError:  # sentence-transformers 5
    from sentence_transformers.models import InputModule

from ..io import load_model, save_pretrained
from ..model import ElmoBiLM
from ..tokenize import tokenize
from .layers import LayerChoice, contextual_layers, language_model

MIX_WEIGHTS = "layer_choice.safetensors"


class ElmoModule(InputModule):
    """ELMo token vectors for sentence-transformers: text in, `token_embeddings` and `attention_mask` out."""

    config_file_name = "elmo_module_config.json"
    config_keys = ["layers", "do_layer_norm", "requires_grad", "max_seq_length"]
    save_in_root = False

    def __init__(
        self,
        model: ElmoBiLM | str | Path | None = None,
        layers: str = "mix",
        do_layer_norm: bool = False,
        requires_grad: bool = False,
        max_seq_length: int | None = None,
    ) -> None:
        """Args:
            model: a loaded `ElmoBiLM` or a model folder; None for the bundled model.
            layers: "mix" (learned scalar mix), "top", "average", or "all" (concatenated).
            do_layer_norm: layer-normalise each layer before the mix.
            requires_grad: fine-tune the language model's weights too.
            max_seq_length: cut longer token sequences (None: no limit).
        """
        super().__init__()
        model = language_model(model, requires_grad)
        self.elmo = model
        self.layer_choice = LayerChoice(model.config.n_output_layers, layers, do_layer_norm)
        self.layers, self.do_layer_norm = layers, do_layer_norm
        self.requires_grad, self.max_seq_length = requires_grad, max_seq_length

    def get_embedding_dimension(self) -> int:
        """Width of each token vector."""
        return self.layer_choice.output_dim(self.elmo.config.output_dim)

    get_word_embedding_dimension = get_embedding_dimension  # sentence-transformers 5's name

    def preprocess(self, inputs: list[str | list[str]], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Token lists of the inputs (strings are tokenised) and their lengths; the forward pass builds the ids."""
        token_lists = [tokenize((prompt or "") + text) if isinstance(text, str) else list(text) for text in inputs]
        if self.max_seq_length is not None:
            token_lists = [tokens[: self.max_seq_length] for tokens in token_lists]
        lengths = torch.tensor([len(tokens) for tokens in token_lists])  # (B,)
        return {"tokens": token_lists, "sentence_lengths": lengths}

    def tokenize(self, texts: list[str], **kwargs: Any) -> dict[str, Any]:
        """sentence-transformers 5 calls this; 6 calls `preprocess`."""
        return self.preprocess(texts, **kwargs)

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Adds `token_embeddings` `(B, T, D)` and `attention_mask` `(B, T)`."""
        layers, mask = contextual_layers(self.elmo, features["tokens"])  # (B, L+1, T, 2P), (B, T)
        features["token_embeddings"] = self.layer_choice(layers, mask)  # (B, T, D)
        features["attention_mask"] = mask.long()
        return features

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """The settings, the language model as a model folder, and the layer-choice weights."""
        self.save_config(output_path)
        save_pretrained(self.elmo, output_path)
        save_file({k: v.detach().contiguous() for k, v in self.layer_choice.state_dict().items()},
                  str(Path(output_path) / MIX_WEIGHTS))

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             **kwargs: Any) -> ElmoModule:
        """The module saved by `save`, from a local folder or a Hub repo."""
        hub = dict(subfolder=subfolder, token=token, cache_folder=cache_folder, revision=revision,
                   local_files_only=local_files_only)
        config = cls.load_config(model_name_or_path, **hub)
        folder = Path(cls.load_dir_path(model_name_or_path, **hub))
        module = cls(load_model(folder), **config)
        module.layer_choice.load_state_dict(load_file(str(folder / MIX_WEIGHTS)))
        return module
