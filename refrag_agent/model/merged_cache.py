"""A known base decoder with a LoRA adapter merged in, cached once in the user's cache.

Merging an adapter (``adapter.py``) imports peft, loads the adapter onto the base and folds
every LoRA pair into its linear layer: over two seconds on 2 cores for SmolLM2-135M, on
every load of the default model. :func:`load_merged` does it once and keeps the result as
a plain decoder directory, so later loads read safetensors and never import peft::

    <cache>/merged/<key>/    config.json, model.safetensors ... and merge.json, written last
    <cache>/merged/<key>.lock

``key`` is a digest of content only: the base's recorded fingerprint, the adapter's
fingerprint read from its files (:func:`adapter_files_fingerprint`) and the adapter's
settings; nothing that a library's version changes, so upgrading transformers or peft
keeps the entry. The caller checks the adapter's fingerprint against its checkpoint's
record before asking for the merge. An entry is written into a temporary sibling and
renamed into place under a file lock (the way ``base_decoder.py`` converts the base), and
``merge.json`` records every file's size and CRC-32: an entry that does not match them (a
crash, a truncated copy, a flipped byte) is rebuilt, never used. Entries are never needed:
deleting ``<cache>/merged/`` only costs the next load one merge.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from refrag_agent.errors import ModelError
from refrag_agent.logs import get_logger
from refrag_agent.model.adapter import adapter_fingerprint, load_adapter, merged
from refrag_agent.model.base_decoder import (
    BaseDecoder,
    base_decoder_dir,
    base_fingerprint,
    cache_root,
    file_lock,
)
from refrag_agent.model.decoder import load_decoder
from refrag_agent.model.fingerprint import Fingerprint, json_value
from refrag_agent.model.quiet import quiet_transformers
from refrag_agent.model.tensor_digest import tensor_digests

log = get_logger(__name__)

MERGED_DIR = "merged"
MERGE_FILE = "merge.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# adapter_config.json entries that say who wrote the adapter or where its base was, not
# what the merge computes: left out of the key.
_NOT_MERGED = ("peft_version", "base_model_name_or_path", "revision", "inference_mode")
# The suffixes peft writes for a plain LoRA pair, and the name each has in the state dict
# of the loaded adapter (the adapter's name, "default", inserted).
_LORA_SUFFIXES = {
    ".lora_A.weight": ".lora_A.default.weight",
    ".lora_B.weight": ".lora_B.default.weight",
}
_CRC_BLOCK = 16 << 20


def merged_root(cache: Path | None = None) -> Path:
    return (Path(cache) if cache is not None else cache_root()) / MERGED_DIR


def adapter_files_fingerprint(directory: Path) -> Fingerprint | None:
    """The adapter's fingerprint read from its files, without peft.

    Equal to :func:`~refrag_agent.model.adapter.adapter_fingerprint` of the loaded adapter
    (:func:`load_merged` checks it when it merges). None when the folder holds more than
    plain LoRA pairs (saved embeddings, DoRA magnitudes ...): such an adapter is merged on
    every load, as before.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        config = json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        state = load_file(str(directory / ADAPTER_WEIGHTS))
        fields = {
            "rank": int(config["r"]),
            "alpha": int(config["lora_alpha"]),
            "targets": sorted(str(t) for t in config["target_modules"]),
        }
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return None  # the peft path reports what is wrong with it
    renamed = {}
    for name, tensor in state.items():
        suffix = next((s for s in _LORA_SUFFIXES if name.endswith(s)), None)
        if suffix is None:
            return None
        renamed[name.removesuffix(suffix) + _LORA_SUFFIXES[suffix]] = tensor
    return Fingerprint(fields, tensor_digests(renamed))


