"""The run contract: what a run is, where its files live, and which runs a profile defines.

A run is one pretraining (or an untrained network a table compares with). Its identity:

    group       cq | burn
    name        cq:   <method>-<variant>-<backbone>           simclr-cq_c-cifar_resnet20
                      random_init-<backbone>                   (CQ Table 8's "No SSL Training")
                burn: <configuration>-stage1 / -stage2         burn-stage2, fs_l1-stage2
                      baseline-<method>                        baseline-s2bnn, baseline-byol
                      teacher-<method>-<backbone>              the FP teacher
                      random_init-<student>                    the binary network, untrained
                      appendix-<method>-<variant>-<backbone>   BURN Appendix B.1 (Figs. 6, 7), from
                                                               `burn.appendix.runs` (variant `base`:
                                                               the method's own settings)
    precision   only for CQ runs at a precision set other than the profile's `precision`
                (`cq.precision_sets`, CQ Tables 1, 8, 9 side by side)
    seed        one of the profile's `seeds`; the teacher's: one of `burn.teacher.seeds`

and its folder (a two-stage baseline keeps its first stage in stage1/ inside it), under which
the run's stage writes encoder.pt (`write_encoder`, read back by
`read_encoder`: the network, its options, its binary stage and input normalization), metrics.json,
checkpoint.pt, dvclive/ and snapshots/ (the encoder after each of `train.snapshot_epochs`,
`snapshot_path`; empty without them, so that a stage can declare the folder):

    runs/<group>/<name>[/p<set>]/s<seed>/

The runs at the profile's own `precision` have no p<set> level, so `dvc exp run -S precision=4-16`
re-runs exactly them; a set listed in `cq.precision_sets` is a separate run under p<set>/ (DVC
forbids two stages writing one file, so a set equal to `precision` is trained in both places, with
the same seed and therefore the same result). Evaluations mirror the layout:

    runs/eval/<suite>/<group>/<name>[/p<set>]/s<seed>[/<variant>][/e<epoch>]/metrics.json

(e<epoch>: a suite's `snapshots`, the evaluation of snapshots/encoder-e<epoch>.pt).

A run *key* names a run over all its seeds, as the report mapping and the claims file do:
"cq/simclr-cq_c-cifar_resnet20", "cq/simclr-cq_c-cifar_resnet20@8-16", "burn/burn-stage2".
dvc.yaml spells the same folder patterns (it cannot import Python); tests/test_runs.py checks that
the two agree.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from common.errors import ConfigError

RUNS = Path("runs")
EVAL = RUNS / "eval"
ENCODER, METRICS, CHECKPOINT = "encoder.pt", "metrics.json", "checkpoint.pt"


SNAPSHOTS = "snapshots"  # the run folder's encoders of earlier epochs (train.snapshot_epochs)


def snapshot_label(epoch: int) -> str:
    """e<epoch>: a snapshot's name, in its file name and as an evaluation's sub-folder."""
    return f"e{epoch}"


def snapshot_path(folder: str | Path, epoch: int) -> Path:
    """The encoder as it was after `epoch` epochs, in a run folder's snapshots/."""
    return Path(folder) / SNAPSHOTS / f"encoder-{snapshot_label(epoch)}.pt"


STAGE1 = "stage1"  # a two-stage baseline's first stage, inside its run folder (burn.two_stage)
# The status words of a run, every writer's and reader's: a pretraining run (or an evaluation's own
# training) ends OK or DIVERGED; an evaluation of a diverged run is NOT_RUN_DIVERGED instead of a
# number; a run or evaluation with no metrics.json reads NOT_RUN (`status_of`).
OK, DIVERGED = "ok", "diverged"
NOT_RUN_DIVERGED = "not run (pretraining diverged)"
NOT_RUN = "not run"
FAILED = "failed"  # a run stopped by an exception after it had saved a checkpoint (metrics.json says why)
STATUSES = (OK, DIVERGED, NOT_RUN_DIVERGED, NOT_RUN, FAILED)


def status_of(metrics: dict | None) -> str:
    """A metrics record's status word: NOT_RUN without a record, OK where it names none (a suite
    that finished writes its numbers and may leave the word out)."""
    return NOT_RUN if metrics is None else str(metrics.get("status", OK))


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

def cq_name(method: str, variant: str, backbone: str) -> str:
    return f"{method}-{variant}-{backbone}"


def random_init_name(backbone: str) -> str:
    return f"random_init-{backbone}"


