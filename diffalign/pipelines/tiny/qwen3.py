"""A tiny random-init Qwen3 text encoder and a chat-template tokenizer, shared by the tiny FLUX.2 [klein]
and Z-Image builds (both pipelines encode prompts with Qwen3 through ``apply_chat_template``)."""
from __future__ import annotations

import torch

#: Qwen3's chat template reduced to what the pipelines use (user turns, the generation prompt and the
#: empty think block that ``enable_thinking=False`` adds); the output for those is Qwen3's own.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


def qwen3_tokenizer():
    """The offline tiny ``Qwen2Tokenizer`` with Qwen3's chat template (for ``apply_chat_template``)."""
    from diffalign.pipelines.tokenizers import qwen2_tokenizer

    tokenizer = qwen2_tokenizer()
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    return tokenizer


def tiny_qwen3(seed: int, vocab_size: int, *, hidden_size: int = 16, num_layers: int = 2, causal_lm: bool = True):
    """A Qwen3 (``Qwen3ForCausalLM``, or the bare ``Qwen3Model``) of width ``hidden_size``, no download."""
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=hidden_size // 2, max_position_embeddings=1024, tie_word_embeddings=False)
    return (Qwen3ForCausalLM if causal_lm else Qwen3Model)(config).eval()


__all__ = ["QWEN3_CHAT_TEMPLATE", "qwen3_tokenizer", "tiny_qwen3"]
