"""Held-out evaluation shared by ``bench quality`` and ``bench policies``.

Two measures, both on data no training step saw:

- **text**: log-perplexity (mean negative log-likelihood per token, nats) of the next
  ``target_tokens`` tokens of a held-out standard-library file given the ``context_tokens``
  before them: as tokens (full context), as compressed chunks of k (REFRAG), some chunks
  expanded by a policy, or nothing (``<|bos|>`` only). The loss is the training loss
  (:class:`~refrag_agent.training.stages.RefragLM`), so evaluation and training agree.
- **memory QA**: agent-memory dialogues (facts in turns, tool outputs and documents,
  updated facts, unanswerable questions) laid out as the SDK lays them out; the answer is
  generated greedily and scored by exact match after trimming and case-folding.

Two QA sets (:data:`QaSet`): ``natural``, the held-out generator family of the natural
dialogues (phrasings, names and attributes no training example has) plus the hand-written
conversations, for decoders with a chat template of their own; ``templates``, the templated
task generators the from-scratch tiny model was trained on. Held-out task seeds start at
:data:`QA_SEED_BASE`, above every seed the training stages draw; held-out text comes from
the files the corpus split rule holds out, or from manual pages (:mod:`.manpages`).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
from typing_extensions import assert_never

from refrag_agent.budget import Budget
from refrag_agent.context import ChunkSlot, ContextSegment, draft, policy_input
from refrag_agent.errors import InvalidInput
from refrag_agent.model.assembly import CompressedChunk, ExpandedChunk, PlacementPlan, TokenSpan
from refrag_agent.model.chunker import chunk_ids
from refrag_agent.model.generation import SamplingParams
from refrag_agent.model.refrag import RefragModel
from refrag_agent.timeline import SegmentKind
from refrag_agent.training.data import build_corpus, tokenize_split
from refrag_agent.training.dialogues import load_handwritten, natural_example
from refrag_agent.training.presets import get_preset
from refrag_agent.training.stages import (
    Example,
    RefragLM,
    VectorCache,
    answer_chunks,
    collate,
    layout_task,
    task_size,
)
from refrag_agent.training.tasks import TaskExample, TaskName, make_example

QA_SEED_BASE = 1 << 44  # above the SFT (< 2**40 + ...) and RL (2**32 + ...) seeds
QA_TASKS: tuple[TaskName, ...] = ("memory_qa", "fact_update", "unanswerable")
QA_SIZE = task_size(8)  # the context size the rl stage trains the policy on
TextMode = Literal["none", "full", "compressed"]
QaSet = Literal["natural", "templates"]
ProseSource = Literal["manpages", "stdlib"]
ANSWER_SLACK = 4  # tokens past the longest answer: any longer output cannot match exactly


@dataclass(frozen=True)
class TextWindow:
    """Held-out context tokens and the tokens that follow them."""

    context: tuple[int, ...]
    target: tuple[int, ...]


def model_summary(model: RefragModel, name: str) -> dict[str, Any]:
    """What every quality figure records about the model it measured."""
    params = sum(p.numel() for p in model.decoder.parameters())
    params += sum(p.numel() for p in model.projector.parameters())
    return {"name": name, "params": int(params), "k": model.k}


def heldout_windows(
    model: RefragModel, *, n: int, context_tokens: int, target_tokens: int, seed: int = 0
) -> list[TextWindow]:
    """``n`` windows from the held-out files of the bundled recipe's corpus."""
    corpus = build_corpus(get_preset("tiny").corpus)
    tokens = tokenize_split(corpus.heldout, model.tokenizer)
    span = context_tokens + target_tokens
    rng = np.random.default_rng(seed)
    starts = rng.choice(len(tokens) - span, size=n, replace=False)
    out = []
    for s in sorted(int(x) for x in starts):
        ids = [int(t) for t in tokens[s : s + span]]
        out.append(TextWindow(tuple(ids[:context_tokens]), tuple(ids[context_tokens:])))
    return out


def qa_examples(n: int, *, size: int = QA_SIZE) -> list[TaskExample]:
    """``n`` held-out templated memory questions, the tasks taken in turn."""
    return [
        make_example(QA_TASKS[i % len(QA_TASKS)], QA_SEED_BASE + i, size=size) for i in range(n)
    ]


def natural_heldout(n: int, *, size: int = QA_SIZE) -> list[TaskExample]:
    """``n`` dialogues of the held-out generator family, at seeds no training draws."""
    return [natural_example(QA_SEED_BASE + i, size=size, family="heldout") for i in range(n)]


