"""The tiny offline T5 tokenizer is a real, deterministic SentencePiece-Unigram T5 tokenizer."""
import diffalign  # noqa: F401  (compat shim first)
from transformers import AutoTokenizer, T5TokenizerFast

from diffalign.pipelines.tokenizers import t5_tokenizer, t5_unigram_vocab


def test_t5_layout_known_words_and_spelled_unknowns(tmp_path):
    tok = t5_tokenizer(model_max_length=16)
    assert isinstance(tok, T5TokenizerFast)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.tokenize("a red circle") == ["\u2581a", "\u2581red", "\u2581circle"]
    assert tok.tokenize("zebra") == ["\u2581z", "e", "b", "r", "a"]  # spelled from single characters
    ids = tok(["a red circle"], padding="max_length", max_length=8).input_ids[0]
    assert ids[3] == tok.eos_token_id and ids[4:] == [0, 0, 0, 0]  # </s> appended, then <pad>
    assert tok.decode(ids, skip_special_tokens=True) == "a red circle"
    assert "\u00e9" not in tok.get_vocab() and tok("caf\u00e9").input_ids[-2] == tok.unk_token_id

    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(str(tmp_path))
    assert again("two blue squares").input_ids == tok("two blue squares").input_ids
    assert t5_unigram_vocab() == t5_unigram_vocab() and len(tok) == len(t5_unigram_vocab())
