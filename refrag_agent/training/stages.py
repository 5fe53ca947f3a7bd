"""What each stage trains on and what it learns; the loop in :mod:`.loop` is shared.

Every stage turns its data into :class:`Example`: a prefix the decoder reads (token spans,
compressed chunks, expanded chunks, in any order) and a target sequence it must continue
with. The loss is next-token cross-entropy on the target only, teacher-forced, so
reconstruction is autoregressive (REFRAG section 3: the decoder *generates* the chunk's
tokens from its embedding, never copies one vector per position).

==============  ======================================  =========================================
stage           prefix                                  target
==============  ======================================  =========================================
pretrain        ``<|bos|>``                             ``seq_len`` corpus tokens
reconstruct     n compressed chunks (k tokens each)     the n*k tokens those chunks stand for
cpt             n compressed chunks of a passage        the next ``target_tokens`` tokens
sft             segments, chunks compressed (a few      the answer, then ``<|end|>``
                expanded), the question
==============  ======================================  =========================================

Which parts train is set per stage (decoder frozen in reconstruction, as in the paper).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Container, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from refrag_agent.context import ChunkSlot, ContextSegment, Draft, draft, place
from refrag_agent.model.adapter import is_adapted
from refrag_agent.model.assembly import (
    CompressedChunk,
    Placement,
    PlacementPlan,
    TokenSpan,
    assemble,
)
from refrag_agent.model.chunker import chunk_ids
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tokenizer import Tokenizer
from refrag_agent.template import ChatTemplate
from refrag_agent.timeline import SegmentKind
from refrag_agent.tools import tools_preamble
from refrag_agent.training.data import Split
from refrag_agent.training.dialogues import natural_example
from refrag_agent.training.presets import SftTasks, StageConfig, StageName
from refrag_agent.training.tasks import Segment, TaskExample, mixed_example
from refrag_agent.training.tool_dialogues import offered_tools, tool_example

IGNORE = -100
EVERY_CHUNK = range(sys.maxsize)  # an ``expand`` that holds every chunk index


@dataclass(frozen=True)
class Example:
    """A prefix to read and a target to predict; compressed rows index ``chunk_texts``."""

    prefix: tuple[Placement, ...]
    chunk_texts: tuple[str, ...]
    target: tuple[int, ...]


@dataclass(frozen=True)
class TrainBatch:
    """Examples collated for :class:`RefragLM`; every row ends at the last column."""

    placements: tuple[tuple[Placement, ...], ...]  # compressed rows index the batch's chunks
    chunk_vectors: torch.Tensor | None  # (n_chunks, enc_dim): frozen encoder outputs
    chunk_input_ids: torch.Tensor | None  # (n_chunks, L): encoder inputs when it trains
    chunk_attention_mask: torch.Tensor | None  # (n_chunks, L)
    labels: torch.Tensor  # (B, T): the id each column must predict, IGNORE elsewhere

    @property
    def n_targets(self) -> int:
        return int((self.labels != IGNORE).sum())

    def to(self, device: torch.device) -> TrainBatch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return replace(
            self,
            chunk_vectors=move(self.chunk_vectors),
            chunk_input_ids=move(self.chunk_input_ids),
            chunk_attention_mask=move(self.chunk_attention_mask),
            labels=self.labels.to(device),
        )


class RefragLM(nn.Module):
    """Encoder, projector and decoder as one module, so DDP/FSDP wrap and sync all of them."""

    def __init__(self, decoder: nn.Module, projector: nn.Module, encoder: ChunkEncoder) -> None:
        super().__init__()
        self.decoder = decoder
        self.projector = projector
        self.encoder = encoder

    def forward(self, batch: TrainBatch) -> torch.Tensor:
        """Mean cross-entropy over the batch's target tokens."""
        vectors = batch.chunk_vectors
        if batch.chunk_input_ids is not None:
            assert batch.chunk_attention_mask is not None
            vectors = self.encoder(batch.chunk_input_ids, batch.chunk_attention_mask)  # (n, enc)
        # Rows are global to the batch, so every plan shares the one chunk table.
        plans = [
            PlacementPlan(p, vectors if any(isinstance(x, CompressedChunk) for x in p) else None)
            for p in batch.placements
        ]
        embed = self.decoder.get_input_embeddings()  # type: ignore[operator]
        assembled = assemble(plans, embed, self.projector)
        # Rows end at the last column, so every target sits in the last ``keep`` columns:
        # logits over the vocabulary are computed there only (most of a prompt predicts
        # nothing, and the output layer is a large share of a small decoder's work).
        labelled = (batch.labels != IGNORE).any(0).nonzero()
        keep = batch.labels.shape[1] - int(labelled[0]) if len(labelled) else 1
        labels = batch.labels[:, -keep:]
        logits = self.decoder(
            inputs_embeds=assembled.inputs_embeds,
            attention_mask=assembled.attention_mask,
            position_ids=assembled.position_ids,
            logits_to_keep=keep,
        ).logits  # (B, keep, V)
        assert logits.shape[:2] == labels.shape
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)