def cq_run_parts(name: str) -> tuple[str, str, str] | None:
    """(method, variant, backbone) of a CQ run name (no precision set), the inverse of `cq_name`;
    None for the untrained network's run (`random_init_name`)."""
    if name.startswith(random_init_name("")):
        return None
    parts = name.split("-")
    if len(parts) != 3:
        raise ConfigError(f"{name!r}: not a CQ run name (<method>-<variant>-<backbone>)")
    return parts[0], parts[1], parts[2]


def burn_stage_name(configuration: str, stage: int) -> str:
    return f"{configuration}-stage{stage}"


def burn_run_kind(name: str) -> tuple[str, str]:
    """What a BURN run name (no seed) is, the inverse of the names above: ("teacher",
    "<method>-<backbone>"), ("baseline", method), ("random_init", backbone), ("appendix",
    "<method>-<variant>-<backbone>") or ("stage1" / "stage2", configuration)."""
    for kind, prefix in (("teacher", teacher_name("", "")[:-1]), ("baseline", baseline_name("")),
                         ("random_init", random_init_name("")), ("appendix", APPENDIX)):
        if name.startswith(prefix):
            return kind, name[len(prefix):]
    configuration, _, stage = name.rpartition("-stage")
    if not configuration or stage not in ("1", "2"):
        raise ConfigError(f"{name!r}: not a BURN run name")
    return f"stage{stage}", configuration


def burn_configurations(root: Path = RUNS) -> list[str]:
    """The BURN configurations that have a stage-1 or stage-2 folder under `root`/burn."""
    return sorted({p.name.rsplit("-stage", 1)[0] for p in (root / "burn").glob("*-stage[12]") if p.is_dir()})


def baseline_name(method: str) -> str:
    return f"baseline-{method}"


def teacher_name(method: str, backbone: str) -> str:
    return f"teacher-{method}-{backbone}"


APPENDIX = "appendix-"
APPENDIX_BASE = "base"  # an appendix run's variant that changes nothing: the method's own settings


def appendix_parts(descriptor: str) -> tuple[str, str | None, str]:
    """(method, variant or None for `base`, backbone) of an entry of `burn.appendix.runs`
    ("infomin-weak_views-reactnet_a"), or of the run name `appendix_name` makes of it."""
    parts = str(descriptor).removeprefix(APPENDIX).split("-")
    if len(parts) != 3 or not all(parts):
        raise ConfigError(f"burn.appendix.runs: {descriptor!r}: expected <method>-<variant>-<backbone> "
                          f"(variant {APPENDIX_BASE}: the method's own settings), e.g. infomin-weak_views-reactnet_a")
    method, variant, backbone = parts
    return method, None if variant == APPENDIX_BASE else variant, backbone


def appendix_name(descriptor: str) -> str:
    appendix_parts(descriptor)  # validates
    return APPENDIX + str(descriptor)


# --------------------------------------------------------------------------------------------
# Runs and their folders
# --------------------------------------------------------------------------------------------

def seed_folder(seed: int) -> str:
    return f"s{seed}"


@dataclass(frozen=True)
class Run:
    group: str
    name: str
    seed: int = 0
    precision: str | None = None

    @property
    def key(self) -> str:
        """The run over all its seeds: cq/simclr-cq_c-cifar_resnet20[@8-16]."""
        return f"{self.group}/{self.name}" + (f"@{self.precision}" if self.precision else "")

    @property
    def relative(self) -> Path:
        """<group>/<name>[/p<set>]/s<seed>: the same below runs/ and below runs/eval/<suite>/."""
        path = Path(self.group) / self.name
        if self.precision:
            path /= f"p{self.precision}"
        return path / seed_folder(self.seed)

    @property
    def folder(self) -> Path:
        return RUNS / self.relative

    @property
    def encoder(self) -> Path:
        return self.folder / ENCODER

    @property
    def metrics(self) -> Path:
        return self.folder / METRICS

    def eval_folder(self, suite: str, variant: str | None = None) -> Path:
        folder = EVAL / suite / self.relative
        return folder / variant if variant else folder


def parse_key(key: str) -> tuple[str, str, str | None]:
    """'cq/simclr-cq_c-cifar_resnet20@8-16' -> ('cq', 'simclr-cq_c-cifar_resnet20', '8-16')."""
    text, _, precision = str(key).partition("@")
    group, sep, name = text.partition("/")
    if not sep or not name or "/" in name or group not in ("cq", "burn"):
        raise ConfigError(f"run {key!r}: expected <cq|burn>/<name>[@<precision set>], e.g. cq/simclr-cq_c-cifar_resnet20")
    return group, name, precision or None


def runs_of(key: str, seeds: Iterable[int]) -> list[Run]:
    group, name, precision = parse_key(key)
    return [Run(group, name, seed, precision) for seed in seeds]