def default_qa_set(model: RefragModel) -> QaSet:
    """``natural`` for a decoder prompted in ChatML, ``templates`` for the tiny one."""
    return "natural" if model.template.name == "chatml" else "templates"


def default_prose(model: RefragModel) -> ProseSource:
    """Manual pages for a pretrained decoder; the corpus's held-out files for the tiny one."""
    return "manpages" if model.template.name == "chatml" else "stdlib"


def qa_sets(
    qa_set: QaSet, n: int, *, size: int = QA_SIZE, n_handwritten: int | None = None
) -> dict[str, list[TaskExample]]:
    """The held-out questions by part: ``n`` generated, and the hand-written ones (all, or
    ``n_handwritten`` of them spread evenly over the set)."""
    if qa_set == "natural":
        written = load_handwritten()
        if n_handwritten is not None and n_handwritten < len(written):
            step = len(written) / n_handwritten
            written = [written[int(i * step)] for i in range(n_handwritten)]
        return {"generated": natural_heldout(n, size=size), "handwritten": written}
    elif qa_set == "templates":
        return {"templates": qa_examples(n, size=size)}
    else:
        assert_never(qa_set)


def no_context(task: TaskExample) -> TaskExample:
    """The same question with every segment taken away."""
    return TaskExample(task.task, task.seed, (), task.question, task.answer, task.references)


def exact_match(example: TaskExample, output: str) -> bool:
    return output.strip().lower() == example.answer.strip().lower()


