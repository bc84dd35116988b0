"""Upload a run's outputs to the Hugging Face Hub (``push_to_hub: {repo_id, private}`` /
``diffalign export --push REPO_ID``) through ``huggingface_hub``."""
from __future__ import annotations

import os


class HubUploadError(RuntimeError):
    """The upload failed; the message is one line saying why."""


def push_folder(folder: str, repo_id: str, *, private: bool = True, allow_patterns: list[str] | None = None,
                commit_message: str = "Upload with diffalign") -> str:
    """Create ``repo_id`` (if needed) and upload ``folder``; return the repo URL. Offline
    (``HF_HUB_OFFLINE=1``) or on any Hub error: :class:`HubUploadError` with one line."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise HubUploadError(f"cannot push {folder} to {repo_id}: the Hub is disabled (HF_HUB_OFFLINE=1); "
                             "unset it on a machine with network access and run `diffalign export RUN_DIR --push REPO_ID`")
    api = HfApi()
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=folder, repo_id=repo_id, allow_patterns=allow_patterns, commit_message=commit_message)
    except Exception as e:  # network, auth, permissions: one line with the cause
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise HubUploadError(f"cannot push {folder} to {repo_id}: {type(e).__name__}: {first}") from None
    return str(url)