def profile_seeds(params: dict) -> list[int]:
    """The profile's `seeds` (a non-empty list of distinct integers); [0] when it names none."""
    seeds = params.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)):
        raise ConfigError(f"seeds: expected a list of distinct integers, e.g. [0, 1, 2], got {seeds!r}")
    return seeds


def precision_sets(params: dict) -> dict:
    """`cq.precision_sets`: {sets, methods, variants}: the CQ runs trained at other precision sets."""
    spec = (params.get("cq") or {}).get("precision_sets") or {}
    if not isinstance(spec, dict) or set(spec) - {"sets", "methods", "variants"}:
        raise ConfigError(f"cq.precision_sets: expected {{sets: [...], methods: [...], variants: [...]}}, got {spec!r}")
    return {k: list(spec.get(k) or []) for k in ("sets", "methods", "variants")}


# --------------------------------------------------------------------------------------------
# The runs a profile defines (by key, over all seeds)
# --------------------------------------------------------------------------------------------

def cq_keys(params: dict) -> list[str]:
    """Every CQ run at the profile's precision: methods x ([baseline] + variants) x backbones."""
    cq = params.get("cq") or {}
    return [f"cq/{cq_name(m, v, b)}" for m in cq.get("methods", []) for v in ["baseline", *cq.get("variants", [])]
            for b in cq.get("backbones", [])]


def cq_set_keys(params: dict) -> list[str]:
    """The CQ runs at the other precision sets (`cq.precision_sets`)."""
    spec = precision_sets(params)
    return [f"cq/{cq_name(m, v, b)}@{s}" for m in spec["methods"] for v in spec["variants"]
            for b in (params.get("cq") or {}).get("backbones", []) for s in spec["sets"]]


def cq_random_init_keys(params: dict) -> list[str]:
    return [f"cq/{random_init_name(b)}" for b in (params.get("cq") or {}).get("backbones", [])]


def baseline_keys(burn: dict) -> list[str]:
    return [f"burn/{baseline_name(m)}" for m in [*burn.get("distill", ["s2bnn"]), *burn.get("baselines", [])]]


def burn_keys(params: dict) -> list[str]:
    """The final (stage 2) BURN configurations, then S2-BNN and the other binary baselines."""
    burn = params.get("burn") or {}
    return [f"burn/{burn_stage_name(r, 2)}" for r in burn.get("runs", [])] + baseline_keys(burn)


def burn_main_keys(params: dict) -> list[str]:
    """BURN itself (no ablations), S2-BNN and the baselines: what BURN Tables 1-4 compare."""
    burn = params.get("burn") or {}
    main = [f"burn/{burn_stage_name('burn', 2)}"] if "burn" in burn.get("runs", []) else []
    return main + baseline_keys(burn)


def burn_teacher_keys(params: dict) -> list[str]:
    teacher = (params.get("burn") or {}).get("teacher") or {}
    return [f"burn/{teacher_name(teacher.get('method'), teacher.get('backbone'))}"] if teacher_seeds(params) else []


def two_stage(burn: dict) -> list[str]:
    """`burn.two_stage`: the baselines trained as S2-BNN trains them, stage 1 (binary activations,
    in their run folder's stage1/) then stage 2 (fully binary) from it, each a full schedule. A
    property of the method: a name the profile does not run (burn.distill / baselines) is idle."""
    names = burn.get("two_stage") or []
    if not isinstance(names, list) or "burn" in names:
        raise ConfigError(f"burn.two_stage: expected a list of baseline names (BURN has its own stages), got {names!r}")
    return names


def appendix_runs(params: dict) -> list[str]:
    """`burn.appendix.runs`: the extra runs of BURN Appendix B.1, as <method>-<variant>-<backbone>."""
    entries = ((params.get("burn") or {}).get("appendix") or {}).get("runs") or []
    if not isinstance(entries, list):
        raise ConfigError(f"burn.appendix.runs: expected a list of <method>-<variant>-<backbone>, got {entries!r}")
    for entry in entries:
        appendix_parts(entry)
    return [str(e) for e in entries]


def burn_appendix_keys(params: dict) -> list[str]:
    return [f"burn/{appendix_name(d)}" for d in appendix_runs(params)]


def burn_random_init_keys(params: dict) -> list[str]:
    student = (params.get("burn") or {}).get("student")
    return [f"burn/{random_init_name(student)}"] if student else []


