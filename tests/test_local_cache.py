"""The local model's GGUF loads and its cache folder: a cold load parses the GGUF file once less
(its tokenizer from the vocabulary's metadata), and the SmolLM2 copy older versions cached for the
intent model (``<cache>/smollm2-135m-instruct``, 517 MB nothing reads) is removed once the shared
cache replaces it — only a folder of exactly that layout, never a user's."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")
pytest.importorskip("torch")

from agentroute.pool.backends.local import (  # noqa: E402
    DEFAULT_GGUF,
    LocalModel,
    ModelSource,
    drop_old_smollm_cache,
)
from tests.tiny_gguf import write_tiny_gguf  # noqa: E402

OLD = "smollm2-135m-instruct"
SMOLLM_SHAPE = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 30, "hidden_size": 576}


def test_a_cold_gguf_load_parses_the_file_twice_not_three_times(tmp_path: Path, monkeypatch) -> None:
    """The tokenizer went through ``AutoTokenizer``, which parses the whole file for a config the
    model's load parses again (SmolLM2: 3 parses of ~5 s each on a cold load)."""
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    parses: list[str] = []
    init = gguf.GGUFReader.__init__
    monkeypatch.setattr(gguf.GGUFReader, "__init__", lambda self, *a, **k: parses.append(str(a[0])) or init(self, *a, **k))
    model = LocalModel.load(str(path), cache=tmp_path / "cache")
    assert model.loaded_from == "gguf" and parses == [str(path)] * 2
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)  # what it was built with
    assert type(model.tokenizer) is type(auto)
    for text in ("hello there", "the hell {x}"):
        assert model.tokenizer.encode(text) == auto.encode(text)
    parses.clear()
    cached = LocalModel.load(str(path), cache=tmp_path / "cache")
    assert cached.loaded_from == "cache" and parses == []
    assert cached.tokenizer.encode("hello there") == auto.encode("hello there")


def old_cache(root: Path, weights: bytes = b"\0" * 4096, extra: str | None = None) -> Path:
    """A folder laid out as older versions wrote it (small stand-in weights)."""
    folder = root / OLD
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**SMOLLM_SHAPE, "vocab_size": 49152}))
    for name in ("generation_config.json", "tokenizer_config.json", "tokenizer.json"):
        (folder / name).write_text("{}")
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    (folder / "model.safetensors").write_bytes(weights)
    if extra:
        (folder / extra).write_text("mine")
    return folder


def test_only_a_copy_of_the_shared_cache_is_removed(tmp_path: Path) -> None:
    """Removed only when it is a copy of the shared cache (its weights byte-identical): a user's own
    SmolLM2 of the very same layout and config (a fine-tune, say) was removed too."""
    ours = tmp_path / "models" / "SmolLM2"
    ours.mkdir(parents=True)
    (ours / "model.safetensors").write_bytes(b"\0" * 4096)
    folder = old_cache(tmp_path / "a")
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert drop_old_smollm_cache(tmp_path / "a", ours) == size
    assert not folder.exists() and os.listdir(tmp_path / "a") == []
    kept = [
        old_cache(tmp_path / "b", extra="notes.txt"),  # a file we never wrote
        old_cache(tmp_path / "c", weights=b"\0" * 4095 + b"\1"),  # the user's fine-tune: same size, same config
        old_cache(tmp_path / "d", weights=b"\0" * 100),  # another model
    ]
    (tmp_path / "e" / OLD).mkdir(parents=True)  # empty
    (tmp_path / "f").mkdir()
    os.symlink(old_cache(tmp_path / "g"), tmp_path / "f" / OLD)  # a link to the user's own copy
    (old_cache(tmp_path / "h") / "model.safetensors").unlink()
    (tmp_path / "h" / OLD / "model.safetensors").mkdir()  # not a file
    for root in ("b", "c", "d", "e", "f", "h", "nowhere"):
        assert drop_old_smollm_cache(tmp_path / root, ours) == 0
    assert drop_old_smollm_cache(tmp_path / "b", tmp_path / "missing") == 0  # ours unreadable: never raises
    assert all((f / "model.safetensors").is_file() for f in kept) and (tmp_path / "g" / OLD / "config.json").is_file()
    assert (tmp_path / "e" / OLD).is_dir() and (tmp_path / "f" / OLD).is_symlink()
    assert (tmp_path / "c" / OLD / "model.safetensors").read_bytes()[-1:] == b"\1"


@pytest.mark.slow
def test_loading_smollm2_removes_the_old_copy_beside_its_cache(tmp_path: Path) -> None:
    """Through the load users make: the shared cache is in place (linked from the real one), the
    old copy (the same weights, as older versions wrote them) goes."""
    real = ModelSource.resolve(DEFAULT_GGUF).cache_dir()
    if not (real / "agentroute-cache.json").is_file():
        LocalModel.shared(DEFAULT_GGUF)  # converts it once (the other slow tests load it anyway)
    root = tmp_path / "cache"
    linked = ModelSource.resolve(DEFAULT_GGUF).cache_dir(root)
    linked.mkdir(parents=True)
    for f in real.iterdir():
        os.symlink(f, linked / f.name)
    old = old_cache(root)
    (old / "model.safetensors").unlink()
    shutil.copyfile(real / "model.safetensors", old / "model.safetensors")
    assert LocalModel.load(DEFAULT_GGUF, cache=root).loaded_from == "cache"
    assert not old.exists() and linked.is_dir() and sorted(os.listdir(root)) == ["models"]


def test_every_cache_lives_in_one_folder_with_a_tilde_expanded(tmp_path: Path, monkeypatch) -> None:
    """The embeddings cache read ``$AGENTROUTE_CACHE`` as is: ``~/cache`` (from a .env file, say)
    made a folder named ``~`` in the working directory, and an empty value the working directory
    itself, while converted models went to the home folder."""
    from agentroute.embed import SentenceEmbedder, cache_dir
    from agentroute.pool.backends.local import cache_root

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for value, want in [("~/cache", tmp_path / "home" / "cache"), ("", tmp_path / "home" / ".cache" / "agentroute"),
                        (str(tmp_path / "abs"), tmp_path / "abs")]:  # fmt: skip
        monkeypatch.setenv("AGENTROUTE_CACHE", value)
        assert cache_dir() == cache_root() == want
        assert SentenceEmbedder(cache=True)._cache_path == want / "embeddings.sqlite"
