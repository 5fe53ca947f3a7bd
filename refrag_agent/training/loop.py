"""The training loop: one visible loop per stage, on accelerate, resumable.

:func:`run_train` runs a preset's stages in order (or one stage); :func:`train_stage` reads
top to bottom: Accelerator, build, resume, then for each step: examples, forward,
backward, clip, step, log, checkpoint. Every step's data is a pure function of (seed,
stage, step, process), so the data position is the step and a resumed run sees exactly
the batches the uninterrupted one would.

Files under ``out_dir``::

    metrics.jsonl                one line per logged step: stage, step, train/loss, train/lr ...
    summary.json                 per stage: steps, fixed-batch loss before and after, timings
    <stage>/checkpoint/          accelerate state (model, optimizer, scheduler, RNG) + state.json
    <stage>/model/               the stage's model (RefragModel checkpoint)
    <stage>/done.json            the stage's summary, written when it completes
    <stage>/fitted.json          a stage sized by time: its probed seconds per step

``batch_size`` is per process: with N processes the global batch is N times larger, and
each process draws its own examples.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from refrag_agent.errors import InvalidInput
from refrag_agent.logs import get_logger
from refrag_agent.model.config import CONFIG_FILE
from refrag_agent.training.build import (
    MODEL_DIR,
    Prepared,
    build_data,
    describe,
    initial_model,
    load_data,
    save_model,
)
from refrag_agent.training.data import Split
from refrag_agent.training.presets import STAGES, Preset, StageConfig, StageName, get_preset
from refrag_agent.training.rl import train_rl
from refrag_agent.training.stages import (
    RefragLM,
    TrainBatch,
    VectorCache,
    collate,
    set_trainable,
    stage_examples,
)
from refrag_agent.training.timing import chunk_counts, fit_to_seconds

log = get_logger(__name__)

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
DONE_FILE = "done.json"
FIT_FILE = "fitted.json"  # a stage with ``seconds``: the probed step time per chunk count
EVAL_BATCHES = 4  # the fixed held-out set: this many batches at the stage's largest chunk count


def run_train(
    *,
    preset: str,
    stage: str | None,
    resume: bool,
    out_dir: Path,
    max_steps: int | None = None,
    init_from: Path | None = None,
) -> dict[str, Any]:
    """Train a preset's stages (all, or only ``stage``); returns the summary per stage.

    ``resume=True`` skips finished stages and continues an interrupted one from its last
    checkpoint. ``max_steps`` stops each stage early (the schedule keeps its full length,
    so a later ``resume`` continues the same run). ``init_from`` (with ``stage``) starts
    the stage from that model directory (an exported model, e.g. the bundled one) instead
    of the previous stage's model in ``out_dir``: further training of a shipped model.
    """
    config = get_preset(preset)
    if stage is not None and stage not in STAGES:
        raise InvalidInput("unknown stage", stage=stage, known=list(STAGES))
    names = [s.name for s in config.stages]
    if stage is not None:
        if stage not in names:
            raise InvalidInput("this preset has no such stage", preset=preset, stage=stage)
        names = [s for s in names if s == stage]
    if init_from is not None:
        if stage is None:
            raise InvalidInput("init_from needs one stage", fix="pass --stage with --init-from")
        if not (Path(init_from) / CONFIG_FILE).is_file():
            raise InvalidInput(
                "init_from is not a model directory", path=str(init_from), missing=CONFIG_FILE
            )
    return train(
        config,
        stages=names,
        resume=resume,
        out_dir=out_dir,
        max_steps=max_steps,
        init_from=init_from,
    )


def train(
    preset: Preset,
    *,
    stages: list[StageName],
    resume: bool,
    out_dir: Path,
    max_steps: int | None = None,
    progress: bool = True,
    init_from: Path | None = None,
) -> dict[str, Any]:
    """Run ``stages`` of ``preset`` in order; see :func:`run_train`."""
    out_dir = Path(out_dir)
    state = PartialState()
    if state.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        build_data(preset, out_dir)
        (out_dir / "preset.json").write_text(json.dumps(describe(preset), indent=1))
    state.wait_for_everyone()
    data = load_data(out_dir)
    summary: dict[str, Any] = {}
    for name in stages:
        summary[name] = train_stage(
            preset,
            name,
            data,
            out_dir,
            resume=resume,
            max_steps=max_steps,
            progress=progress,
            init_from=init_from,
        )
    if state.is_main_process:
        path = out_dir / SUMMARY_FILE
        previous = json.loads(path.read_text()) if path.is_file() else {}
        path.write_text(json.dumps({**previous, **summary}, indent=1, sort_keys=True))
        for stage_name, stage_summary in summary.items():
            log.info("train.summary", stage=stage_name, **stage_summary)
    return summary


def cosine_with_warmup(total: int, warmup_frac: float, min_frac: float) -> Any:
    """LR multiplier: linear warm-up, then cosine from 1 to ``min_frac`` at ``total``."""
    warmup = max(1, round(total * warmup_frac))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def train_stage(
    preset: Preset,
    name: StageName,
    data: Prepared,
    out_dir: Path,
    *,
    resume: bool,
    max_steps: int | None = None,
    progress: bool = True,
    init_from: Path | None = None,
) -> dict[str, Any]:
    """Train one stage; see the module docstring."""
    stage_dir = out_dir / name
    done = stage_dir / DONE_FILE
    ckpt = stage_dir / CHECKPOINT_DIR
    if done.is_file():
        if resume:
            return dict(json.loads(done.read_text()))
        raise InvalidInput(
            "this stage already finished in out_dir",
            stage=name,
            out_dir=str(out_dir),
            fix="pass resume=True (--resume) to skip it, or use a new out_dir",
        )
    if (ckpt / STATE_FILE).is_file() and not resume:
        raise InvalidInput(
            "out_dir holds an interrupted run of this stage",
            stage=name,
            out_dir=str(out_dir),
            fix="pass resume=True (--resume) to continue it, or use a new out_dir",
        )
    config = preset.stage(name)
    accelerator = Accelerator(mixed_precision=config.mixed_precision or preset.mixed_precision)
    model = initial_model(preset, name, out_dir, data.tokenizer, init_from=init_from)
    if name == "rl":
        rl_result = train_rl(
            preset, config, model, stage_dir, accelerator, resume=resume, max_steps=max_steps
        )
        if accelerator.is_main_process and rl_result["steps"] >= config.total_steps:
            done.write_text(json.dumps(rl_result, indent=1))
        return rl_result

    # Build: which parts train, the module DDP/FSDP wraps, AdamW + cosine with warm-up.
    params = set_trainable(model, config)
    if not params:
        raise InvalidInput("the stage trains nothing: check its train_* flags", stage=name)
    module = RefragLM(model.decoder, model.projector, model.encoder)
    # Weight decay on matrices only (biases and norm gains are left alone).
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))
    module, optimizer = accelerator.prepare(module, optimizer)
    cache = None if config.train_encoder else VectorCache(model.encoder)

    def batch_at(step: int, split: Split, n_chunks: int | None = None) -> TrainBatch:
        examples = stage_examples(
            name,
            config,
            tokens=data.train if split == "train" else data.heldout,
            tokenizer=data.tokenizer,
            k=preset.k,
            seed=preset.seed,
            step=step,
            rank=accelerator.process_index if split == "train" else 0,
            split=split,
            template=model.template,
            sft_tasks=preset.sft_tasks,
            n_chunks=n_chunks,
        )
        return collate(examples, cache=cache, encoder=model.encoder).to(accelerator.device)

    def fixed_loss() -> float:
        # Every process evaluates (through the wrapper, as DDP/FSDP forwards are collective).
        with torch.no_grad():
            losses = [
                float(module(batch_at(i, "heldout", config.max_chunks)))
                for i in range(EVAL_BATCHES)
            ]
            return sum(losses) / len(losses)

    def probe(n_chunks: int) -> float:
        # One step's forward and backward at n_chunks, weights untouched; the second of two
        # runs is timed (the first warms kernels and allocations up).
        seconds = 0.0
        for _ in range(2):
            t0 = time.perf_counter()
            accelerator.backward(module(batch_at(0, "train", n_chunks)))
            if accelerator.device.type == "cuda":
                torch.cuda.synchronize(accelerator.device)
            seconds = time.perf_counter() - t0
            optimizer.zero_grad(set_to_none=True)
        return seconds

    if config.seconds is not None:
        config = _fitted(config, stage_dir, accelerator, resume=resume, probe=probe)
    total = config.total_steps
    scheduler = LambdaLR(
        optimizer, cosine_with_warmup(total, config.warmup_frac, config.min_lr_frac)
    )
    # Not prepared: accelerate would step it once per process per step.
    accelerator.register_for_checkpointing(scheduler)

    start, before = 0, None
    if resume and (ckpt / STATE_FILE).is_file():
        accelerator.load_state(str(ckpt))
        saved = json.loads((ckpt / STATE_FILE).read_text())
        start, before = int(saved["step"]), saved.get("fixed_loss_before")
        _truncate_metrics(out_dir / METRICS_FILE, name, start)
        log.info("train.resume", stage=name, step=start)
    if before is None:
        before = fixed_loss()
    stop = total if max_steps is None else min(total, start + max_steps)

    bar = tqdm(
        range(start, stop),
        initial=start,
        total=total,
        desc=name,
        disable=not (progress and accelerator.is_main_process),
    )
    started, cpu_started, losses, skipped = time.perf_counter(), time.process_time(), [], 0
    for step in bar:
        t0, c0 = time.perf_counter(), time.process_time()
        batch = batch_at(step, "train")
        loss = module(batch)
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm)
        if math.isfinite(float(grad_norm)):
            optimizer.step()
        else:
            # One overflowing batch (bf16) must not turn every weight into NaN: the step is
            # skipped (the norm is global, so every process skips it) and the schedule goes on.
            skipped += 1
            log.warning("train.skipped_step", stage=name, step=step, grad_norm=float(grad_norm))
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        # The mean over processes: what the optimizer step actually followed.
        loss_value = float(accelerator.reduce(loss.detach(), reduction="mean"))
        losses.append(loss_value)
        bar.set_postfix(loss=f"{loss_value:.3f}", n=config.n_chunks(step))
        if accelerator.is_main_process and (step % config.log_every == 0 or step + 1 == stop):
            record = {
                "stage": name,
                "step": step,
                "train/loss": loss_value,
                "train/lr": scheduler.get_last_lr()[0],
                "train/grad_norm": float(grad_norm),
                "train/n_chunks": config.n_chunks(step),
                "train/target_tokens": batch.n_targets,
                "time/step_s": time.perf_counter() - t0,
                # CPU seconds of this process: a load-independent cost (wall ~ cpu / threads).
                "time/step_cpu_s": time.process_time() - c0,
            }
            with (out_dir / METRICS_FILE).open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        done_steps = step + 1
        if done_steps == stop or done_steps % config.checkpoint_every == 0:
            _checkpoint(accelerator, ckpt, done_steps, before)

    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    steps_run = stop - start
    after = fixed_loss()
    result: dict[str, Any] = {
        "steps": stop,
        "total_steps": total,
        "steps_run": steps_run,
        "seconds": round(elapsed, 2),
        "seconds_per_step": round(elapsed / max(1, steps_run), 4),
        "cpu_seconds_per_step": round(cpu / max(1, steps_run), 4),
        "fixed_loss_before": round(before, 4),
        "fixed_loss_after": round(after, 4),
        "train_loss_first": round(losses[0], 4) if losses else None,
        "train_loss_last": round(losses[-1], 4) if losses else None,
        "skipped_steps": skipped,
        "trained": [
            p for p in ("decoder", "projector", "encoder") if getattr(config, f"train_{p}")
        ],
    }
    if accelerator.is_main_process:
        save_model(
            model,
            stage_dir / MODEL_DIR,
            encoder_trained=config.train_encoder,
            notes=f"refrag-agent training: preset {preset.name}, stage {name}, step {stop}",
        )
        if stop == total:
            done.write_text(json.dumps(result, indent=1))
    accelerator.wait_for_everyone()
    return result


def _fitted(
    config: StageConfig,
    stage_dir: Path,
    accelerator: Accelerator,
    *,
    resume: bool,
    probe: Callable[[int], float],
) -> StageConfig:
    """``config`` scaled to its ``seconds`` (training/timing.py) from probed step times;
    the times are recorded in ``FIT_FILE`` and reused on resume, so the schedule is kept."""
    path = stage_dir / FIT_FILE
    if resume and path.is_file():
        times = {int(n): float(t) for n, t in json.loads(path.read_text()).items()}
    else:
        counts = chunk_counts(config)
        measured = torch.tensor([probe(n) for n in counts], device=accelerator.device)
        # Every process must run the same steps: the slowest process's times decide.
        slowest = accelerator.gather(measured[None]).amax(0).tolist()
        times = dict(zip(counts, slowest, strict=True))
        if accelerator.is_main_process:
            stage_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(times, indent=1))
    fitted = fit_to_seconds(config, times)
    log.info(
        "train.fitted",
        stage=config.name,
        seconds=config.seconds,
        steps=fitted.total_steps,
        step_seconds={n: round(t, 4) for n, t in times.items()},
    )
    return fitted


def _checkpoint(accelerator: Accelerator, ckpt: Path, step: int, before: float) -> None:
    state = ckpt / STATE_FILE
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # The state file is the commit marker: removed first, written last.
        state.unlink(missing_ok=True)
    accelerator.save_state(str(ckpt))
    if accelerator.is_main_process:
        state.write_text(json.dumps({"step": step, "fixed_loss_before": before}))
    accelerator.wait_for_everyone()


def _truncate_metrics(path: Path, stage: str, start: int) -> None:
    """Drop this stage's metrics past the checkpoint: the resumed run logs them again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line:
            continue
        row = json.loads(line)
        if row.get("stage") != stage or row["step"] < start:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