def merge_key(base: Fingerprint, adapter: Fingerprint, adapter_dir: Path) -> str:
    """The entry's name: a digest of the base's and adapter's fingerprints and the
    adapter's settings (rsLoRA, patterns ... change the merge without changing its tensors)."""
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    settings = {k: v for k, v in config.items() if k not in _NOT_MERGED}
    payload = json.dumps(
        {"base": base.digest, "adapter": adapter.digest, "settings": json_value(settings)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def load_merged(
    base: BaseDecoder, adapter_dir: Path, adapter: Fingerprint, *, cache: Path | None = None
) -> Any:
    """``base`` with the adapter in ``adapter_dir`` merged in (eval mode, fp32).

    ``adapter`` is the adapter's fingerprint from :func:`adapter_files_fingerprint`, already
    checked against the checkpoint's record by the caller. Reads the cached entry when it
    is whole; otherwise merges (loading peft), writes the entry and returns the merge.
    """
    root = merged_root(cache)
    key = merge_key(base_fingerprint(base, cache=cache), adapter, adapter_dir)
    entry = root / key
    started = time.perf_counter()
    problem = _damage(entry, key)
    if problem is None:
        model = load_decoder(entry)
        log.info("merged decoder read from cache", path=str(entry), seconds=_since(started))
        return model
    if entry.exists():
        log.warning(
            "merged decoder cache entry is damaged: rebuilding", path=str(entry), problem=problem
        )
    model = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        with file_lock(root / f"{key}.lock"):
            # Another process may have written the entry while this one waited for the lock.
            if _damage(entry, key) is None:
                return load_decoder(entry)
            model = _merge(base, adapter_dir, adapter, cache)
            _write(model, root, entry, key, base, adapter)
    except OSError as e:
        # A read-only or full cache: the merge still serves this load, it is just not kept.
        log.warning("merged decoder not cached", path=str(entry), error=str(e))
        return model if model is not None else _merge(base, adapter_dir, adapter, cache)
    log.info("merged decoder cached", path=str(entry), seconds=_since(started))
    return model


def _merge(base: BaseDecoder, adapter_dir: Path, adapter: Fingerprint, cache: Path | None) -> Any:
    decoder = load_decoder(base_decoder_dir(base, cache=cache))
    adapted = load_adapter(decoder, adapter_dir, merge=False)
    loaded = adapter_fingerprint(adapted)
    if loaded.digest != adapter.digest:
        # Never cache a merge under a key its weights do not match.
        raise ModelError(
            "the adapter as peft loads it differs from its files' fingerprint",
            path=str(adapter_dir),
            differs=loaded.differences(adapter),
        )
    return merged(adapted)


def _write(
    model: Any, root: Path, entry: Path, key: str, base: BaseDecoder, adapter: Fingerprint
) -> None:
    """Save ``model`` into a temporary sibling of ``entry``, then rename it into place."""
    # Only the lock's holder writes this key, so leftovers of a crashed write are stale.
    for stale in root.glob(f".{key}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
    try:
        with quiet_transformers():
            model.save_pretrained(str(work))
        files = {
            p.name: {"bytes": p.stat().st_size, "crc32": _crc32(p)}
            for p in sorted(work.iterdir())
            if p.is_file()
        }
        record = {"key": key, "base": base.name, "adapter": adapter.digest, "files": files}
        (work / MERGE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(work, entry)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _damage(entry: Path, key: str) -> str | None:
    """What is wrong with the entry at ``entry``, or None when every file is as recorded."""
    try:
        record = json.loads((entry / MERGE_FILE).read_text(encoding="utf-8"))
        files = dict(record["files"])
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MERGE_FILE} is unreadable"
    if record.get("key") != key or "config.json" not in files:
        return f"{MERGE_FILE} describes another entry"
    for name, expected in files.items():
        path = entry / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != expected.get("bytes"):
            return f"{name} has {size} bytes, {expected.get('bytes')} recorded"
        if _crc32(path) != expected.get("crc32"):
            return f"{name} differs from its recorded CRC-32"
    return None


def _crc32(path: Path) -> int:
    # CRC-32 catches truncation and flipped bytes at several GB/s (sha256 is 3x slower);
    # the entry is the user's own cache, not something an attacker hands over.
    crc = 0
    buffer = bytearray(_CRC_BLOCK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            crc = zlib.crc32(view[:n], crc)
    return crc


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 2)
