"""``refrag-agent serve``: an OpenAI-compatible server for a REFRAG model (docs/serve.md).

Modules, from the wire inward:

- ``app``: the Starlette routes, SSE; ``RefragServer``.
- ``server``: ``serve()`` in the foreground (uvicorn, slow request heads cut off) and
  ``ServerThread`` for tests.
- ``auth``: API keys and the tenants each may read.
- ``body``: reading the body (size, time) and parsing it as bounded, finite JSON.
- ``requests``: the chat request, the REFRAG extensions and the plan built from them.
- ``limits``: ``ServeLimits``; ``errors``: JSON error answers.

The bounded queue, the decoding thread and the batching (rows prefilled together, merged
into one KV cache, decoded step by step) are the in-process engine's too: they live in
:mod:`refrag_agent.engines.scheduler` and :mod:`refrag_agent.engines.batching`.
What the server shares with its client, :class:`~refrag_agent.engines.RemoteEngine`, lives
in the engines package: :mod:`refrag_agent.engines.wire` (tensors and placement plans as
JSON, decoded without trusting the sender) and :mod:`refrag_agent.engines.metadata` (what
a client needs to plan for the served model).
"""