class VectorCache:
    """Frozen-encoder outputs by chunk text; a bounded LRU (corpus epochs hit it)."""

    def __init__(self, encoder: ChunkEncoder, max_entries: int = 50_000) -> None:
        self.encoder = encoder
        self.max_entries = max_entries
        self._store: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(t for t in texts if t not in self._store))
        if missing:
            for text, vec in zip(missing, self.encoder.encode(missing), strict=True):
                self._store[text] = vec
        for t in texts:
            self._store.move_to_end(t)
        while len(self._store) > self.max_entries:
            self._store.popitem(last=False)
        if not texts:
            return torch.empty(0, self.encoder.dim)
        return torch.stack([self._store[t] for t in texts])  # (n, enc_dim)


def set_trainable(model: RefragModel, config: StageConfig) -> list[nn.Parameter]:
    """Freeze what the stage does not train; returns the trainable parameters."""
    parts = (
        (model.decoder, config.train_decoder),
        (model.projector, config.train_projector),
        (model.encoder, config.train_encoder),
    )
    params: list[nn.Parameter] = []
    for module, train in parts:
        module.requires_grad_(train)
        module.train(train)
        if train and is_adapted(module):
            # A decoder with a LoRA adapter trains the adapter only; the base stays frozen.
            for name, p in module.named_parameters():
                p.requires_grad_("lora_" in name)
        if train:
            params.extend(p for p in module.parameters() if p.requires_grad)
    return params


def collate(
    examples: Sequence[Example],
    *,
    cache: VectorCache | None,
    encoder: ChunkEncoder,
) -> TrainBatch:
    """Offset chunk rows, left-pad to one width and place labels at the predicting columns."""
    placements: list[tuple[Placement, ...]] = []
    texts: list[str] = []
    for ex in examples:
        off = len(texts)
        prefix = tuple(
            CompressedChunk(p.row + off, p.n_tokens) if isinstance(p, CompressedChunk) else p
            for p in ex.prefix
        )
        placements.append((*prefix, TokenSpan(ex.target)))
        texts.extend(ex.chunk_texts)
    lengths = [
        sum(1 if isinstance(p, CompressedChunk) else len(p.token_ids) for p in row)
        for row in placements
    ]
    width = max(lengths)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for b, ex in enumerate(examples):
        m = len(ex.target)
        # Left padding puts every target at the end; column c predicts column c + 1.
        labels[b, width - m - 1 : width - 1] = torch.tensor(ex.target)
    vectors = ids = mask = None
    if texts and cache is not None:
        vectors = cache(texts)
    elif texts:
        enc = encoder.tokenize(texts)
        ids, mask = enc["input_ids"], enc["attention_mask"]
    return TrainBatch(tuple(placements), vectors, ids, mask, labels)


# ---- examples per stage --------------------------------------------------------------


def _window(tokens: np.ndarray, rng: np.random.Generator, length: int) -> list[int]:
    start = int(rng.integers(0, max(1, len(tokens) - length)))
    return [int(t) for t in tokens[start : start + length]]


