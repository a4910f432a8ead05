"""The one training loop every method uses (README, "Training engine").

CPU or GPU; one process or many under ``torchrun`` (DistributedDataParallel: NCCL on GPU, gloo
on CPU); a resumable distributed sampler; optional SyncBatchNorm; bf16 autocast and
channels_last on GPU; gradient accumulation; optional gradient clipping.

Outputs, under ``out_dir``:
  ``checkpoint.pt``  everything needed to resume (model, optimizer, step, RNG states), written
                     atomically every ``ckpt_every`` steps and at the end;
  ``encoder.pt``     the method's encoder state dict plus the caller's ``encoder_meta`` (how to
                     rebuild it) and the input normalization it trained with, written at the end
                     (``common.runs.write_encoder``);
  ``snapshots/``     ``encoder-e<N>.pt``, the encoder after N epochs' worth of optimizer steps,
                     for every N in ``snapshot_epochs`` before the last (accuracy over epochs; the
                     methods' ``finish_training``, e.g. CQ's BatchNorm re-estimation, runs on
                     encoder.pt only); the folder is made even when empty, so DVC can track it;
  ``metrics.json``   status ('ok' or 'diverged'), step, final loss, online accuracy, seconds,
                     provenance (git commit, params hash, dataset, profile, device);
  ``dvclive/``       curves: loss, lr, images/s, online accuracy, gradient norms per group
                     (``total``: the method's parameters; ``online_probe``: the probe's).

Resume: when ``checkpoint.pt`` exists with the same params hash, the run continues from it and
ends with the same weights as an uninterrupted run (same seed, same CPU): the data order is a
pure function of (seed, epoch), the batch position is restored, and so are the RNG states of
torch, of the view generator and of the method. A checkpoint made with other settings is
ignored (a warning says so) and the run starts over.

Non-finite loss or gradients: the run stops, writes ``status: diverged`` with the step, and
returns normally, so downstream stages can report it (the CQ paper reports CQ-B exploding).

The online linear classifier (a Linear on the detached features the method returns) trains
alongside with its own lr and gives a live accuracy curve; it never affects the method.
"""
from __future__ import annotations

import contextlib
import math
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from common.checkpoint import atomic_write, load_checkpoint, save_checkpoint, write_json
from common.data.crops import FullImageCrops, collate_fn, training_source
from common.distributed import Runtime, setup_runtime
from common.errors import ConfigError
from common.methods.base import Method, StepOutput
from common.optim import apply_schedule, build_optimizer, make_schedule, param_groups
from common import runs
from common.provenance import params_hash, provenance
from common.sampler import ResumableSampler
from common.syncbn import convert_sync_batchnorm


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


