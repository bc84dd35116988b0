"""Offline tokenizers.

The real CLIP byte-level BPE vocabulary (``bpe_simple_vocab_16e6.txt.gz``) ships inside the
``open-clip-torch`` wheel. From it we build a genuine ``transformers.CLIPTokenizer`` whose ids match
OpenAI's tokenizer (BOS 49406, EOS 49407, 49,408 entries) without touching the network.
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import os
import tempfile

CLIP_VOCAB_SIZE = 49408
_N_MERGES = 49152 - 256 - 2


def clip_bpe_path() -> str:
    """Path of the CLIP BPE merges file shipped in the open-clip-torch wheel."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The CLIP BPE vocabulary ships in the 'open-clip-torch' package; install it with "
            "`pip install open-clip-torch`."
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "bpe_simple_vocab_16e6.txt.gz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing from the installed open-clip-torch package.")
    return path


def _bytes_to_unicode() -> list[str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


@functools.lru_cache(maxsize=1)
def _clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    with gzip.open(clip_bpe_path()) as f:
        lines = f.read().decode("utf-8").split("\n")[1 : _N_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = _bytes_to_unicode()
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == CLIP_VOCAB_SIZE, len(vocab)
    return {tok: i for i, tok in enumerate(vocab)}, [" ".join(m) for m in merges]


def write_clip_vocab(folder: str) -> tuple[str, str]:
    """Write ``vocab.json`` and ``merges.txt`` of the CLIP BPE into ``folder``; return both paths."""
    vocab, merges = _clip_vocab_and_merges()
    os.makedirs(folder, exist_ok=True)
    vocab_file = os.path.join(folder, "vocab.json")
    merges_file = os.path.join(folder, "merges.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(merges_file, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocab_file, merges_file


def clip_tokenizer(pad_token: str = "<|endoftext|>", model_max_length: int = 77):
    """A real ``CLIPTokenizer`` built offline from open-clip-torch's vocabulary.

    ``pad_token``: ``"<|endoftext|>"`` as OpenAI's checkpoints (SD1.x, SDXL's first encoder) or
    ``"!"`` as the LAION/OpenCLIP ones (SD2.x, SDXL's second encoder).
    """
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = write_clip_vocab(tmp)
        # The tokenizer reads both files into memory here; the folder may then go.
        return CLIPTokenizer(vocab_file, merges_file, pad_token=pad_token, model_max_length=model_max_length)


# --------------------------------------------------------------------------- T5 (tiny but real)
#: Words of the tiny T5 vocabulary: prompt words of the shapes world and GenEval-style prompts.
#: Each becomes one SentencePiece-style piece ("▁word"); anything else is spelled with single characters.
T5_TINY_WORDS: tuple[str, ...] = tuple(
    """
    a an the of and or with without on in at to from by for is are photo picture image painting drawing
    render rendering scene view background foreground left right above below behind front next near far
    one two three four five six seven eight nine ten many some several single pair
    red orange yellow green blue purple pink brown black white gray grey cyan magenta gold silver colorful
    circle circles square squares triangle triangles diamond diamonds star stars hexagon hexagons shape shapes
    object objects small large big tiny little bright dark light flat simple high quality detailed realistic
    cat cats dog dogs person people car cars tree trees house houses flower flowers bird birds sky water
    video clip moving slowly quickly walking running flying sitting standing
    """.split()
)
_T5_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()/&+%"


def t5_unigram_vocab(words=T5_TINY_WORDS) -> list[tuple[str, float]]:
    """A small SentencePiece Unigram vocabulary in T5's layout: ``<pad>``=0, ``</s>``=1, ``<unk>``=2,
    then ``▁``, one piece per word (score decreasing with rank) and every single character (low
    scores, so unknown words are spelled out). Deterministic: no training, no randomness."""
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    seen = {p for p, _ in pieces}
    for rank, word in enumerate(dict.fromkeys(words)):
        piece = "\u2581" + word
        if piece not in seen:
            pieces.append((piece, -3.0 - 0.01 * rank))
            seen.add(piece)
    for char in _T5_CHARACTERS:
        for piece in (char, "\u2581" + char):
            if piece not in seen:
                pieces.append((piece, -12.0 if piece.startswith("\u2581") else -10.0))
                seen.add(piece)
    return pieces


def t5_tokenizer(model_max_length: int = 512, extra_ids: int = 0):
    """A real ``T5TokenizerFast`` (transformers' tokenizers-backed T5 tokenizer: SentencePiece
    Unigram model, Metaspace pre-tokenizer, ``</s>`` appended) over the tiny vocabulary of
    :func:`t5_unigram_vocab`. Built offline and deterministically; ``len(tokenizer)`` is the
    ``vocab_size`` a matching ``T5EncoderModel`` needs. It saves and reloads with
    ``save_pretrained`` / ``from_pretrained`` like any T5 tokenizer."""
    from transformers import T5TokenizerFast

    return T5TokenizerFast(vocab=t5_unigram_vocab(), extra_ids=extra_ids, model_max_length=model_max_length)


#: words of Qwen-Image's prompt template: with one token each, its system prefix is 34 tokens, as with
#: the real Qwen2 tokenizer (the pipeline drops exactly that many: ``prompt_template_encode_start_idx``).
QWEN_TEMPLATE_WORDS: tuple[str, ...] = (
    "system", "user", "assistant", "Describe", "the", "image", "by", "detailing", "color", "shape", "size",
    "texture", "quantity", "text", "spatial", "relationships", "of", "objects", "and", "background",
)


def _bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one pre-tokenized word: merge the lowest-ranked adjacent pair until none applies."""
    while len(pieces) > 1:
        pairs = [(ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(pieces, pieces[1:]))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2 :]
    return pieces


def qwen2_tokenizer(words=QWEN_TEMPLATE_WORDS + T5_TINY_WORDS):
    """A real ``Qwen2Tokenizer`` (byte-level BPE, Qwen2's pre-tokenizer and chat special tokens) over a
    tiny vocabulary: the 256 byte symbols plus one token per word of ``words`` (with and without the
    leading space), each built by merges appended after those that already apply to it, so other
    text falls back to smaller pieces. Offline and deterministic."""
    from transformers import Qwen2Tokenizer

    symbols = _bytes_to_unicode()
    printable = [ord(c) for c in symbols if ord(c) < 256]  # bytes that are their own symbol, in table order
    byte_symbol = dict(zip(printable + [b for b in range(256) if b not in printable], symbols))
    vocab = {sym: i for i, sym in enumerate(symbols)}
    ranks: dict[tuple[str, str], int] = {}
    for word in dict.fromkeys(words):
        for piece in (" " + word, word):
            pieces = _bpe([byte_symbol[b] for b in piece.encode("utf-8")], ranks)
            while len(pieces) > 1:
                ranks[(pieces[0], pieces[1])] = len(ranks)
                pieces = [pieces[0] + pieces[1]] + pieces[2:]
                vocab.setdefault(pieces[0], len(vocab))
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    for token in specials:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=sorted(ranks, key=ranks.get))
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    return tokenizer