def _compressed(ids: list[int], tokenizer: Tokenizer, k: int) -> tuple[list[Placement], list[str]]:
    chunks = chunk_ids(ids, tokenizer, k=k)
    return [CompressedChunk(i, c.n_tokens) for i, c in enumerate(chunks)], [c.text for c in chunks]


def pretrain_example(
    tokens: np.ndarray, rng: np.random.Generator, *, seq_len: int, bos: int
) -> Example:
    return Example((TokenSpan((bos,)),), (), tuple(_window(tokens, rng, seq_len)))


def reconstruct_example(
    tokens: np.ndarray, rng: np.random.Generator, *, n_chunks: int, k: int, tokenizer: Tokenizer
) -> Example:
    ids = _window(tokens, rng, n_chunks * k)
    prefix, texts = _compressed(ids, tokenizer, k)
    return Example(tuple(prefix), tuple(texts), tuple(ids))


def cpt_example(
    tokens: np.ndarray,
    rng: np.random.Generator,
    *,
    n_chunks: int,
    k: int,
    target_tokens: int,
    tokenizer: Tokenizer,
) -> Example:
    ids = _window(tokens, rng, n_chunks * k + target_tokens)
    prefix, texts = _compressed(ids[: n_chunks * k], tokenizer, k)
    return Example(tuple(prefix), tuple(texts), tuple(ids[n_chunks * k :]))


def answer_chunks(example: TaskExample, tokenizer: Tokenizer, *, k: int) -> set[int]:
    """Chunks (counted over the whole context) whose text overlaps a reference answer.

    What an oracle expands; empty where the answer is not in the context (unanswerable
    questions, tool calls).
    """
    out: set[int] = set()
    first = 0
    for seg in example.segments:
        chunks = chunk_ids(tokenizer.encode(seg.text), tokenizer, k=k)
        spans, at = [], 0
        for c in chunks:
            spans.append((at, at + len(c.text)))
            at += len(c.text)
        for ref in example.references:
            start = seg.text.find(ref)
            while start >= 0:
                end = start + len(ref)
                out.update(first + i for i, (a, b) in enumerate(spans) if a < end and start < b)
                start = seg.text.find(ref, end)
        first += len(chunks)
    return out


def task_segments(
    segments: Sequence[Segment],
    tokenizer: Tokenizer,
    *,
    k: int,
    first: int = 0,
    pinned: bool = False,
) -> list[ContextSegment]:
    """A task's segments as the context builder takes them; ``seq`` is their order,
    counted from ``first``; ``pinned`` ones always go in as tokens."""
    out = []
    for j, seg in enumerate(segments, start=first):
        chunks = chunk_ids(tokenizer.encode(seg.text), tokenizer, k=k)
        slots = tuple(ChunkSlot(c.token_ids, c.n_tokens, c.index, c.text) for c in chunks)
        kind = SegmentKind(seg.kind)
        out.append(ContextSegment(f"s{j}", kind, seg.kind, j, slots, pinned=pinned))
    return out


def layout_task(
    example: TaskExample,
    tokenizer: Tokenizer,
    *,
    k: int,
    template: ChatTemplate,
    expand: Container[int] | None = None,
    rng: np.random.Generator | None = None,
    expand_p: float = 0.0,
) -> tuple[Example, Draft]:
    """Lay a task out with the SDK's context builder, then the question (and after it,
    the task's ``exchange``).

    Chunk ``i`` (counted over the whole context) goes in as tokens when it is in
    ``expand``, or with probability ``expand_p``; otherwise compressed. Returns the
    example and its draft (whose :func:`chunk_features` the policy reads).
    """
    segments = task_segments(example.segments, tokenizer, k=k)
    suffix = template.question(example.question)
    if example.exchange:
        # The tool loop's later steps: the question, then this call's own tool calls and
        # outputs, all as tokens in the order they were written, as the SDK lays them out.
        later = (Segment("user", example.question), *example.exchange)
        segments += task_segments(later, tokenizer, k=k, first=len(segments), pinned=True)
        suffix = template.generation_prompt
    d = draft(
        segments,
        template=template,
        tokenizer=tokenizer,
        prefix=tools_preamble(offered_tools(example.tools), template),
        suffix=suffix,
    )
    chosen = {
        i
        for i in range(len(d.chunks))
        if (expand is not None and i in expand)
        or (rng is not None and expand_p > 0 and rng.random() < expand_p)
    }
    texts = tuple(c.text for c in d.chunks)
    answer = f"{template.tool_call}{example.answer}" if example.calls_tool else example.answer
    target = tokenizer.encode(template.answer(answer), allow_special=True)
    return Example(place(d, chosen).placements, texts, tuple(target)), d