# (fields, check, what the message says is expected): types and ranges of TrainConfig, checked
# once here for params.yaml and command-line overrides alike.
_FIELD_RULES = (
    (("batch_size", "accum_steps", "ckpt_every", "log_every"), lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    (("steps",), lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1 (or give epochs)"),
    (("epochs",), lambda v: v is None or (_is_number(v) and v > 0), "a number > 0 (or give steps)"),
    (("warmup_steps", "num_workers", "seed"), lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    (("num_classes",), lambda v: v is None or (_is_int(v) and v >= 2), "an integer >= 2 or null"),
    (("lr", "online_lr", "weight_decay", "warmup_epochs", "final_lr_ratio", "gamma"),
     lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    (("momentum",), lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    (("grad_clip",), lambda v: v is None or (_is_number(v) and v > 0), "a number > 0 or null"),
    (("nesterov", "sync_bn", "progress"), lambda v: isinstance(v, bool), "true or false"),
    (("betas",), lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v),
     "two numbers in [0, 1)"),
    (("milestones",), lambda v: isinstance(v, (list, tuple)) and all(_is_int(m) and m >= 0 for m in v),
     "a list of integers >= 0"),
    (("snapshot_epochs",), lambda v: isinstance(v, (list, tuple)) and all(_is_int(e) and e >= 1 for e in v),
     "a list of integers >= 1"),
    (("optimizer", "schedule", "device", "amp", "channels_last"), lambda v: isinstance(v, str), "a name"),
)


@dataclass
class TrainConfig:
    """Settings of one training run; every field is a parameter in params.yaml."""

    batch_size: int = 256  # global batch, split over ranks and accumulation steps
    steps: int | None = None  # optimizer steps; or give epochs
    epochs: float | None = None
    optimizer: str = "sgd"  # lars | sgd | adam | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"  # cosine | step | linear | constant
    warmup_steps: int = 0
    warmup_epochs: float = 0.0
    milestones: Sequence[int] = ()
    gamma: float = 0.1
    final_lr_ratio: float = 0.0
    accum_steps: int = 1
    grad_clip: float | None = None  # max global gradient norm; None = off
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16 on GPU, off on CPU) | bf16 | off
    channels_last: str = "auto"  # auto (on GPU) | on | off
    sync_bn: bool = False
    ckpt_every: int = 100
    # snapshots/encoder-e<epoch>.pt after these epochs (common.runs.snapshot_path), for accuracy over epochs
    snapshot_epochs: Sequence[int] = ()
    log_every: int = 10
    online_lr: float = 0.1  # the online linear classifier's own lr
    num_classes: int | None = None  # online classifier's classes (None: no online probe)
    progress: bool = True

    def __post_init__(self):
        for name in ("amp", "channels_last"):  # YAML reads a bare on / off as true / false
            if isinstance(getattr(self, name), bool):
                setattr(self, name, "on" if getattr(self, name) else "off")
        for names, check, expected in _FIELD_RULES:
            for name in names:
                value = getattr(self, name)
                if not check(value):
                    raise ConfigError(f"train.{name}: expected {expected}, got {value!r}")
        self.betas = tuple(self.betas)
        self.milestones = tuple(self.milestones)
        self.snapshot_epochs = tuple(self.snapshot_epochs)
        if (self.steps is None) == (self.epochs is None):
            raise ConfigError("train: give exactly one of steps or epochs")
        for name, allowed in (("amp", ("auto", "bf16", "off")), ("channels_last", ("auto", "on", "off")),
                              ("device", ("auto", "cpu", "cuda"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"train.{name}: expected one of {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, d: dict, where: str = "train") -> "TrainConfig":
        """The settings of `d`; every error names the field as `<where>.<field>` (e.g. cq.train.lr)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown setting(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**d)
        except ConfigError as err:
            text = str(err)
            raise ConfigError(where + text[len("train"):] if text.startswith("train") else text) from None


# --------------------------------------------------------------------------------------------
# Processes and devices
# --------------------------------------------------------------------------------------------

# Runtime / setup_runtime live in common.distributed (the evaluation suites use them too).


def _autocast(rt: Runtime, cfg: TrainConfig):
    on = cfg.amp == "bf16" or (cfg.amp == "auto" and rt.device.type == "cuda")
    if not on:
        return contextlib.nullcontext()
    return torch.autocast(device_type=rt.device.type, dtype=torch.bfloat16)


# --------------------------------------------------------------------------------------------
# The trained module: method + online linear classifier
# --------------------------------------------------------------------------------------------

class TrainModule(nn.Module):
    """The method plus the online linear probe on its detached features (one DDP unit)."""

    def __init__(self, method: Method, num_classes: int | None):
        super().__init__()
        self.method = method
        self.online = nn.Linear(method.feature_dim, num_classes) if num_classes else None

    def forward(self, images, labels, generator):
        out: StepOutput = self.method(images, labels, generator)
        total, logs = out.loss, dict(out.logs)
        if self.online is not None and out.features is not None:
            logits = self.online(out.features.detach().float())
            valid = labels >= 0
            if valid.any():
                probe = F.cross_entropy(logits[valid], labels[valid])
                total = total + probe
                logs["online_acc"] = (logits[valid].argmax(1) == labels[valid]).float().mean().detach()
        return total, out.loss.detach(), logs


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.zeros(())


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

@dataclass
class RunState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    status: str = "running"
    diverged_at: int | None = None
    last_loss: float | None = None
    logs: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of the segments before this one (a resumed run adds them up)


def _rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "views": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["views"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_resume(path: Path, phash: str, rt: Runtime) -> dict | None:
    if not path.is_file():
        return None
    try:
        # onto the CPU: load_state_dict copies weights and optimizer state to where the model
        # lives, and RNG states must stay CPU byte tensors (on a GPU they would not resume)
        ckpt = load_checkpoint(path, map_location="cpu")
    except ConfigError as err:  # e.g. a copy cut short: the run starts over rather than stopping
        if rt.main:
            warnings.warn(f"{err}; starting over")
        return None
    if ckpt.get("params_hash") != phash:
        if rt.main:
            warnings.warn(f"{path}: made with other settings (params hash {ckpt.get('params_hash')} "
                          f"!= {phash}); starting over")
        return None
    if ckpt.get("world") != rt.world:
        raise ConfigError(f"{path}: written by {ckpt.get('world')} processes, resumed with {rt.world}; "
                          "resume with the same number of processes")
    return ckpt


def train(method: Method, dataset: Dataset, cfg: TrainConfig, out_dir: str | Path,
          params: dict | None = None, encoder_meta: dict | None = None,
          run_info: dict | None = None,
          callbacks: Sequence[Callable[[int, RunState], None]] = ()) -> dict:
    """Train ``method`` on ``dataset``; returns the metrics dict also written to metrics.json.

    ``params``: the settings that define the run (hashed for provenance and resume).
    ``encoder_meta``: stored beside the encoder weights (e.g. backbone name and options).
    ``run_info``: extra provenance (dataset, profile, ...). ``callbacks(step, state)`` run after
    every optimizer step on every rank (an exception there stops the run, as a crash would).
    """
    out_dir = Path(out_dir)
    rt = setup_runtime(cfg.device)
    try:
        return _train(method, dataset, cfg, out_dir, rt, params if params is not None else asdict(cfg),
                      encoder_meta or {}, run_info or {}, callbacks)
    finally:
        if rt.started_process_group:
            dist.destroy_process_group()


@dataclass
class _Setup:
    """What a run trains with: the model (method + online probe), its DDP wrapper, optimizer,
    lr schedule, data order and view generator, and the step counts."""

    model: TrainModule
    ddp: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Callable[[int], float]
    sampler: ResumableSampler
    loader: DataLoader
    generator: torch.Generator
    per_rank: int
    total: int
    micro_per_epoch: int
    snapshots: dict[int, int]  # optimizer step -> the epoch whose encoder snapshot it writes


def _sampler(dataset: Dataset, per_rank: int, seed: int, rt: Runtime) -> ResumableSampler:
    # full-image crops are keyed by (image, epoch), so the sampler hands both to the data set
    return ResumableSampler(len(dataset), per_rank, seed, rt.world, rt.rank,
                            keyed=isinstance(dataset, FullImageCrops))


def _loader(dataset: Dataset, sampler: ResumableSampler, cfg: TrainConfig, rt: Runtime,
            persistent_workers: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=sampler.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                      drop_last=True, pin_memory=rt.device.type == "cuda", collate_fn=collate_fn(dataset),
                      persistent_workers=persistent_workers)


def _setup(method: Method, dataset: Dataset, cfg: TrainConfig, rt: Runtime) -> _Setup:
    per_rank = cfg.batch_size // (rt.world * cfg.accum_steps)
    if per_rank * rt.world * cfg.accum_steps != cfg.batch_size:
        raise ConfigError(f"train.batch_size: {cfg.batch_size} is not divisible by "
                          f"{rt.world} processes x {cfg.accum_steps} accumulation steps")
    bn_batch = per_rank * (rt.world if cfg.sync_bn else 1)  # the images one BatchNorm sees a step
    if bn_batch < 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in method.modules()):
        raise ConfigError(f"train.batch_size: {cfg.batch_size} gives BatchNorm {bn_batch} image a step "
                          f"({rt.world} processes x {cfg.accum_steps} accumulation steps); it needs at least 2")
    method.check_batch(per_rank * rt.world)
    torch.manual_seed(cfg.seed)  # the same initial weights everywhere (DDP also broadcasts them)
    sampler = _sampler(dataset, per_rank, cfg.seed, rt)
    steps_per_epoch = max(1, sampler.batches_per_epoch // cfg.accum_steps)
    total = cfg.steps if cfg.steps is not None else max(1, round(cfg.epochs * steps_per_epoch))
    warmup = cfg.warmup_steps or round(cfg.warmup_epochs * steps_per_epoch)

    model = TrainModule(method, cfg.num_classes).to(rt.device)
    if cfg.channels_last == "on" or (cfg.channels_last == "auto" and rt.device.type == "cuda"):
        model = model.to(memory_format=torch.channels_last)
        method.channels_last = True
    if cfg.sync_bn and rt.world > 1:
        convert_sync_batchnorm(model, rt.device)
    groups = param_groups(model.method, cfg.weight_decay)
    if model.online is not None:  # its own lr, no decay, no LARS adaptation
        groups.append({"params": list(model.online.parameters()), "weight_decay": 0.0,
                       "lars_exclude": True, "lr": cfg.online_lr})
    optimizer = build_optimizer(cfg.optimizer, groups, lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=cfg.nesterov, betas=cfg.betas)
    schedule = make_schedule(cfg.schedule, total, warmup, cfg.milestones, cfg.gamma, cfg.final_lr_ratio)
    ddp = (DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
           if rt.world > 1 else model)
    generator = torch.Generator(device=rt.device).manual_seed(cfg.seed * 1000 + rt.rank)
    # workers live across epochs: restarting them each epoch cost most of the time of a short epoch
    # on a GPU (reports/gpu)
    loader = _loader(dataset, sampler, cfg, rt, persistent_workers=cfg.num_workers > 0)
    snapshots = {epoch * steps_per_epoch: epoch for epoch in cfg.snapshot_epochs if epoch * steps_per_epoch < total}
    return _Setup(model, ddp, optimizer, schedule, sampler, loader, generator, per_rank, total,
                  sampler.batches_per_epoch, snapshots)


def _resume(run: _Setup, path: Path, phash: str, rt: Runtime) -> RunState | None:
    """The state of the checkpoint at `path`, with model, optimizer and RNGs restored; None: a
    fresh start."""
    resumed = _check_resume(path, phash, rt)
    if resumed is None:
        return None
    run.model.load_state_dict(resumed[runs.MODEL])
    run.optimizer.load_state_dict(resumed["optimizer"])
    _set_rng_state(resumed["rng"][rt.rank], run.generator)
    return RunState(**resumed["state"])


class _Checkpoints:
    """checkpoint.pt (everything a resume needs) every `ckpt_every` steps and at the end; at the
    end also encoder.pt (common.runs.write_encoder)."""

    def __init__(self, out_dir: Path, run: _Setup, method: Method, rt: Runtime, phash: str,
                 encoder_meta: dict, seconds_before: float, segment_start: float):
        self.out_dir, self.run, self.method, self.rt, self.phash = out_dir, run, method, rt, phash
        self.encoder_meta, self.seconds_before = encoder_meta, seconds_before
        self.segment_start = segment_start  # this segment of the run (a resumed run adds the earlier ones)

    def save(self, state: RunState, final: bool = False) -> None:
        rt, run = self.rt, self.run
        state.seconds = self.seconds_before + (time.time() - self.segment_start)
        rngs = [None] * rt.world
        mine = _rng_state(run.generator)
        if rt.world > 1:
            dist.all_gather_object(rngs, {k: v.cpu() if torch.is_tensor(v) else v for k, v in mine.items()})
        else:
            rngs = [mine]
        if not rt.main:
            return
        save_checkpoint({runs.MODEL: run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                         "state": asdict(state), "rng": rngs, "params_hash": self.phash,
                         "world": rt.world}, self.out_dir / runs.CHECKPOINT)
        if final:
            self.encoder(self.out_dir / runs.ENCODER)

    def encoder(self, path: Path) -> None:
        """The method's encoder as it is now, written to `path` in the run folder (rank 0 writes)."""
        if self.rt.main:
            norm = self.method.input_norm()
            runs.write_encoder(path, {**self.encoder_meta, **({"norm": norm} if norm else {})},
                               self.method.encoder_state_dict())


@dataclass
class _Window:
    """Images seen since the last logged step (for images/s)."""

    start: float = field(default_factory=time.time)
    images: int = 0


def _optimizer_step(run: _Setup, method: Method, cfg: TrainConfig, rt: Runtime, state: RunState,
                    method_loss: torch.Tensor, logs: dict, window: _Window, logger: "_Logger") -> bool:
    """One optimizer step after the gradients of a full batch: lr, divergence check (every rank
    together), clipping, gradient norms and the logged values. False: the run diverged."""
    model, optimizer, total = run.model, run.optimizer, run.total
    lrs = apply_schedule(optimizer, run.schedule, state.step)
    gnorm = _grad_norm(p for p in model.parameters())
    finite = torch.isfinite(method_loss.float()) & torch.isfinite(gnorm)
    if rt.world > 1:  # every rank stops together; the logged loss is the global mean
        stats = torch.stack([method_loss.float(), finite.float()]).to(rt.device)
        dist.all_reduce(stats)
        method_loss, finite = stats[0] / rt.world, stats[1] == rt.world
    if not bool(finite):
        state.status, state.diverged_at = runs.DIVERGED, state.step
        return False
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    do_log = (state.step + 1) % cfg.log_every == 0 or state.step + 1 == total
    group_norms = {}
    if do_log:  # "total" is the method's; the online probe (not the method) is its own entry
        group_norms = {name: float(_grad_norm(mod.parameters())) for name, mod in method.grad_groups().items()}
        group_norms["total"] = float(_grad_norm(method.parameters()))
        if model.online is not None:
            group_norms["online_probe"] = float(_grad_norm(model.online.parameters()))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    method.after_optimizer_step(state.step, total)
    state.step += 1
    state.last_loss = float(method_loss)
    if do_log:
        elapsed = max(time.time() - window.start, 1e-9)
        values = {"loss": state.last_loss, "lr": lrs[0], "images_per_s": window.images / elapsed,
                  **{f"grad_norm/{k}": v for k, v in group_norms.items()},
                  **{k: float(v) for k, v in logs.items()}}
        state.logs = values
        logger.log(state.step, values)
        window.start, window.images = time.time(), 0
    logger.advance(state.step, state.last_loss)
    return True


def _loop(run: _Setup, method: Method, cfg: TrainConfig, rt: Runtime, state: RunState, logger: "_Logger",
          checkpoints: _Checkpoints, callbacks) -> None:
    """Batches in the sampler's order (resumed at the saved epoch and batch) until the last step
    or a divergence; gradients accumulate over `accum_steps` micro-batches per optimizer step."""
    window, micro = _Window(), 0
    run.model.train()
    while state.step < run.total and state.status == "running":
        run.sampler.set_epoch(state.epoch)
        run.sampler.start_at(state.batch_in_epoch)
        for images, labels in run.loader:
            images = images.to(rt.device, non_blocking=True)
            labels = torch.as_tensor(labels).to(rt.device, non_blocking=True)
            last_micro = (micro + 1) % cfg.accum_steps == 0
            sync = contextlib.nullcontext() if last_micro or run.ddp is run.model else run.ddp.no_sync()
            with sync:
                with _autocast(rt, cfg):
                    total_loss, method_loss, logs = run.ddp(images, labels, run.generator)
                (total_loss / cfg.accum_steps).backward()
            micro += 1
            state.batch_in_epoch += 1
            window.images += images.shape[0] * rt.world
            if not last_micro:
                continue
            if not _optimizer_step(run, method, cfg, rt, state, method_loss, logs, window, logger):
                break
            if state.step in run.snapshots:  # the last epoch's encoder is encoder.pt itself
                checkpoints.encoder(runs.snapshot_path(checkpoints.out_dir, run.snapshots[state.step]))
            for cb in callbacks:
                cb(state.step, state)
            if state.step % cfg.ckpt_every == 0 and state.step < run.total:
                checkpoints.save(state)
            if state.step >= run.total:
                break
        else:  # the epoch ran out
            state.epoch += 1
            state.batch_in_epoch = 0
            continue
        if state.status == "running" and state.batch_in_epoch >= run.micro_per_epoch:
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0


def _train(method, dataset, cfg, out_dir, rt, params, encoder_meta, run_info, callbacks) -> dict:
    """Set up, resume if a checkpoint of the same settings is there, run the steps, finish
    (Method.finish_training), write encoder.pt, checkpoint.pt and metrics.json."""
    segment_start = time.time()
    phash = params_hash({"params": params, "world": rt.world})
    # full-image crops, if the data set asks for them; on a CPU the loader workers also finish the
    # views, beside the training step (on a GPU the device does, common/data/crops.py)
    dataset = training_source(dataset, method.view_slots(), cfg.seed,
                              finish_views=rt.device.type == "cpu" and cfg.num_workers > 0, device_type=rt.device.type)
    run = _setup(method, dataset, cfg, rt)
    resumed = _resume(run, out_dir / runs.CHECKPOINT, phash, rt)
    state = resumed or RunState()
    before = set(out_dir.iterdir()) if out_dir.is_dir() else None  # what the folder held before this call
    if rt.main:  # only now: a run that fails its checks above leaves no folder behind
        (out_dir / runs.SNAPSHOTS).mkdir(parents=True, exist_ok=True)  # there (maybe empty) for DVC
    logger = _Logger(out_dir, rt, run.total, resume_step=state.step if resumed is not None else None,
                     enabled=cfg.progress)
    checkpoints = _Checkpoints(out_dir, run, method, rt, phash, encoder_meta, state.seconds, segment_start)
    try:
        _loop(run, method, cfg, rt, state, logger, checkpoints, callbacks)
    except Exception as err:
        logger.close()
        if rt.main:
            _failed(out_dir, before, err, state)
        raise
    if state.status == "running":
        state.status = runs.OK
    if state.status == runs.OK:
        method.finish_training(lambda: _finish_batches(dataset, run.per_rank, cfg, rt),
                               torch.Generator(device=rt.device).manual_seed(cfg.seed * 1000 + rt.rank + FINISH_SEED))
    checkpoints.save(state, final=True)
    logger.close()
    metrics = {
        "status": state.status,
        "step": state.step if state.status == runs.OK else state.diverged_at,
        "total_steps": run.total,
        "final_loss": state.last_loss,
        "online_acc": state.logs.get("online_acc"),
        "images_per_s": state.logs.get("images_per_s"),
        "seconds": round(state.seconds, 3),  # every segment, as of the final save
        # this process's peak GPU memory (bench/gpu.py reports it); None on a CPU
        "peak_memory_gib": (round(torch.cuda.max_memory_allocated(rt.device) / 2**30, 3)
                            if rt.device.type == "cuda" else None),
        "world_size": rt.world,
        # where the SSL crops came from: the whole file (loader workers) or the stored images (device)
        "crops": "full" if isinstance(dataset, FullImageCrops) else "stored",
        # where full-image crops were decoded and cut: the device (gpu) or the loader workers (cpu)
        "decode": dataset.decode if isinstance(dataset, FullImageCrops) else None,
        "method": method.summary(),
        "provenance": provenance(params, rt.device, **run_info),
    }
    if rt.main:
        write_json(metrics, out_dir / runs.METRICS)
    return metrics


def _failed(out_dir: Path, before: set[Path] | None, err: Exception, state: RunState) -> None:
    """A run stopped by an exception: with no checkpoint to resume from, take away what this call
    wrote (the folder as it was, or gone); with one, metrics.json says the run failed and why, so
    no reader takes it for finished and a rerun resumes from the checkpoint."""
    if not (out_dir / runs.CHECKPOINT).is_file():
        if before is None:
            shutil.rmtree(out_dir, ignore_errors=True)
        else:
            for path in set(out_dir.iterdir()) - before:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        return
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    write_json({"status": runs.FAILED, "reason": f"{type(err).__name__}: {reason}", "step": state.step},
               out_dir / runs.METRICS)


FINISH_SEED = 500_009  # keeps the views of finish_training apart from the training views


def _finish_batches(dataset: Dataset, per_rank: int, cfg: TrainConfig, rt: Runtime):
    """Training batches for ``Method.finish_training``: a fixed order of their own (seed + 1), so a
    rerun of a finished run, or a resumed one, gives the same batches."""
    sampler = _sampler(dataset, per_rank, cfg.seed + 1, rt)
    for images, _ in _loader(dataset, sampler, cfg, rt):
        yield images.to(rt.device, non_blocking=True)


def _truncate_curves(live_dir: Path, last_step: int) -> None:
    """Keep only the rows of step <= last_step in every dvclive curve (TSV: header, then a step
    column) under ``live_dir``, so a resumed run does not log a step twice."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        header = lines[0].split("\t") if lines else []
        if "step" not in header:
            continue
        col = header.index("step")
        kept = [lines[0]] + [row for row in lines[1:] if int(float(row.split("\t")[col])) <= last_step]
        if len(kept) != len(lines):
            atomic_write(tsv, lambda tmp: tmp.write_text("\n".join(kept) + "\n"))


class _Logger:
    """dvclive curves and a tqdm bar, on the main process only."""

    def __init__(self, out_dir: Path, rt: Runtime, total: int, resume_step: int | None, enabled: bool):
        self.live = self.bar = None
        if not rt.main:
            return
        from dvclive import Live
        from tqdm import tqdm

        if resume_step is not None:  # rows logged after the checkpoint are logged again: drop them
            _truncate_curves(out_dir / "dvclive", resume_step)
        self.live = Live(dir=str(out_dir / "dvclive"), resume=resume_step is not None, save_dvc_exp=False,
                         dvcyaml=None, report=None)
        self.bar = tqdm(total=total, disable=not enabled, mininterval=2.0, desc=out_dir.name)

    def log(self, step: int, values: dict[str, float]) -> None:
        if self.live is None:
            return
        self.live.step = step
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                self.live.log_metric(f"train/{name}", value)
        self.live.next_step()

    def advance(self, step: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.live is not None:
            self.live.end()


def load_encoder(path: str | Path, model: nn.Module | None = None) -> dict[str, Any]:
    """Read an ``encoder.pt`` (``common.runs.read_encoder``); with ``model``, load its weights
    strictly (mismatch = error)."""
    ckpt = runs.read_encoder(path)
    if model is not None:
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
        if missing or unexpected:
            raise ConfigError(f"{path}: weights do not fit {type(model).__name__} "
                              f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    return ckpt
