"""The training loop every network of the package uses: one process or several (``torchrun``),
a progress bar, logs, atomic checkpoints every epoch, exact resume, validation and the best model.

A *task* (:class:`Task`; PiCR's is :class:`miho.train.picr.PiCRTask`) owns the model and the data
and says how to compute a batch's loss and how to validate; :func:`train` does the rest:

* Batches: each epoch a seeded permutation of the samples is cut into global batches of
  ``batch_size`` x processes samples (the last incomplete one dropped); process r takes the r-th
  slice. The task draws its per-step randomness (disturbances, augmentation) for the whole global
  batch from a generator seeded by the step, then keeps its slice, so N processes with b samples
  each compute what one process with N b samples would (DistributedDataParallel averages the
  gradients; the losses are per-sample means).
* Learning rate: Adam at ``lr``, halved every ``step_epochs`` epochs (the paper) or a cosine decay
  over the run (the official rewrite), set at the start of each epoch; optional gradient clipping.
* Several processes: under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
  DistributedDataParallel, NCCL on GPUs and gloo on CPUs; rank 0 alone logs, validates and writes.
* Files in ``run_dir``: ``last.pt`` (every epoch: model, optimiser, generator, epoch, step, history,
  meta), ``best.pt`` (highest validation ``score``), ``log.jsonl`` (a line every ``log_every`` steps
  and one an epoch), TensorBoard events when ``tensorboard`` is installed.
* Resume: ``resume=True`` continues from ``last.pt`` exactly (same permutations, same draws): a run
  interrupted after an epoch and resumed ends with the same weights as an uninterrupted one. A
  checkpoint of another task configuration, dataset or package version is refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from miho import __version__
from miho.train.checkpoints import git_commit, load_checkpoint, save_checkpoint

__all__ = ["Task", "TrainSettings", "distributed_context", "read_log", "train"]


@dataclass(frozen=True)
class TrainSettings:
    """How to train (see the module docstring)."""

    epochs: int = 10
    batch_size: int = 8  #: samples a process a step
    lr: float = 1e-3
    schedule: str = "step"  #: "step" (halve every ``step_epochs``) or "cosine"
    step_epochs: int = 100
    grad_clip: float | None = None  #: max gradient norm (the official rewrite: 1.0)
    seed: int = 0
    steps_per_epoch: int | None = None  #: cap (small runs); None: the whole permutation
    log_every: int = 10
    amp: bool = False  #: bf16 autocast (GPUs)
    compile: bool = False  #: torch.compile the model (GPUs)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"need epochs >= 1, batch_size >= 1, lr > 0; got {self.epochs}, {self.batch_size}, "
                             f"{self.lr}")  # fmt: skip
        if self.schedule not in ("step", "cosine"):
            raise ValueError(f"schedule must be 'step' or 'cosine', got {self.schedule!r}")

    def lr_at(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (0-based)."""
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
        return self.lr * 0.5 ** (epoch // self.step_epochs)


class Task(Protocol):
    """What :func:`train` needs from a task."""

    model: torch.nn.Module
    meta: dict  #: JSON-able description (configuration, dataset fingerprint): checkpoints must match it

    def num_samples(self) -> int: ...

    def loss(self, model, idx: torch.Tensor, part: slice, generator: torch.Generator, device) -> tuple:
        """(scalar loss of the samples ``idx[part]``, {name: float}) for the global batch ``idx``."""

    def validate(self, model, device) -> dict:
        """Validation figures ({name: float}, with "score": higher is better)."""


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed_context(device: str) -> tuple[_Dist, torch.device]:
    """Rank, world size and this process's device; starts the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = _Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", d.local_rank if world > 1 else 0)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return d, dev


def _meta(task: Task, settings: TrainSettings) -> dict:
    return {"task": task.meta, "settings": dataclasses.asdict(settings), "version": __version__}


def _expect(task: Task, settings: TrainSettings) -> dict:
    return {"task": task.meta, "version": __version__}


class _Log:
    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run_dir / "log.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self.tb = None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            prefix = record.get("kind", "step")
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{prefix}/{k}", v, record["step"])
            self.tb.flush()


def read_log(run_dir: str | Path, kind: str | None = None) -> list[dict]:
    """The records of a run's ``log.jsonl``, oldest first; ``kind``: only "step" or "epoch" records."""
    lines = (Path(run_dir) / "log.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]


def train(task: Task, settings: TrainSettings, run_dir: str | Path, resume: bool = False, device: str = "cpu",
          progress: bool = True) -> dict:  # fmt: skip
    """Train ``task.model`` (see the module docstring); returns the final checkpoint's history
    ({"epochs": [...per-epoch records...], "wall_s": seconds}).

    Raises:
        ValueError: ``resume`` with a checkpoint of another task or version, or settings that
            differ in more than ``epochs``.
    """
    run_dir = Path(run_dir)
    started_group = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    ctx, dev = distributed_context(device)
    if ctx.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    model = task.model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    gen = torch.Generator().manual_seed(settings.seed)
    epoch, step, history, wall, best = 0, 0, [], 0.0, -math.inf
    last = run_dir / "last.pt"
    if resume and last.exists():
        state = load_checkpoint(last, _expect(task, settings))
        old = dict(state["meta"]["settings"], epochs=settings.epochs)
        if old != dataclasses.asdict(settings):
            diff = sorted(k for k in old if old[k] != dataclasses.asdict(settings)[k])
            raise ValueError(f"{last} was trained with other settings ({', '.join(diff)}); only epochs may change")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        epoch, step, history = state["epoch"], state["step"], state["history"]
        wall, best = state["wall_s"], state["best"]
    net = model
    if ctx.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)
    if settings.compile:
        net = torch.compile(net)
    log = _Log(run_dir, ctx.main)
    n = task.num_samples()
    global_batch = settings.batch_size * ctx.world
    if n < global_batch:
        raise ValueError(f"{n} samples cannot fill one batch of {settings.batch_size} x {ctx.world} processes")
    part = slice(ctx.rank * settings.batch_size, (ctx.rank + 1) * settings.batch_size)
    while epoch < settings.epochs:
        start = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = settings.lr_at(epoch)
        perm = torch.randperm(n, generator=gen)
        steps = n // global_batch
        if settings.steps_per_epoch:
            steps = min(steps, settings.steps_per_epoch)
        seeds = torch.randint(2**62, (steps,), generator=gen).tolist()
        model.train()
        sums: dict[str, float] = {}
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{settings.epochs}", disable=not (progress and ctx.main),
                   leave=False)  # fmt: skip
        for i in bar:
            idx = perm[i * global_batch : (i + 1) * global_batch]
            step_gen = torch.Generator().manual_seed(seeds[i])
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=settings.amp):
                loss, parts = task.loss(net, idx, part, step_gen, dev)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            opt.step()
            step += 1
            parts = {"loss": float(loss.detach()), **parts}
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix({k: f"{v / (i + 1):.3g}" for k, v in sums.items()})
            if step % settings.log_every == 0:
                log.write({"kind": "step", "step": step, "epoch": epoch, "lr": opt.param_groups[0]["lr"], **parts})
        epoch += 1
        wall += time.perf_counter() - start
        record = {"kind": "epoch", "epoch": epoch, "step": step, "lr": opt.param_groups[0]["lr"],
                  **{k: v / max(steps, 1) for k, v in sums.items()}}  # fmt: skip
        if ctx.main:
            model.eval()
            with torch.no_grad():
                val = task.validate(model, dev)
            record.update({f"val_{k}": v for k, v in val.items()})
            record["wall_s"] = wall
            history.append(record)
            log.write(record)
            state = {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                "epoch": epoch, "step": step, "history": history, "wall_s": wall, "best": max(best, val["score"]),
                "meta": dict(_meta(task, settings), commit=git_commit(), machine=_machine(dev, ctx.world)),
            }  # fmt: skip
            if val["score"] > best:
                best = val["score"]
                save_checkpoint(run_dir / "best.pt", state)
            save_checkpoint(last, state)
            if progress:
                tqdm.write(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items()
                                                          if isinstance(v, float)))  # fmt: skip
        if ctx.world > 1:
            dist.barrier()
    if started_group:
        dist.destroy_process_group()
    return {"epochs": history, "wall_s": wall}


def _machine(dev: torch.device, world: int) -> str:
    if dev.type == "cuda":
        what = torch.cuda.get_device_name(dev)
    else:
        what = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return f"{what} x {world} process{'es' if world > 1 else ''}, torch {torch.__version__}"
