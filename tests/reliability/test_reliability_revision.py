"""Hub downloads can be pinned (``revision``) and the commit used is recorded."""
from __future__ import annotations

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
