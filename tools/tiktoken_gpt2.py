"""tiktoken's "gpt2" encoding, built offline from the vocabulary bundled in data/gpt2/.

tiktoken.get_encoding("gpt2") downloads encoder.json and vocab.bpe; this machine has no
internet, so the same Encoding is built here from the local copies. The split pattern and
the special token are taken from the installed tiktoken_ext.openai_public at import time, so
they are exactly what tiktoken itself would use.

    sys.path.insert(0, "<repo>/tools"); from tiktoken_gpt2 import load_gpt2; enc = load_gpt2()
"""
import os

import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public as openai_public

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPT2_DIR = os.path.join(ROOT, "data", "gpt2")
ENDOFTEXT = "<|endoftext|>"
# SHA-256 of the official files (same values as tiktoken_ext.openai_public.gpt2()). Passing them
# also guards against tiktoken's path-keyed cache in $TMPDIR/data-gym-cache going stale.
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"

_cached = None


def load_gpt2():
    """Return the tiktoken Encoding equivalent to tiktoken.get_encoding("gpt2") (cached)."""
    global _cached
    if _cached is None:
        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=os.path.join(GPT2_DIR, "vocab.bpe"),
            encoder_json_file=os.path.join(GPT2_DIR, "encoder.json"),
            vocab_bpe_hash=VOCAB_BPE_SHA256,
            encoder_json_hash=ENCODER_JSON_SHA256,
        )
        _cached = tiktoken.Encoding(
            name="gpt2",
            pat_str=openai_public.r50k_pat_str,
            mergeable_ranks=ranks,
            special_tokens={ENDOFTEXT: 50256},
            explicit_n_vocab=50257,
        )
    return _cached


def read_text(path, errors="strict"):
    """Read a file as bytes and decode UTF-8 (never text mode: that would rewrite \\r\\n)."""
    with open(path, "rb") as f:
        return f.read().decode("utf-8", errors=errors)


if __name__ == "__main__":
    enc = load_gpt2()
    print(enc.name, enc.n_vocab, repr(enc._pat_str))
    print(enc.encode_ordinary("Hello world, it's 2024!"))
