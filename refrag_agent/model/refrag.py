"""RefragModel: tokenizer, chunk encoder, projector and decoder working as one."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from refrag_agent.errors import InvalidInput
from refrag_agent.model.assembly import (
    AssembledBatch,
    CompressedChunk,
    ExpandedChunk,
    Placement,
    PlacementPlan,
    TokenSpan,
    assemble,
)
from refrag_agent.model.checkpoint import (
    CheckpointParts,
    PolicyLoader,
    PolicySaver,
    read_checkpoint,
    write_checkpoint,
)
from refrag_agent.model.chunker import chunk_text
from refrag_agent.model.config import EncoderConfig, ProjectorConfig, RefragConfig
from refrag_agent.model.decoder import DecoderShape, check_decoder
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.generation import (
    Generation,
    SamplingParams,
    TokenEvent,
    iter_generate,
    iterate_in_thread,
)
from refrag_agent.model.projector import Projector
from refrag_agent.model.quiet import quiet_transformers
from refrag_agent.model.tokenizer import Tokenizer
from refrag_agent.template import ChatTemplate, template_named
from refrag_agent.timeline import Chunk


class RefragModel:
    """The four parts of REFRAG and the operations that need more than one of them.

    Build one with :meth:`create` (new projector) or :meth:`load` (a checkpoint directory).
    ``policy`` is the learned expansion policy, when one was trained: the model carries it
    in and out of checkpoints without knowing its class (``refrag_agent.policies``).
    """

    def __init__(
        self,
        *,
        config: RefragConfig,
        tokenizer: Tokenizer,
        decoder: Any,
        projector: Projector,
        encoder: ChunkEncoder,
        policy: nn.Module | None = None,
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.decoder = check_decoder(decoder)
        self.projector = projector
        self.encoder = encoder
        self.shape = DecoderShape.of(decoder)
        self.policy = policy

    @classmethod
    def create(
        cls,
        *,
        tokenizer: Tokenizer,
        decoder: Any,
        encoder: ChunkEncoder | None = None,
        k: int = 16,
        seed: int = 0,
        template: str = "refrag",
        base: str = "",
        projector_hidden: int = 0,
    ) -> RefragModel:
        """Assemble a model with a freshly initialised projector (to be trained).

        ``template`` names the decoder's chat template; ``base`` the known pretrained
        decoder it is (``model/base_decoder.py``), when it is one; ``projector_hidden`` the
        projector's inner width (0: the decoder's hidden size).
        """
        if encoder is None:
            with quiet_transformers():
                encoder = ChunkEncoder.load(EncoderConfig())
        shape = DecoderShape.of(check_decoder(decoder))
        if tokenizer.vocab_size > shape.vocab_size:
            raise InvalidInput(
                "the tokenizer has more ids than the decoder's vocabulary",
                tokenizer=tokenizer.vocab_size,
                decoder=shape.vocab_size,
            )
        torch.manual_seed(seed)
        projector = Projector(
            ProjectorConfig(
                in_dim=encoder.dim, out_dim=shape.hidden_size, hidden_dim=projector_hidden
            )
        )
        config = RefragConfig(
            projector=projector.config, encoder=encoder.config, k=k, template=template, base=base
        )
        return cls(
            config=config,
            tokenizer=tokenizer,
            decoder=decoder,
            projector=projector,
            encoder=encoder,
        )

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        encoder: ChunkEncoder | None = None,
        decoder: Any = None,
        dtype: torch.dtype | None = None,
        check_encoder: bool = True,
        load_policy: PolicyLoader | None = None,
        merge_adapter: bool = True,
    ) -> RefragModel:
        """Load a checkpoint directory (see ``checkpoint.read_checkpoint``).

        A checkpoint on a known base decoder merges its adapter into the base unless
        ``merge_adapter=False`` (to train it further).

        Its learned policy comes with it when ``load_policy`` is given
        (``refrag_agent.policies.load_policy``; ``Agent.open`` and ``refrag_agent.engines``
        pass it); without it ``policy`` is None.
        """
        with quiet_transformers():
            parts = read_checkpoint(
                directory,
                encoder=encoder,
                decoder=decoder,
                dtype=dtype,
                check_encoder=check_encoder,
                load_policy=load_policy,
                merge_adapter=merge_adapter,
            )
        return cls(
            config=parts.config,
            tokenizer=parts.tokenizer,
            decoder=parts.decoder,
            projector=parts.projector,
            encoder=parts.encoder,
            policy=parts.policy,
        )

    def save(
        self,
        directory: str | Path,
        *,
        save_decoder: bool = True,
        save_policy: PolicySaver | None = None,
    ) -> Path:
        """Write a checkpoint directory; returns its path.

        A model with a policy needs ``save_policy`` (``refrag_agent.policies.save_policy``).
        """
        parts = CheckpointParts(
            config=self.config,
            tokenizer=self.tokenizer,
            decoder=self.decoder,
            projector=self.projector,
            encoder=self.encoder,
            policy=self.policy,
        )
        self.config = write_checkpoint(
            parts, directory, save_decoder=save_decoder, save_policy=save_policy
        )
        return Path(directory)

    @property
    def k(self) -> int:
        return self.config.k

    @property
    def template(self) -> ChatTemplate:
        """The chat template this model's prompts are framed in (its decoder's own)."""
        return template_named(self.config.template)

    def chunk(self, text: str) -> list[Chunk]:
        """One segment's text -> chunks of ``k`` decoder tokens."""
        return chunk_text(text, self.tokenizer, k=self.k)

    def encode(self, chunks: Sequence[Chunk] | Sequence[str]) -> torch.Tensor:
        """Encoder vectors (n, encoder_dim) for chunks or their texts."""
        texts = [c if isinstance(c, str) else c.text for c in chunks]
        return self.encoder.encode(texts)

    def plan(
        self,
        parts: Iterable[str | tuple[Sequence[Chunk], torch.Tensor, set[int]]],
    ) -> PlacementPlan:
        """A plan from parts in order: text (kept as tokens) or (chunks, embeddings, expand).

        For a chunk group, chunk ``i`` goes in as its tokens when ``i`` is in ``expand``
        and as one compressed position otherwise.
        """
        placements: list[Placement] = []
        blocks: list[torch.Tensor] = []
        offset = 0
        for part in parts:
            if isinstance(part, str):
                placements.append(TokenSpan(tuple(self.tokenizer.encode(part, allow_special=True))))
                continue
            chunks, embeddings, expand = part
            if embeddings.shape[0] != len(chunks):
                raise InvalidInput(
                    "one embedding per chunk is needed",
                    chunks=len(chunks),
                    embeddings=int(embeddings.shape[0]),
                )
            for i, c in enumerate(chunks):
                if i in expand:
                    placements.append(ExpandedChunk(c.token_ids, row=offset + i))
                else:
                    placements.append(CompressedChunk(offset + i, n_tokens=c.n_tokens))
            blocks.append(embeddings)
            offset += len(chunks)
        table = torch.cat(blocks) if blocks else None  # (n_chunks, encoder_dim)
        return PlacementPlan(tuple(placements), table)

    def assemble(self, plans: Sequence[PlacementPlan]) -> AssembledBatch:
        return assemble(plans, self.decoder.get_input_embeddings(), self.projector)

    def check_fits(self, plans: Sequence[PlacementPlan], max_new_tokens: int) -> None:
        limit = self.shape.max_positions
        for plan in plans:
            if limit and plan.n_positions + max_new_tokens > limit:
                raise InvalidInput(
                    "the plan does not fit the decoder's positions",
                    positions=plan.n_positions,
                    max_new_tokens=max_new_tokens,
                    max_positions=limit,
                )

    @torch.inference_mode()
    def logits(self, plans: Sequence[PlacementPlan]) -> torch.Tensor:
        """Logits at every position (B, T, V); for tests and analysis, not for generation."""
        batch = self.assemble(plans)
        out = self.decoder(
            inputs_embeds=batch.inputs_embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
        )
        return out.logits

    def generate(
        self, plans: Sequence[PlacementPlan], params: SamplingParams | None = None
    ) -> list[Generation]:
        """Generate for a batch of plans (blocking); one :class:`Generation` per plan."""
        params = params or SamplingParams()
        started = time.perf_counter()
        self.check_fits(plans, params.max_new_tokens)
        with torch.inference_mode():
            batch = self.assemble(plans)
        results: list[Generation] = []
        for _ in iter_generate(
            self.decoder, self.tokenizer, batch, params, results=results, started=started
        ):
            pass
        return results

    async def stream(
        self, plan: PlacementPlan, params: SamplingParams | None = None
    ) -> AsyncIterator[TokenEvent | Generation]:
        """Stream one plan's tokens without blocking the event loop.

        Yields a :class:`TokenEvent` per visible piece of text, then one final
        :class:`Generation` with the whole text, finish reason and timings. Leaving the
        loop early stops the decoder after its current step.
        """
        params = params or SamplingParams()
        self.check_fits([plan], params.max_new_tokens)
        started = time.perf_counter()

        def run(should_stop: Callable[[], bool]) -> Iterator[TokenEvent | Generation]:
            results: list[Generation] = []
            with torch.inference_mode():
                batch = self.assemble([plan])
            yield from iter_generate(
                self.decoder,
                self.tokenizer,
                batch,
                params,
                results=results,
                started=started,
                should_stop=should_stop,
            )
            yield results[0]

        async for item in iterate_in_thread(run):
            yield item


# The function spellings of the public API (``refrag_agent.load_checkpoint``).
load_checkpoint = RefragModel.load
save_checkpoint = RefragModel.save