def teacher_seeds(params: dict) -> list[int]:
    """`burn.teacher.seeds`: the seeds the FP teacher is trained with ([]: no teacher); the
    profile's `seeds` when the profile names none."""
    seeds = ((params.get("burn") or {}).get("teacher") or {}).get("seeds")
    if seeds is None:
        return profile_seeds(params)
    if (not isinstance(seeds, list) or len(set(seeds)) != len(seeds)
            or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)):
        raise ConfigError(f"burn.teacher.seeds: expected a list of distinct integers, e.g. [0], got {seeds!r}")
    return seeds


def teacher_seed(params: dict, seed: int) -> int:
    """The teacher a student of `seed` distils from: the teacher of its own seed when there is one,
    else the first of `burn.teacher.seeds` (one teacher shared by every seed, as the papers' fixed
    pretrained teacher)."""
    seeds = teacher_seeds(params)
    if not seeds:
        raise ConfigError("burn.teacher.seeds: empty, but a BURN or S2-BNN run needs the teacher")
    return seed if seed in seeds else seeds[0]


def key_seeds(key: str, params: dict) -> list[int]:
    """The seeds a run key is trained with: the teacher's own, every other run the profile's."""
    return teacher_seeds(params) if key in burn_teacher_keys(params) else profile_seeds(params)


def pretraining_keys(params: dict) -> list[str]:
    """Every run the profile's pipeline trains (or builds untrained): what dvc.yaml's stages write."""
    burn = params.get("burn") or {}
    stage1 = [f"burn/{burn_stage_name(r, 1)}" for r in burn.get("runs", [])]
    return [*cq_keys(params), *cq_set_keys(params), *cq_random_init_keys(params), *burn_teacher_keys(params),
            *burn_random_init_keys(params), *stage1, *burn_keys(params), *burn_appendix_keys(params)]


GROUPS = {"cq": cq_keys, "cq_sets": cq_set_keys, "cq_random_init": cq_random_init_keys, "burn": burn_keys,
          "burn_main": burn_main_keys, "burn_teacher": burn_teacher_keys, "burn_random_init": burn_random_init_keys,
          "burn_appendix": burn_appendix_keys}


def expand(entries: Iterable[str], params: dict) -> list[str]:
    """Group names (GROUPS) and run keys -> run keys, in order, without repeats."""
    keys: list[str] = []
    for entry in entries:
        found = GROUPS[entry](params) if entry in GROUPS else [entry]
        for key in found:
            parse_key(key)
            if key not in keys:
                keys.append(key)
    return keys


# --------------------------------------------------------------------------------------------
# The encoder file: what every pretraining stage writes and every evaluation reads
# --------------------------------------------------------------------------------------------

ENCODER_FIELDS = ("backbone", "backbone_kwargs")  # what evaluations need; also: binary_stage, norm, method, ...


def write_encoder(path: str | Path, meta: dict, state_dict: dict) -> None:
    """encoder.pt: ``{**meta, "state_dict": ...}``. ``meta`` names the network (``backbone`` and
    ``backbone_kwargs``: ``build_backbone(backbone, **backbone_kwargs)`` rebuilds it) and may say
    ``binary_stage`` (1 | 2, a binary network's stage) and ``norm`` (the input normalization the
    network was trained with: a preset name such as "cifar10", or [mean, std]), which every
    evaluation uses unless it is told otherwise. Written atomically. (A bare engine run, as in
    tests, may name no network; `read_encoder` then refuses the file.)"""
    from common.checkpoint import save_checkpoint

    present = [k for k in ENCODER_FIELDS if k in meta]
    if present and (len(present) < len(ENCODER_FIELDS) or not isinstance(meta["backbone"], str)
                    or not isinstance(meta["backbone_kwargs"], dict)):
        raise ConfigError(f"{path}: an encoder names its network by {list(ENCODER_FIELDS)} (a name and a mapping), "
                          f"got {{{', '.join(f'{k}: {meta[k]!r}' for k in present)}}}")
    save_checkpoint({**meta, "state_dict": state_dict}, Path(path))


def is_encoder(obj: Any) -> bool:
    """Whether a loaded file is this project's encoder (rather than a foreign state dict)."""
    return isinstance(obj, dict) and "state_dict" in obj and isinstance(obj.get("backbone"), str)


def check_encoder(ckpt: Any, where: str) -> dict:
    """A loaded encoder file, validated: every way it is not one is a ConfigError naming `where`."""
    import torch

    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "backbone" not in ckpt:
        raise ConfigError(f"{where}: not an encoder file (expected keys 'backbone', 'backbone_kwargs', 'state_dict')")
    if not isinstance(ckpt.get("backbone_kwargs") or {}, dict):
        raise ConfigError(f"{where}: 'backbone_kwargs' must be a mapping")
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError(f"{where}: 'state_dict' must map names to tensors")
    if ckpt.get("binary_stage") not in (None, 1, 2):
        raise ConfigError(f"{where}: 'binary_stage' must be 1, 2 or absent, got {ckpt['binary_stage']!r}")
    return {**ckpt, "backbone_kwargs": dict(ckpt.get("backbone_kwargs") or {})}


