"""Engines decode an agent's placement plans (``refrag_agent.engines``).

::

    engine = LocalEngine(model)                          # in this process (the default)
    engine = LocalEngine(model, limits=BatchLimits(max_batch=32))  # rows decoded together
    engine = await RemoteEngine.connect(url)             # on a ``refrag-agent serve`` server
    engine = VLLMEngine(model, url, served_model="dec")  # on vLLM, as prompt embeddings
    engine = ScriptedEngine(model, ["Hello."])           # scripted answers, for tests
    async with Agent.open(engine=engine, memory="./agent-memory") as agent: ...

Each has the :class:`Engine` protocol: ``model`` (what the agent plans with),
``generate``, ``stream`` and ``aclose``. Without ``engine=``, ``Agent.open`` picks one for
its ``model`` argument (:func:`open_engine`). The remote engine and the server share
:mod:`~refrag_agent.engines.wire` (plans as JSON) and :mod:`~refrag_agent.engines.metadata`
(the served model's description); the local engine and the server share
:mod:`~refrag_agent.engines.scheduler` (one decoding thread that batches concurrent calls)
and :mod:`~refrag_agent.engines.batching`. Engines import neither the agent nor the server.
"""

from refrag_agent.engines.local import LocalEngine
from refrag_agent.engines.protocol import Engine
from refrag_agent.engines.remote import API_KEY_ENV, RemoteEngine
from refrag_agent.engines.resolve import (
    BUNDLED_MODEL,
    TINY_MODEL,
    default_model,
    open_engine,
    resolve_model,
)
from refrag_agent.engines.scheduler import BatchLimits
from refrag_agent.engines.scripted import ScriptedEngine
from refrag_agent.engines.vllm import VLLMEngine, completion_request

__all__ = [
    "API_KEY_ENV",
    "BUNDLED_MODEL",
    "TINY_MODEL",
    "BatchLimits",
    "Engine",
    "LocalEngine",
    "RemoteEngine",
    "ScriptedEngine",
    "VLLMEngine",
    "completion_request",
    "default_model",
    "open_engine",
    "resolve_model",
]
