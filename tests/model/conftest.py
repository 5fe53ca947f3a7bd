from __future__ import annotations

from typing import Any

import pytest

from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import FAMILIES, random_decoder
from refrag_agent.model.tokenizer import TiktokenTokenizer

LONG_TEXT = (
    "My locker code is 4821. The meeting moved to Thursday at noon, room 12B. "
    "Order 7731 shipped on Monday; the tracking number is ZX-991-AQ. "
    "Remember that the wifi password is hunter2 and the printer is on floor three."
)


@pytest.fixture(scope="session")
def models(byte_tokenizer: TiktokenTokenizer, minilm: ChunkEncoder) -> dict[str, RefragModel]:
    """One tiny random REFRAG model per decoder family, sharing the real MiniLM encoder."""
    out = {}
    for i, family in enumerate(FAMILIES):
        decoder = random_decoder(family, vocab_size=byte_tokenizer.vocab_size, seed=i)
        out[family] = RefragModel.create(
            tokenizer=byte_tokenizer, decoder=decoder, encoder=minilm, k=16, seed=i
        )
    return out


@pytest.fixture(scope="session")
def llama(models: dict[str, RefragModel]) -> RefragModel:
    return models["llama"]


def family_params() -> Any:
    return pytest.mark.parametrize("family", FAMILIES)