def read_encoder(path: str | Path) -> dict:
    """An encoder.pt as written by `write_encoder` (the one reader every evaluation goes through)."""
    from common.checkpoint import load_checkpoint

    return check_encoder(load_checkpoint(path), f"--encoder {path}")


# --------------------------------------------------------------------------------------------
# The checkpoint: the trained method's components, by name
# --------------------------------------------------------------------------------------------

# checkpoint.pt holds {"model": state dict of the engine's TrainModule, "optimizer", "state",
# "rng", ...}; the TrainModule keeps the method as its `method` attribute, so the method's state
# is under METHOD_PREFIX, and one component of it (a method attribute: "head", "backbone",
# "teacher_classifier", ...) under METHOD_PREFIX + "<name>.".
MODEL, METHOD_PREFIX = "model", "method."


def checkpoint_file(path: str | Path) -> Path:
    """A run's checkpoint.pt, given it or its run folder."""
    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path


def method_state(path: str | Path, component: str | None = None) -> dict:
    """The trained method's state from a run's checkpoint.pt (or its folder): all of it, or one
    component's, keys relative to it; {} where the checkpoint holds none (the caller decides)."""
    from common.checkpoint import load_checkpoint

    return method_state_of(load_checkpoint(checkpoint_file(path)), component)


def method_state_of(checkpoint: dict, component: str | None = None) -> dict:
    """`method_state` of a checkpoint already loaded."""
    model = checkpoint.get(MODEL)
    prefix = METHOD_PREFIX + (f"{component}." if component else "")
    return {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)} if isinstance(model, dict) else {}


def method_checkpoint(components: dict[str, dict], **extra: Any) -> dict:
    """What a checkpoint.pt holds for method components made outside the engine (an imported
    teacher's head), named as the engine names them, so `method_state` reads them alike."""
    return {MODEL: {f"{METHOD_PREFIX}{name}.{k}": v for name, state in components.items() for k, v in state.items()},
            **extra}


# --------------------------------------------------------------------------------------------
# Reading what runs wrote
# --------------------------------------------------------------------------------------------

def read_metrics(path: str | Path) -> dict | None:
    """A metrics.json as a dict; None when it is missing or unreadable (the reader decides)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pretraining_metrics(encoder: str | Path) -> dict | None:
    """The metrics.json its pretraining stage wrote beside `encoder`; None when there is none (an
    imported or hand-made encoder file). A file that is there but unreadable is one ConfigError."""
    path = Path(encoder).with_name(METRICS)
    if not path.is_file():
        return None
    metrics = read_metrics(path)
    if metrics is None:
        raise ConfigError(f"{path}: not a valid metrics file (JSON object)")
    return metrics


def seed_folders(base: Path) -> dict[int, Path]:
    """{seed: folder} of the s<seed> folders directly under `base`."""
    found = {}
    for child in sorted(base.glob("s*")) if base.is_dir() else []:
        if child.is_dir() and child.name[1:].isdigit():
            found[int(child.name[1:])] = child
    return dict(sorted(found.items()))


def run_precision(folder: Path) -> str | None:
    """The precision set a CQ run trained with, from its metrics.json (None: not recorded)."""
    metrics = read_metrics(folder / METRICS) or {}
    widths = (metrics.get("method") or {}).get("precision_set")
    return _set_label(widths) if widths else None


def _set_label(widths: list[int]) -> str:
    widths = sorted(widths)
    contiguous = widths == list(range(widths[0], widths[-1] + 1))
    return f"{widths[0]}-{widths[-1]}" if contiguous and len(widths) > 1 else ",".join(map(str, widths))


def resolve(key: str, root: Path = RUNS, under: Path | None = None) -> dict[int, Path]:
    """{seed: folder} of a run key, below `under` (default: the runs folder itself; an evaluation
    suite's folder for its results). A key with @<set> is read from p<set>/, or from the run's own
    folder when that run trained at <set> (the profile's `precision`)."""
    group, name, precision = parse_key(key)
    base = (under if under is not None else root) / group / name
    if precision is None:
        return seed_folders(base)
    own = seed_folders(base / f"p{precision}")
    if own:
        return own
    main = seed_folders(root / group / name)
    if main and run_precision(next(iter(main.values()))) == precision:
        return seed_folders(base)
    return {}


def value_at(metrics: Any, dotted: str) -> Any:
    node = metrics
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node
