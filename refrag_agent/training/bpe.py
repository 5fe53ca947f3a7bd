"""A small byte-level BPE trainer; the result runs through tiktoken.

Training follows the classic recipe: pre-tokenize with the same regular expression the
encoder will use (so a merge never crosses a word boundary tiktoken would not cross),
start from the 256 bytes, and repeatedly merge the most frequent adjacent pair. Pair
counts are kept incrementally with a lazy max-heap, so each merge only touches the words
that hold the pair: a few thousand merges over a few MB of text take seconds, not hours.

The merge order becomes tiktoken's ranks (byte ``i`` has rank ``i``, merge ``j`` has rank
``256 + j``); tiktoken merges by lowest rank, which replays training's order.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise

import regex

from refrag_agent.errors import InvalidInput
from refrag_agent.model.tokenizer import PRETOKENIZE_PATTERN, TiktokenTokenizer

Pair = tuple[int, int]


def train_bpe(
    texts: Iterable[str],
    *,
    n_merges: int,
    min_frequency: int = 2,
    pat_str: str = PRETOKENIZE_PATTERN,
) -> dict[bytes, int]:
    """Learn up to ``n_merges`` merges; returns tiktoken mergeable ranks (bytes -> rank)."""
    if n_merges < 0:
        raise InvalidInput("n_merges must be >= 0", n_merges=n_merges)
    pattern = regex.compile(pat_str)
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(pattern.findall(text))

    vocab: list[bytes] = [bytes([i]) for i in range(256)]
    ids_of: dict[bytes, int] = {b: i for i, b in enumerate(vocab)}
    words: list[list[int]] = [list(w.encode("utf-8")) for w in counts]
    freqs: list[int] = list(counts.values())

    pair_counts: Counter[Pair] = Counter()
    where: dict[Pair, set[int]] = {}
    for w, (symbols, f) in enumerate(zip(words, freqs, strict=True)):
        for pair in pairwise(symbols):
            pair_counts[pair] += f
            where.setdefault(pair, set()).add(w)
    # Max-heap via negated counts; ties broken by the pair's ids so training is deterministic.
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)

    ranks_order: list[bytes] = []
    while len(ranks_order) < n_merges and heap:
        neg, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg:
            continue  # stale entry: the count changed since it was pushed
        if -neg < min_frequency:
            break
        merged = vocab[pair[0]] + vocab[pair[1]]
        new_id = ids_of.get(merged)
        if new_id is None:
            new_id = len(vocab)
            vocab.append(merged)
            ids_of[merged] = new_id
            ranks_order.append(merged)
        touched: set[Pair] = set()
        for w in where.pop(pair, set()):
            symbols, f = words[w], freqs[w]
            if len(symbols) < 2:
                continue
            for old in pairwise(symbols):
                pair_counts[old] -= f
                touched.add(old)
            out: list[int] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            words[w] = out
            for new in pairwise(out):
                pair_counts[new] += f
                where.setdefault(new, set()).add(w)
                touched.add(new)
        pair_counts.pop(pair, None)
        for p in touched:
            c = pair_counts.get(p, 0)
            if c > 0 and p != pair:
                heapq.heappush(heap, (-c, p))
            elif c <= 0:
                pair_counts.pop(p, None)

    ranks = {bytes([i]): i for i in range(256)}
    for j, token in enumerate(ranks_order):
        ranks[token] = 256 + j
    return ranks


def train_tokenizer(
    texts: Iterable[str], *, n_merges: int, name: str = "refrag-bpe", min_frequency: int = 2
) -> TiktokenTokenizer:
    """Train a BPE vocabulary and wrap it as a tiktoken tokenizer with the chat specials."""
    ranks = train_bpe(texts, n_merges=n_merges, min_frequency=min_frequency)
    return TiktokenTokenizer.from_ranks(ranks, name=f"{name}-{len(ranks)}")
