"""Pretrain for the BURN paper: BURN (either stage), its ablations, the binary-network baselines,
and the FP teacher.

    python -m burn.pretrain --method burn --variant burn --backbone reactnet_a --stage 1 \
        --teacher runs/burn/teacher-mocov2-resnet18/s0 --out runs/burn/burn-stage1/s0
    python -m burn.pretrain --method burn --variant burn --backbone reactnet_a --stage 2 \
        --teacher runs/burn/teacher-mocov2-resnet18/s0 --init runs/burn/burn-stage1/s0 \
        --out runs/burn/burn-stage2/s0
    python -m burn.pretrain --method s2bnn --backbone reactnet_a --teacher TEACHER --out DIR
    python -m burn.pretrain --method mocov2 --backbone resnet18 --out DIR      # the FP teacher
    python -m burn.pretrain --method byol --backbone reactnet_a --out DIR      # a baseline
    python -m burn.pretrain --appendix infomin-weak_views-reactnet_a --out DIR  # BURN App. B.1

Methods: burn, s2bnn (``burn.s2bnn``) and every registered base method
(``common.methods.registry``: supervised, byol, swav, mocov2, mocov2_tuned (MoCo v2 with S2-BNN's
settings for binary networks, given in the profile), simclrv2, infomin). Everything comes from the
``burn`` section of the parameter file (default params.yaml) with ``key.sub=value`` overrides:
``dataset``, ``backbone_options.<backbone>``, ``views.<method>`` (a recipe of
``common.views.build_views`` plus its options), ``methods.<method>`` (constructor arguments),
``variants.<name>`` (BURN's named configurations, merged over ``methods.burn``),
``baseline_variants.<method>.<name>`` (named configurations of a baseline, ``--variant <name>``:
``views`` names another entry of ``views``, every other key is merged over ``methods.<method>``;
e.g. BURN Appendix B.1's InfoMin with weaker views or fewer negatives), ``train`` (the
engine's TrainConfig, with ``train_by_method.<method>`` merged over it) and
``teacher.train`` (settings merged last for the run started with ``--as-teacher``, the FP
teacher; with ``teacher.file`` set, that run imports the file instead of training),
``appendix.train`` (settings merged last for an ``--appendix`` run), ``teacher_file_backbone`` (the architecture of a torchvision / MoCo v2 teacher file; this
project's encoder.pt says its own).

--stage: the binary stage of a binary backbone (1: binary activations, FP weights; 2: fully
binary). BURN needs it; stage 2 also needs --init (stage 1's run folder or checkpoint.pt). The
baselines default to 2 (one fully binary run); a baseline listed in ``burn.two_stage`` runs both
stages in one call, as S2-BNN's recipe does (stage 1 in --out/stage1/, then stage 2 from all it
trained into --out). An FP backbone (the teacher) takes no stage.
--appendix <method>-<variant>-<backbone>: a run of BURN Appendix B.1 (an entry of
``burn.appendix.runs``; variant ``base``: the method's own settings), in place of --method,
--variant and --backbone: InfoMin with weaker views (Fig. 6) or fewer negatives, on ReActNet-A or
ResNet-50 (Fig. 7).
--teacher: BURN's and S2-BNN's FP teacher: a run folder / encoder.pt of this project, a MoCo v2
checkpoint or a torchvision state dict (``burn.teacher``); a teacher run's folder holding s<seed>/
folders gives the seed this run distils from (the teacher of its own seed, else the first of
``burn.teacher.seeds``: one teacher shared by all seeds).

Writes under --out, through ``common.engine.train``: encoder.pt (the binary / FP feature
extractor, with meta ``backbone``, ``backbone_kwargs``, ``binary_stage`` saying how to rebuild
it: ``build_backbone(backbone, **backbone_kwargs)`` then ``set_binary_stage(model,
binary_stage)``), checkpoint.pt, metrics.json and dvclive/ curves (gradient norms per group).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch

from burn.method import BURN
from burn.s2bnn import S2BNN
from burn.teacher import load_fp_head, load_fp_trunk, load_state_strict, read_head_state
from common import runs
from common.backbones import build_backbone
from common.binary import binary_convs, set_binary_stage
from common.checkpoint import save_checkpoint, write_json
from common.config import ArgumentParser, cli_main, load_params, section, seed_of, train_settings
from common.data import build_dataset
from common.engine import TrainConfig, train
from common.errors import ConfigError
from common.methods import registry
from common.provenance import provenance
from common.views import build_views

@dataclass(frozen=True)
class RunSpec:
    """One run of this CLI, as its command line names it."""

    method: str
    backbone: str
    out: str
    stage: int | None = None       # a binary network's stage (1 | 2); None: the method's default
    teacher: str | None = None     # BURN / S2-BNN: the FP teacher (run folder, encoder.pt or file)
    init: str | None = None        # a stage-2 run: stage 1's run folder or checkpoint.pt
    variant: str | None = None     # burn.variants / burn.baseline_variants.<method>
    as_teacher: bool = False       # this run is the FP teacher (burn.teacher)
    appendix: bool = False         # a run of burn.appendix.runs (its extra train settings)


def methods() -> tuple[str, ...]:
    """BURN, S2-BNN, and every registered base method (a baseline on the binary network, or the
    FP teacher)."""
    return ("burn", "s2bnn", *registry.list_methods())


def views_for(cfg: dict, method: str):
    options = dict(section(cfg, f"views.{method}", where="burn"))
    recipe = options.pop("recipe", None)
    if recipe is None:
        raise ConfigError(f"params: burn.views.{method} needs a 'recipe'")
    return build_views(recipe, **options)


def method_kwargs(cfg: dict, method: str, variant: str | None) -> tuple[str, dict]:
    """(the key of ``views`` the run uses, the method's constructor arguments) for a method and
    its named configuration, if any: ``variants`` for BURN, ``baseline_variants.<method>`` else."""
    kwargs = dict(cfg.get("methods", {}).get(method) or {})
    if method == "burn":
        variants = cfg.get("variants") or {}
        if variant not in variants:
            raise ConfigError(f"--variant {variant!r}: expected one of {sorted(variants)} (burn.variants)")
        kwargs.update(variants[variant] or {})
        return method, kwargs
    if variant is None:
        return method, kwargs
    variants = (cfg.get("baseline_variants") or {}).get(method) or {}
    if variant not in variants:
        raise ConfigError(f"--variant {variant!r}: expected one of {sorted(variants)} (burn.baseline_variants.{method})")
    spec = dict(variants[variant] or {})
    views = spec.pop("views", method)
    kwargs.update(spec)
    return views, kwargs


def build_student(cfg: dict, backbone_name: str) -> tuple[torch.nn.Module, dict]:
    kwargs = dict(cfg.get("backbone_options", {}).get(backbone_name, {}) or {})
    return build_backbone(backbone_name, **kwargs), kwargs


def load_teacher(cfg: dict, path: str):
    spec = cfg.get("teacher_file_backbone") or {}
    return load_fp_trunk(path, spec.get("name", "resnet50"), spec.get("options") or {})


def build_method(params: dict, spec: RunSpec, total_steps: int | None):
    """(method, facts for the metrics / encoder meta) of one run."""
    cfg = section(params, "burn")
    method, backbone_name, stage, teacher, init, variant = (spec.method, spec.backbone, spec.stage, spec.teacher,
                                                            spec.init, spec.variant)
    if method not in methods():
        raise ConfigError(f"--method {method!r}: expected one of {', '.join(methods())}")
    if (teacher is not None) != (method in ("burn", "s2bnn")):
        raise ConfigError(f"--teacher: {'required' if teacher is None else 'not used'} for --method {method}")
    if init is not None and stage != 2:
        raise ConfigError("--init: only for a stage-2 run (--stage 2), from stage 1's run")
    torch.manual_seed(seed_of(params))  # same initial student for every method
    student, backbone_kwargs = build_student(cfg, backbone_name)
    binary = bool(binary_convs(student))
    if not binary and stage is not None:
        raise ConfigError(f"--stage: {backbone_name} is a full-precision network; drop --stage")
    if binary and stage is None:
        if method == "burn":
            raise ConfigError("--stage: required for --method burn (1, then 2 with --init)")
        stage = 2
    if binary:
        set_binary_stage(student, stage)  # validates the value
    views_key, kwargs = method_kwargs(cfg, method, (variant or "burn") if method == "burn" else variant)
    views = views_for(cfg, views_key)
    facts = {"backbone": backbone_name, "backbone_kwargs": backbone_kwargs, "method": method,
             "binary_stage": stage if binary else None}
    if method == "burn":
        if stage == 2 and init is None:
            raise ConfigError("--init: BURN stage 2 starts from stage 1; give stage 1's run folder")
        trunk, info = load_teacher(cfg, teacher)
        model = BURN(student, trunk, views, stage=stage, total_steps=total_steps, **kwargs)
        facts.update(variant=variant or "burn", teacher=info)
        if init is not None:
            facts["init"] = model.init_from_stage1(init)
        return model, facts
    if variant is not None:
        facts["variant"] = variant
    if method == "s2bnn":
        trunk, info = load_teacher(cfg, teacher)
        model = S2BNN(student, trunk, load_fp_head(teacher), views, stage=stage, **kwargs)
        facts["teacher"] = info
    else:
        model = registry.build_method(method, student, views, **kwargs)
    if init is not None:
        facts["init"] = load_stage1(model, init)
    return model, facts


def load_stage1(model: torch.nn.Module, path: str | Path) -> dict:
    """Stage 2 of a two-stage baseline starts from everything stage 1 trained (the networks, heads,
    momentum encoders, queues), as S2-BNN's step 2 loads its step-1 model; optimizer and online
    probe start afresh."""
    path = runs.checkpoint_file(path)
    load_state_strict(model, runs.method_state(path), path, "--init")
    return {"path": str(path), "loaded": "all"}


def import_teacher(params: dict, backbone_name: str, out: str) -> dict:
    """`burn.teacher.file` set: the teacher is a released checkpoint (the paper's MoCo v2
    ResNet-50, 800 epochs), not trained here. Its trunk goes to ``out/encoder.pt`` and its MoCo v2
    head to ``out/checkpoint.pt`` in this project's formats, so the BURN and S2-BNN stages read it
    like a teacher trained by the pipeline."""
    cfg = section(params, "burn")
    file = Path(cfg["teacher"]["file"])
    if not file.is_file():
        raise ConfigError(f"burn.teacher.file {file}: not found")
    kwargs = (cfg.get("backbone_options") or {}).get(backbone_name) or {}
    trunk, info = load_fp_trunk(file, backbone_name, kwargs)
    try:  # a MoCo v2 file carries its projection head (S2-BNN's target); a BYOL/torchvision one not
        head = {"head": read_head_state(file)}
    except ConfigError:
        head = {}
    out_dir = Path(out)
    # the released teachers were trained on ImageNet, with its normalization
    runs.write_encoder(out_dir / runs.ENCODER, {"backbone": backbone_name, "backbone_kwargs": dict(kwargs),
                                                "method": "mocov2", "norm": "imagenet"}, trunk.state_dict())
    save_checkpoint(runs.method_checkpoint(head, imported_from=str(file)), out_dir / runs.CHECKPOINT)
    metrics = {"status": runs.OK, "step": 0, "final_loss": None, "imported_from": info,
               "provenance": provenance(params, torch.device("cpu"), stage="burn.pretrain --as-teacher",
                                        profile=params.get("profile", "unknown"))}
    write_json(metrics, out_dir / runs.METRICS)
    return metrics


def resolve_teacher(params: dict, teacher: str | None) -> str | None:
    """A teacher run's folder (holding s<seed>/ folders) -> the seed folder this run distils from
    (runs.teacher_seed: its own seed's teacher, else the first of burn.teacher.seeds)."""
    if teacher is None or not runs.seed_folders(Path(teacher)):
        return teacher
    folder = Path(teacher) / runs.seed_folder(runs.teacher_seed(params, seed_of(params)))
    if not folder.is_dir():
        raise ConfigError(f"--teacher {teacher}: no teacher run {folder.name} there (burn.teacher.seeds)")
    return str(folder)


def run(params: dict, spec: RunSpec) -> dict:
    cfg = section(params, "burn")
    spec = replace(spec, teacher=resolve_teacher(params, spec.teacher))
    if spec.as_teacher and (cfg.get("teacher") or {}).get("file"):
        return import_teacher(params, spec.backbone, spec.out)
    if spec.method in runs.two_stage(cfg) and not spec.as_teacher:
        if spec.stage is not None or spec.init is not None:
            raise ConfigError(f"--stage / --init: {spec.method} is in burn.two_stage, which runs both stages itself")
        first = Path(spec.out) / runs.STAGE1
        stage1 = run_stage(params, replace(spec, out=str(first), stage=1))
        final = run_stage(params, replace(spec, stage=2, init=str(first)))
        final["stage1"] = {k: stage1.get(k) for k in ("status", "step", "seconds", "final_loss")}
        write_json(final, Path(spec.out) / runs.METRICS)
        return final
    return run_stage(params, spec)


def run_stage(params: dict, spec: RunSpec) -> dict:
    """One training run (one stage) of one method."""
    cfg = section(params, "burn")
    method, backbone_name, teacher, init = spec.method, spec.backbone, spec.teacher, spec.init
    settings = train_settings(params, "burn", method)
    if spec.as_teacher:  # the FP teacher may train longer than the binary runs of the same method
        settings.update((cfg.get("teacher") or {}).get("train") or {})
    if spec.appendix:  # settings only the Appendix B.1 runs take (none in the paper profiles)
        settings.update((cfg.get("appendix") or {}).get("train") or {})
    train_cfg = TrainConfig.from_dict({"seed": seed_of(params), **settings}, where="burn.train")
    model, facts = build_method(params, spec, train_cfg.steps)
    data = section(cfg, "dataset", where="burn")
    root = data.get("root", params.get("data", {}).get("root"))
    dataset = build_dataset(data["name"], root, data.get("split", "train"), **data.get("options", {}))
    run_params = {"burn": cfg, "seed": seed_of(params), "method": method, "backbone": backbone_name,
                  "stage": facts["binary_stage"], "variant": facts.get("variant"),
                  "teacher": str(teacher) if teacher else None, "init": str(init) if init else None}
    meta = {k: facts[k] for k in ("backbone", "backbone_kwargs", "method", "binary_stage")}
    meta.update({k: facts[k] for k in ("variant",) if k in facts})
    info = {"dataset": data["name"], "profile": params.get("profile", "unknown"), "stage": "burn.pretrain",
            **{k: facts[k] for k in ("teacher", "init") if k in facts}}
    return train(model, dataset, train_cfg, spec.out, params=run_params, encoder_meta=meta, run_info=info)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m burn.pretrain", description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=methods())
    parser.add_argument("--backbone")
    parser.add_argument("--appendix", default=None, metavar="METHOD-VARIANT-BACKBONE",
                        help="a run of burn.appendix.runs (BURN Appendix B.1), instead of --method/--variant/--backbone")
    parser.add_argument("--out", required=True)
    parser.add_argument("--stage", type=int, choices=(1, 2), default=None)
    parser.add_argument("--variant", default=None, help="BURN configuration in burn.variants (default: burn), or a "
                        "baseline's in burn.baseline_variants.<method>")
    parser.add_argument("--teacher", default=None, help="FP teacher: run folder, encoder.pt, MoCo v2 or torchvision file")
    parser.add_argument("--init", default=None, help="BURN stage 2: stage 1's run folder or checkpoint.pt")
    parser.add_argument("--as-teacher", action="store_true",
                        help="this run is the FP teacher: it imports burn.teacher.file if set, else trains "
                             "with burn.teacher.train merged over its settings")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("overrides", nargs="*", help="key.sub=value settings, e.g. burn.train.steps=100")
    args = parser.parse_args(argv)
    if args.appendix is not None:
        if args.method or args.backbone or args.variant:
            raise ConfigError("--appendix names the method, variant and backbone; drop --method/--variant/--backbone")
        args.method, args.variant, args.backbone = runs.appendix_parts(args.appendix)
        if args.method not in registry.list_methods():
            raise ConfigError(f"--appendix {args.appendix}: method {args.method!r} is not a base method "
                              f"({', '.join(registry.list_methods())})")
    elif not args.method or not args.backbone:
        raise ConfigError("--method and --backbone are required (or --appendix)")
    for name in ("teacher", "init"):
        value = getattr(args, name)
        if value is not None and not Path(value).exists():
            raise ConfigError(f"--{name} {value}: not found")
    params = load_params(args.params, args.overrides)
    spec = RunSpec(args.method, args.backbone, args.out, args.stage, args.teacher, args.init, args.variant,
                   args.as_teacher, appendix=args.appendix is not None)
    metrics = run(params, spec)
    print(f"{args.out}: {metrics['status']} at step {metrics['step']}, loss {metrics['final_loss']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
