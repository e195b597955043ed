"""Model folders on the Hugging Face Hub: a local round trip, and download/upload against a patched API (no network)."""

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from elmo_lm import ElmoBiLM, ElmoError, Embedder, ModelConfig, save_pretrained
from elmo_lm.integrations.hub import save_for_hub

TINY = ModelConfig(char_embed_dim=4, filters=((1, 4), (2, 8)), n_highway=1, lstm_dim=16, projection_dim=8)
SENTENCES = [["The", "bank", "closed", "."], ["Rivers", "have", "banks"]]


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ElmoBiLM(TINY).eval()


def _vectors(embedder):
    return embedder.encode(SENTENCES)


def _assert_same_model(embedder, model, tmp_path):
    """Identical vectors to the model opened from a plain model folder (the same kernels)."""
    save_pretrained(model, tmp_path / "plain")
    for got, want in zip(_vectors(embedder), _vectors(Embedder(tmp_path / "plain"))):
        np.testing.assert_array_equal(got, want)


def test_local_folder_round_trip_with_model_card(tmp_path, model):
    save_for_hub(model, tmp_path / "repo", "someone/elmo-tiny", description="A test model.", license="apache-2.0")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (tmp_path / "repo" / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\nlibrary_name: elmo-lm\n")
    assert 'Embedder.from_pretrained("someone/elmo-tiny")' in card and "A test model." in card
    _assert_same_model(Embedder.from_pretrained(tmp_path / "repo"), model, tmp_path)


def test_loading_is_strict(tmp_path, model):
    state = {k: v for k, v in model.state_dict().items() if k != "lstm.bias.1"}
    save_pretrained(model, tmp_path / "full")
    shutil.copytree(tmp_path / "full", tmp_path / "broken")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "broken" / "model.safetensors"))
    with pytest.raises(ElmoError, match="missing weight 'lstm.bias.1'"):
        Embedder.from_pretrained(tmp_path / "broken")
    with pytest.raises(ElmoError, match="not a Hub repo id"):
        Embedder.from_pretrained(tmp_path / "absent")


def test_from_pretrained_downloads_a_repo_through_huggingface_hub(tmp_path, model, monkeypatch):
    hub = pytest.importorskip("huggingface_hub", reason="huggingface_hub not installed (elmo-lm[hub])")
    save_pretrained(model, tmp_path / "snapshot")
    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(hub, "snapshot_download", snapshot_download)
    loaded = Embedder.from_pretrained("someone/elmo-tiny", revision="v1", batch_size=7)
    assert calls[0][0] == "someone/elmo-tiny" and calls[0][1]["revision"] == "v1"
    assert "model.safetensors" in calls[0][1]["allow_patterns"] and loaded.batch_size == 7
    _assert_same_model(loaded, model, tmp_path)

    def offline(repo_id, **kwargs):
        raise hub.errors.LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(hub, "snapshot_download", offline)
    with pytest.raises(ElmoError, match="not in the local Hub cache"):
        Embedder.from_pretrained("someone/elmo-tiny", local_files_only=True)


def test_push_to_hub_uploads_a_loadable_folder(tmp_path, model, monkeypatch):
    hub = pytest.importorskip("huggingface_hub", reason="huggingface_hub not installed (elmo-lm[hub])")
    uploaded, created = tmp_path / "uploaded", []

    def create_repo(self, repo_id, **kwargs):
        created.append((repo_id, kwargs))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        shutil.copytree(folder_path, uploaded)
        return hub.CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{'1' * 40}", commit_message="m",
                              commit_description="", oid="1" * 40)

    monkeypatch.setattr(hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(hub.HfApi, "upload_folder", upload_folder)
    save_pretrained(model, tmp_path / "folder")
    embedder = Embedder(tmp_path / "folder")
    url = embedder.push_to_hub("someone/elmo-tiny", private=True)
    assert url == "https://huggingface.co/someone/elmo-tiny/commit/" + "1" * 40
    assert created == [("someone/elmo-tiny", {"private": True, "exist_ok": True, "repo_type": "model"})]
    assert (uploaded / "README.md").is_file()
    _assert_same_model(Embedder.from_pretrained(uploaded), model, tmp_path)
