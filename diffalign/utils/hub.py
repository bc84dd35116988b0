"""Messages for models that cannot be fetched from the Hugging Face Hub."""
from __future__ import annotations

import os


def hub_help(name: str, err: Exception) -> str:
    """One line saying why ``name`` could not be fetched and how to get it offline."""
    offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True", "YES", "yes")
    return (
        f"could not get {name!r}: it is not a local folder, and the hub "
        + ("is disabled (HF_HUB_OFFLINE=1) and the model is not in the local cache" if offline else "lookup failed")
        + f" ({type(err).__name__}: {err}). Download it where you have network access with "
        f"`huggingface-cli download {name} --local-dir DIR` and pass DIR instead."
    )
