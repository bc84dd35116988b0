"""Hub downloads can be pinned (``revision``) and the commit used is recorded."""
from __future__ import annotations

import pytest

from diffalign.utils.hub import hub_commit, resolve_model_commit

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_hub_commit_of_cache_paths():
    assert hub_commit(f"/c/models--xswu--HPSv2/snapshots/{SHA}/HPS_v2_compressed.pt") == SHA
    assert hub_commit("/models/hps/HPS_v2_compressed.pt") is None and hub_commit(None) is None


def test_reward_files_take_a_revision(monkeypatch, tmp_path):
    import huggingface_hub

    from diffalign.rewards.checkpoints import resolve_file

    calls = []

    def fake_download(repo_id, filename, revision=None, local_files_only=False):
        calls.append((repo_id, filename, revision))
        return str(tmp_path / "snapshots" / SHA / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    path = resolve_file(None, "HPS_v2_compressed.pt", "xswu/HPSv2", "hpsv2.0", revision="v1.0")
    assert calls == [("xswu/HPSv2", "HPS_v2_compressed.pt", "v1.0")] and hub_commit(path) == SHA


def test_model_commit_from_the_hub_cache(monkeypatch, tmp_path):
    repo = tmp_path / "models--org--model"
    (repo / "snapshots" / SHA).mkdir(parents=True)
    (repo / "snapshots" / SHA / "model_index.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert resolve_model_commit("org/model") == SHA
    assert resolve_model_commit("org/absent") is None
    assert resolve_model_commit("shapes-sd") is None and resolve_model_commit(str(tmp_path)) is None


# --------------------------------------------------------------------------- revision through a real hub cache

SHA_B = "b" * 40


def _hub_cache(monkeypatch, tmp_path):
    """A Hugging Face hub cache in ``tmp_path`` (offline): what ``from_pretrained(repo_id, revision=...)`` reads."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def _snapshot(cache, repo_id: str, sha: str, main: bool):
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    folder = repo / "snapshots" / sha
    folder.mkdir(parents=True)
    if main:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(sha)
    return folder


@pytest.mark.slow
def test_clip_rewards_load_the_pinned_revision(monkeypatch, tmp_path):
    """``pickscore`` / ``clip_score`` with ``revision=`` load that commit's weights, not the branch head's."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from diffalign.rewards import load

    cache = _hub_cache(monkeypatch, tmp_path)
    for sha, logit_scale in ((SHA, 1.0), (SHA_B, 2.0)):  # two commits of one repo: main = SHA
        torch.manual_seed(0)
        config = CLIPConfig(
            text_config=dict(vocab_size=49408, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2),
            vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                               patch_size=16),
            projection_dim=8, logit_scale_init_value=logit_scale)
        CLIPModel(config).save_pretrained(_snapshot(cache, "org/tiny-clip", sha, main=sha == SHA))
    head = load("pickscore", model="org/tiny-clip")
    pinned = load("pickscore", model="org/tiny-clip", revision=SHA_B)
    assert head.clip.model.logit_scale.item() == pytest.approx(1.0)
    assert pinned.clip.model.logit_scale.item() == pytest.approx(2.0)
    assert load("clip_score", model="org/tiny-clip", revision=SHA_B).clip.model.logit_scale.item() == pytest.approx(2.0)
    with pytest.raises(FileNotFoundError, match="org/tiny-clip"):
        load("pickscore", model="org/tiny-clip", revision="c" * 40)  # a commit that is not there


@pytest.mark.slow
def test_sample_and_eval_pipelines_load_the_pinned_revision(monkeypatch, tmp_path):
    """``PipelineSpec(revision=...)`` (``--revision`` of sample / eval, ``PIPE@REV`` of compare) loads that commit."""
    import json
    import os
    import shutil

    from diffalign import shapes
    from diffalign.pipelines.generation import PipelineSpec, load_pipeline_spec

    cache = _hub_cache(monkeypatch, tmp_path / "hub")
    source = shapes.pretrained_path("sd")
    for sha, steps in ((SHA, 1000), (SHA_B, 500)):  # the two commits differ in the scheduler's config
        folder = _snapshot(cache, "org/shapes-sd", sha, main=sha == SHA)
        shutil.copytree(source, folder, dirs_exist_ok=True)
        config = folder / "scheduler" / "scheduler_config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "num_train_timesteps": steps}))
    head = load_pipeline_spec(PipelineSpec("org/shapes-sd"), device="cpu")
    pinned = load_pipeline_spec(PipelineSpec.parse("org/shapes-sd@" + SHA_B), device="cpu")
    assert head.scheduler.config.num_train_timesteps == 1000
    assert pinned.scheduler.config.num_train_timesteps == 500
    assert os.path.isdir(source)  # a local folder ignores the revision
    assert load_pipeline_spec(PipelineSpec(source, revision=SHA_B), device="cpu").scheduler.config.num_train_timesteps == 1000