def sft_expansion(
    task: TaskExample, tokenizer: Tokenizer, rng: np.random.Generator, config: StageConfig, k: int
) -> Container[int] | None:
    """What an SFT example expands on top of the random ``expand_p``: everything (``full_p``),
    the answer's chunks (``oracle_p``), or nothing; so the decoder learns to read the
    answer from expanded tokens amid compressed chunks, as it will under a policy."""
    u = rng.random()
    if u < config.full_p:
        return EVERY_CHUNK
    if u < config.full_p + config.oracle_p:
        return answer_chunks(task, tokenizer, k=k)
    return None


def task_size(n_chunks: int) -> int:
    """Context size knob of the task generators for about ``n_chunks`` chunks of 16."""
    return max(1, 3 * n_chunks)


def stage_examples(
    stage: StageName,
    config: StageConfig,
    *,
    tokens: np.ndarray,
    tokenizer: Tokenizer,
    k: int,
    seed: int,
    step: int,
    rank: int,
    split: Split,
    template: ChatTemplate,
    sft_tasks: SftTasks = "templates",
    n_chunks: int | None = None,
) -> list[Example]:
    """The examples of one (step, process): a pure function of its arguments (resumable).

    ``n_chunks`` overrides the curriculum's chunk count for the step (held-out evaluation).
    SFT draws its tasks from the templated generators or the natural dialogues
    (``sft_tasks``), and with ``config.recon_p`` a reconstruction example instead, so the
    decoder keeps reading what chunks hold while it learns to answer.
    """
    stage_id = ("pretrain", "reconstruct", "cpt", "sft", "rl").index(stage)
    rng = np.random.default_rng([seed, stage_id, step, rank, split == "heldout"])
    n = config.n_chunks(step) if n_chunks is None else n_chunks
    out = []
    for j in range(config.batch_size):
        if stage == "pretrain":
            bos = tokenizer.special_tokens.get(template.bos, tokenizer.pad_id)
            out.append(pretrain_example(tokens, rng, seq_len=config.seq_len, bos=bos))
        elif stage == "reconstruct" or (stage == "sft" and rng.random() < config.recon_p):
            m = n if stage == "reconstruct" else 1
            out.append(reconstruct_example(tokens, rng, n_chunks=m, k=k, tokenizer=tokenizer))
        elif stage == "cpt":
            out.append(
                cpt_example(
                    tokens,
                    rng,
                    n_chunks=n,
                    k=k,
                    target_tokens=config.target_tokens,
                    tokenizer=tokenizer,
                )
            )
        else:
            # Held-out tasks use seeds no training step reaches.
            base = (1 << 40) if split == "heldout" else 0
            seed_j = base + (step * 1_000 + rank) * config.batch_size + j
            if sft_tasks == "natural" and config.tools_p > 0 and rng.random() < config.tools_p:
                task = tool_example(seed_j, size=task_size(n))
            elif sft_tasks == "natural":
                task = natural_example(seed_j, size=task_size(n))
            else:
                task = mixed_example(seed_j, size=task_size(n))
            expand = sft_expansion(task, tokenizer, rng, config, k)
            ex, _ = layout_task(
                task,
                tokenizer,
                k=k,
                template=template,
                expand=expand,
                rng=rng,
                expand_p=config.expand_p,
            )
            out.append(ex)
    return out
