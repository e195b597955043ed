"""ElmoModule inside a real SentenceTransformer: encode, save/load, an evaluator, a training loss (frozen or not)."""

import numpy as np
import pytest
import torch

pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed (elmo-lm[sentence-transformers])")
from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator  # noqa: E402
from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss  # noqa: E402
from sentence_transformers.sentence_transformer.modules import Dense, Pooling  # noqa: E402

from elmo_lm import ElmoBiLM, Embedder, ModelConfig  # noqa: E402
from elmo_lm.integrations.sentence_transformers import ElmoModule  # noqa: E402

TINY = ModelConfig(char_embed_dim=4, filters=((1, 8), (2, 8), (3, 16)), n_highway=1, lstm_dim=32, projection_dim=16)
TEXTS = ["The bank was closed.", "A river bank.", "Money in the bank!", ["token", "lists", "work", "too"]]
PAIRS = [("a red car", "a crimson car", 0.9), ("the cat sleeps", "a cat is sleeping", 0.9),
         ("the cat sleeps", "stock prices fell", 0.1), ("a red car", "he sings loudly", 0.1),
         ("stock prices fell", "markets dropped", 0.9), ("he sings loudly", "a crimson car", 0.1)]


def _model(layers="mix", requires_grad=False, head=False):
    torch.manual_seed(0)
    module = ElmoModule(ElmoBiLM(TINY).eval(), layers=layers, requires_grad=requires_grad)
    modules = [module, Pooling(module.get_embedding_dimension(), pooling_mode="mean")]
    if head:  # a trainable layer on top, as a frozen language model needs to learn anything much
        modules.append(Dense(module.get_embedding_dimension(), 32))
    return SentenceTransformer(modules=modules, device="cpu")


@pytest.mark.parametrize("layers", ["mix", "top", "average", "all"])
def test_encode_is_the_mean_of_the_embedders_vectors(layers):
    model = _model(layers)
    vectors = model.encode(TEXTS, batch_size=3)
    dim = 32 * 3 if layers == "all" else 32
    assert vectors.shape == (4, dim) and model.get_embedding_dimension() == dim
    embedder = Embedder(model[0].elmo)
    for text, vector in zip(TEXTS, vectors):
        token_layers = embedder.embed_sentence(text)  # (3, n, 32)
        per_token = {"top": token_layers[-1], "average": token_layers.mean(axis=0),
                     "mix": token_layers.mean(axis=0),  # a fresh mix: equal weights, gamma 1
                     "all": token_layers.transpose(1, 0, 2).reshape(token_layers.shape[1], -1)}[layers]
        np.testing.assert_allclose(vector, per_token.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_save_and_load_give_identical_vectors(tmp_path):
    model = _model()
    with torch.no_grad():
        model[0].layer_choice.mix.scalar_parameters.copy_(torch.tensor([0.5, -1.0, 2.0]))
    before = model.encode(TEXTS)
    model.save_pretrained(str(tmp_path / "st"))
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(tmp_path / "st"), device="cpu")
    loaded = SentenceTransformer(str(tmp_path / "st"), device="cpu", trust_remote_code=True)
    assert isinstance(loaded[0], ElmoModule) and loaded[0].layers == "mix"
    np.testing.assert_array_equal(loaded.encode(TEXTS), before)


def _train(model, steps):
    loss_fn = CosineSimilarityLoss(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    first = [model.preprocess([a for a, _, _ in PAIRS]), model.preprocess([b for _, b, _ in PAIRS])]
    labels = torch.tensor([score for _, _, score in PAIRS])
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn([dict(features) for features in first], labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("requires_grad", [False, True])
def test_a_training_loss_trains_the_mix_and_optionally_the_language_model(requires_grad):
    model = _model(requires_grad=requires_grad, head=True)
    evaluator = EmbeddingSimilarityEvaluator(*zip(*PAIRS), name="pairs", write_csv=False)
    before = evaluator(model)["pairs_spearman_cosine"]
    lm_before = {k: v.clone() for k, v in model[0].elmo.state_dict().items()}
    mix_before = model[0].layer_choice.mix.scalar_parameters.detach().clone()
    losses = _train(model, 30)
    after = evaluator(model)["pairs_spearman_cosine"]
    lm_changed = any(not torch.equal(v, model[0].elmo.state_dict()[k]) for k, v in lm_before.items())
    assert lm_changed == requires_grad
    assert not torch.equal(mix_before, model[0].layer_choice.mix.scalar_parameters)
    assert losses[-1] < 0.5 * losses[0]
    assert after > before and after > 0.8