class Evaluator:
    """One frozen model's text log-perplexity, policy inputs and greedy answers."""

    def __init__(self, model: RefragModel, *, batch_size: int = 8) -> None:
        self.model = model
        self.batch_size = batch_size
        for part in (model.decoder, model.projector, model.encoder):
            part.requires_grad_(False).eval()
        self.cache = VectorCache(model.encoder)
        self._lm = RefragLM(model.decoder, model.projector, model.encoder)
        # Greedy answers by (task, chunks expanded): policies often pick the same chunks.
        self._answers: dict[tuple[TaskExample, frozenset[int]], str] = {}

    @cached_property
    def bos(self) -> int:
        tok = self.model.tokenizer
        return tok.special_tokens.get(self.model.template.bos, tok.pad_id)

    # ---- text -------------------------------------------------------------------------

    def chunks(self, window: TextWindow, k: int) -> list[tuple[tuple[int, ...], str]]:
        """The context cut into chunks of ``k``: (token ids, text) each."""
        return [(c.token_ids, c.text) for c in chunk_ids(window.context, self.model.tokenizer, k=k)]

    def text_example(
        self,
        window: TextWindow,
        mode: TextMode,
        *,
        k: int = 16,
        expand: Container[int] = (),
    ) -> Example:
        if mode == "none":
            return Example((TokenSpan((self.bos,)),), (), window.target)
        if mode == "full":
            return Example((TokenSpan((self.bos, *window.context)),), (), window.target)
        prefix: list[Any] = [TokenSpan((self.bos,))]
        texts = []
        for i, (ids, text) in enumerate(self.chunks(window, k)):
            prefix.append(
                ExpandedChunk(ids, row=i) if i in expand else CompressedChunk(i, len(ids))
            )
            texts.append(text)
        return Example(tuple(prefix), tuple(texts), window.target)

    @torch.no_grad()
    def log_ppl(self, examples: Sequence[Example]) -> float:
        """Mean negative log-likelihood per target token over ``examples`` (nats)."""
        total, count = 0.0, 0
        for i in range(0, len(examples), self.batch_size):
            batch = collate(
                examples[i : i + self.batch_size], cache=self.cache, encoder=self.model.encoder
            )
            total += float(self._lm(batch)) * batch.n_targets
            count += batch.n_targets
        return total / max(1, count)

    @torch.no_grad()
    def chunk_perplexity(self, example: Example) -> torch.Tensor:
        """``(n_chunks,)`` mean token NLL of each chunk of a fully expanded ``example``
        given everything before it: the paper's perplexity-baseline score. It costs one
        decoder forward pass over the uncompressed context, the prefill REFRAG avoids."""
        ids: list[int] = []
        spans: dict[int, tuple[int, int]] = {}
        for p in example.prefix:
            if isinstance(p, CompressedChunk):
                raise InvalidInput("chunk perplexity needs every chunk expanded", row=p.row)
            if isinstance(p, ExpandedChunk):
                spans[p.row] = (len(ids), len(ids) + len(p.token_ids))
            ids.extend(p.token_ids)
        x = torch.tensor([ids])
        logits = self.model.decoder(input_ids=x).logits[0].float()  # (T, V)
        # Token t is predicted at column t - 1; a chunk at the very start has no first guess.
        nll = torch.nn.functional.cross_entropy(logits[:-1], x[0, 1:], reduction="none")
        out = [nll[max(0, a - 1) : b - 1].mean() for a, b in (spans[i] for i in sorted(spans))]
        return torch.stack(out)

    def text_policy_input(self, window: TextWindow, k: int) -> Any:
        """The text task as a policy sees it; the query is the last chunk (what comes next
        follows from it), as there is no question."""
        chunks = self.chunks(window, k)
        vectors = self.cache([text for _, text in chunks])
        slots = tuple(ChunkSlot(ids, len(ids), j, text) for j, (ids, text) in enumerate(chunks))
        document = ContextSegment("text", SegmentKind.DOCUMENT, "document", 0, slots)
        d = draft([document], template=self.model.template, tokenizer=self.model.tokenizer)
        return policy_input(d, vectors, vectors[-1])

    # ---- memory QA --------------------------------------------------------------------

    def qa_layout(self, task: TaskExample, expand: Container[int]) -> tuple[Example, Any]:
        """The task laid out with ``expand``, and its :class:`PolicyInput`."""
        example, d = layout_task(
            task, self.model.tokenizer, k=self.model.k, template=self.model.template, expand=expand
        )
        vectors = self.cache(list(example.chunk_texts))
        query = self.cache([task.question])[0]
        return example, policy_input(d, vectors, query)

    def oracle_chunks(self, task: TaskExample) -> set[int]:
        return answer_chunks(task, self.model.tokenizer, k=self.model.k)

    def exact_match_rate(self, tasks: Sequence[TaskExample], expansions: Sequence[Any]) -> float:
        """Share of ``tasks`` answered exactly, each laid out with its expansion."""
        hits = self.exact_matches(tasks, expansions)
        return round(sum(hits) / len(hits), 4)

    def exact_matches(self, tasks: Sequence[TaskExample], expansions: Sequence[Any]) -> list[bool]:
        """Whether each task is answered exactly, laid out with its expansion."""
        outputs = self.task_answers(tasks, expansions)
        return [exact_match(t, a) for t, a in zip(tasks, outputs, strict=True)]

    def task_answers(self, tasks: Sequence[TaskExample], expansions: Sequence[Any]) -> list[str]:
        """Greedy answers to ``tasks``, each laid out with its expansion; an answer already
        generated for the same task and chunks is reused."""
        keys, todo = [], {}
        for task, expand in zip(tasks, expansions, strict=True):
            example, inputs = self.qa_layout(task, expand)
            key = (task, frozenset(i for i in range(inputs.n_chunks) if i in expand))
            keys.append(key)
            if key not in self._answers:
                todo[key] = example
        if todo:
            tok = self.model.tokenizer
            marker = len(tok.encode(self.model.template.tool_call, allow_special=True))
            longest = max(len(tok.encode(t.answer)) + marker * t.calls_tool for t, _ in todo)
            outputs = self.answers(list(todo.values()), max_new_tokens=longest + ANSWER_SLACK)
            self._answers.update(zip(todo, outputs, strict=True))
        return [self._answers[k] for k in keys]

    @torch.no_grad()
    def answers(self, examples: Sequence[Example], *, max_new_tokens: int = 24) -> list[str]:
        """Greedy answers, generated in batches; each stops at the template's answer end."""
        params = SamplingParams(max_new_tokens=max_new_tokens, stop=self.model.template.stop)
        out: list[str] = []
        for i in range(0, len(examples), self.batch_size):
            plans = []
            for ex in examples[i : i + self.batch_size]:
                vectors = self.cache(list(ex.chunk_texts)) if ex.chunk_texts else None
                plans.append(PlacementPlan(ex.prefix, vectors))
            out.extend(g.text for g in self.model.generate(plans, params))
        return out


def select(policy: Any, inputs: Any, p: float) -> set[int]:
    """The chunks ``policy`` expands under ``Budget(p=p)``."""
    if p <= 0:
        return set()
    return set(policy.select(inputs, Budget(p=p)).chosen)
