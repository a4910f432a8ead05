"""One evaluation suite over the checkpoints the active profile lists: the `eval@<suite>` DVC stages.

    python -m eval.pipeline --suite linear [--params params.yaml] [--dry-run]

reads ``eval.suites.<suite>`` (or, with ``--section figures``, ``eval.figures.<suite>``: suites
whose output is pictures, e.g. t-SNE, kept apart so `dvc metrics show` reads only metrics) of
params.yaml and runs the suite's CLI (``eval.linear``,
``eval.knn``, ``eval.finetune``, ``eval.svm``, ``eval.transfer``, ``eval.detection``,
``eval.tsne``) once per (checkpoint, variant), writing each into its own folder

    runs/eval/<suite>/<group>/<run>[/p<set>]/s<seed>[/<variant>]/metrics.json
    e.g. runs/eval/linear/cq/simclr-cq_a-cifar_resnet20/s0

(the layout of common/runs.py, for every seed of the profile's `seeds`)

and a summary beside the suite's folder, the DVC metrics file of the stage, with each item's
headline number (the suite module's HEADLINE, e.g. linear top-1) or its status if it has none:

    runs/eval/<suite>.json    {"cq": {"simclr-cq_a-cifar_resnet20": {"top1": 0.31}}, ...}

so that `dvc exp show` and `dvc metrics diff` list one number per run, not every key of every
metrics file (the detail stays in the folders, which are plain outputs).

A suite's section:

    linear:
      cli: eval.linear                      # the module whose main(argv) runs one item
      checkpoints: [cq, burn]               # groups (below) or run keys (common/runs.py), e.g. burn/burn-stage2
      args: {dataset: synthetic, epochs: 5} # --key value for every item (lists -> "a,b"; dicts -> YAML)
      variants: {fp-10pct: {fraction: 0.1}} # optional: extra args per variant, one sub-folder each
      positional: [iterations=20]           # optional: positional arguments (eval.detection)
      together: true                        # optional: one call with every --encoder (eval.tsne)
      features: {dataset: synthetic_cls}    # eval.svm only: args of eval.features, run first
      snapshots: [200, 400]                 # optional: evaluate snapshots/encoder-e<N>.pt (train.snapshot_epochs)
                                            # of each run INSTEAD of encoder.pt, into .../e<N>/ (BURN Fig. 6)

A suite that reads a data set from files and names no `root` gets the params file's `data.root`
(the folder holding cifar10/, cifar100/, voc2007/, ... as ../shared/data does).

Checkpoint groups (common.runs.GROUPS), from the pretraining lists of the same params file:
``cq`` = every CQ run at `precision` (methods x [baseline] + variants x backbones), ``cq_sets`` =
the CQ runs at the other sets of ``cq.precision_sets``, ``cq_random_init`` = each CQ backbone
untrained (CQ Table 8's "No SSL Training"), ``burn`` = the final (stage 2) BURN runs of
``burn.runs``, S2-BNN and the binary baselines, ``burn_main`` = the same without the ablations
(burn-stage2, S2-BNN, baselines), ``burn_teacher`` = the FP teacher, ``burn_random_init`` = the
binary student untrained, ``burn_appendix`` = the runs of ``burn.appendix.runs`` (BURN App. B.1). Every run is evaluated on each of its seeds (the teacher: on each of
``burn.teacher.seeds``).

Every item goes through :mod:`eval.guard`: a checkpoint whose pretraining diverged gets a
metrics.json with status "not run (pretraining diverged)" instead of an evaluation.

Choices where the papers and protocols are silent:
- All items of a suite run in ONE process (the CLIs' ``main`` called in turn): a process start
  costs seconds of imports, which would dominate the smoke profile's budget. DVC therefore caches
  a suite as a whole; the feature cache (``--cache-dir``) keeps a re-run cheap.
- An item whose CLI fails (exit code != 0) fails the stage: bad settings should stop the pipeline.
- The SVM features file goes to ``runs/features/svm/<group>/<run>/s<seed>.pt`` (an intermediate, not a
  DVC output) and the low-shot sample lists beside it (``<run>.samples.json``, drawn afresh by
  every stage run: seeded, so the same lists for the same data), so the suite's folder holds only
  what the report reads (and `dvc metrics show` parses).
"""
from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path
from typing import Sequence

from common.checkpoint import write_json
from common import runs, schema
from common.config import ArgumentParser, cli_main, dump_params, read_params_file
from common.errors import ConfigError
from eval.guard import pretraining_diverged, write_not_run

RUNS = runs.RUNS
EVAL_ROOT = runs.EVAL
SUITE_FIELDS = {key.name for key in schema.SUITE.fixed()}  # a suite's fields: the schema owns them


# --------------------------------------------------------------------------------------------
# Which checkpoints
# --------------------------------------------------------------------------------------------

def expand_checkpoints(entries: Sequence[str], params: dict) -> list[str]:
    """Group names (common.runs.GROUPS) and run keys -> run keys, in order, without repeats."""
    return runs.expand(entries, params)


# --------------------------------------------------------------------------------------------
# Command lines
# --------------------------------------------------------------------------------------------

def to_argv(args: dict) -> list[str]:
    """{'cache_dir': 'x', 'options': {...}, 'ks': [1, 2]} -> ['--cache-dir', 'x', '--options', '{...}', '--ks', '1,2']."""
    argv: list[str] = []
    for key, value in args.items():
        flag = "--" + str(key).replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, dict):
            argv += [flag, dump_params(value, flow=True).strip()]
        elif isinstance(value, (list, tuple)):
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def suite_config(params: dict, suite: str, section: str = "suites") -> dict:
    suites = ((params.get("eval") or {}).get(section)) or {}
    if suite not in suites:
        raise ConfigError(f"--suite {suite}: not in eval.{section} of the params file (have {sorted(suites)})")
    cfg = suites[suite] or {}
    unknown = set(cfg) - SUITE_FIELDS
    if unknown:
        raise ConfigError(f"eval.{section}.{suite}: unknown field(s) {sorted(unknown)} (expected {sorted(SUITE_FIELDS)})")
    if cfg.get("together") and cfg.get("snapshots") is not None:
        raise ConfigError(f"eval.{section}.{suite}: 'snapshots' is for suites of one item per run, not 'together'")
    if "cli" not in cfg or "checkpoints" not in cfg:
        raise ConfigError(f"eval.{section}.{suite}: expected 'cli' and 'checkpoints'")
    return cfg


def with_data_root(args: dict, params: dict) -> dict:
    """Give a suite that reads files (a `dataset` not generated) the profile's `data.root`
    unless it names its own `root`: one key moves every suite to another data folder."""
    dataset = str(args.get("dataset", ""))
    root = (params.get("data") or {}).get("root")
    if not dataset or dataset.startswith("synthetic") or "root" in args or root is None:
        return args
    return {**args, "root": root}


def plan(params: dict, suite: str, section: str = "suites") -> list[dict]:
    """The calls of one suite: [{'cli', 'argv', 'out', 'encoders', 'features'?}], one per
    (run, seed, variant) of the profile's `seeds`; a suite drawing one picture of several runs
    (`together`) takes each run's first seed."""
    cfg = suite_config(params, suite, section)
    keys = expand_checkpoints(cfg["checkpoints"], params)
    base = dict(cfg.get("args") or {})
    positional = [str(p) for p in cfg.get("positional") or []]
    variants = cfg.get("variants") or {None: {}}
    if cfg.get("together"):
        out = EVAL_ROOT / suite
        first = [runs.runs_of(k, runs.key_seeds(k, params)[:1])[0] for k in keys]
        encoders = [str(r.encoder) for r in first]
        argv = [a for r in first for a in ("--encoder", str(r.encoder), "--name", r.name)]
        argv += to_argv({**with_data_root(base, params), "out": str(out)})
        return [{"cli": cfg["cli"], "argv": argv + positional, "out": out, "encoders": encoders}]
    calls = []
    for run in (r for k in keys for r in runs.runs_of(k, runs.key_seeds(k, params))):
        for variant, extra in variants.items():
            for epoch in snapshot_epochs(cfg, suite, section):
                encoder = str(run.encoder if epoch is None else runs.snapshot_path(run.folder, epoch))
                out = run.eval_folder(suite, variant)
                relative = run.relative
                if epoch is not None:
                    out, relative = out / runs.snapshot_label(epoch), relative / runs.snapshot_label(epoch)
                calls.append(item_call(cfg, params, base, extra, positional, encoder, out, relative))
    return calls


def snapshot_epochs(cfg: dict, suite: str, section: str) -> list[int | None]:
    """The epochs of the snapshots a suite evaluates ([None]: encoder.pt, the final network)."""
    epochs = cfg.get("snapshots")
    if epochs is None:
        return [None]
    if (not isinstance(epochs, list) or not epochs
            or any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in epochs)):
        raise ConfigError(f"eval.{section}.{suite}.snapshots: expected a list of epochs (positive integers), got {epochs!r}")
    return list(epochs)


def item_call(cfg: dict, params: dict, base: dict, extra: dict | None, positional: list[str], encoder: str,
              out: Path, relative: Path) -> dict:
    """One (run, seed, variant[, snapshot]) item of a suite; `relative` names its SVM features file."""
    call = {"cli": cfg["cli"], "out": out, "encoders": [encoder]}
    args = with_data_root({**base, **(extra or {})}, params)
    if cfg.get("features") is not None:  # eval.svm reads a features file, written first
        feats = RUNS / "features" / "svm" / relative.with_suffix(".pt")
        features = with_data_root(dict(cfg["features"]), params)
        call["features"] = ["--encoder", encoder, *to_argv({**features, "out": str(feats)})]
        call["samples_file"] = str(feats.with_suffix(".samples.json"))
        call["argv"] = to_argv({**args, "samples_file": call["samples_file"], "features": str(feats), "out": str(out)})
    else:
        call["argv"] = ["--encoder", encoder, *to_argv({**args, "out": str(out)})]
    call["argv"] += positional
    return call


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

def call_cli(module: str, argv: list[str]) -> None:
    main = getattr(importlib.import_module(module), "main")
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    if rc:
        raise SystemExit(f"error: python -m {module} {' '.join(argv)} exited with {rc}")


def run_suite(params: dict, suite: str, dry_run: bool = False, section: str = "suites") -> list[dict]:
    calls = plan(params, suite, section)
    for call in calls:
        line = f"python -m {call['cli']} {shlex.join(call['argv'])}"
        diverged = [e for e in call["encoders"] if pretraining_diverged(e)]
        if dry_run:
            print(("# skipped (pretraining diverged): " if diverged else "") + line)
            continue
        if diverged:
            write_not_run(call["out"], diverged[0])
            print(f"{call['out']}: not run (pretraining of {diverged[0]} diverged)")
            continue
        missing = [e for e in call["encoders"] if not Path(e).is_file()]
        if missing:
            raise ConfigError(f"{missing[0]}: encoder not found (has its pretraining stage run?)")
        if "features" in call:
            call_cli("eval.features", call["features"])
            # drawn afresh (seeded, so the same lists) so a stale file of other data never stops the run
            Path(call["samples_file"]).unlink(missing_ok=True)
        call_cli(call["cli"], call["argv"])
    return calls


def summary_path(suite: str) -> Path:
    return EVAL_ROOT / f"{suite}.json"


def summarize(calls: list[dict], suite: str) -> dict:
    """{group: {run: {[variant:] {metric: value}}}}: each item's headline number, or its status."""
    summary: dict = {}
    for call in calls:
        headline = getattr(importlib.import_module(call["cli"]), "HEADLINE", None)
        metrics_file = Path(call["out"]) / runs.METRICS
        if headline is None or not metrics_file.is_file():
            continue
        metrics = runs.read_metrics(metrics_file) or {}
        value = runs.value_at(metrics, headline)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            value = metrics.get("status", "no value")
        node = summary
        for part in Path(call["out"]).relative_to(EVAL_ROOT / suite).parts:
            node = node.setdefault(part, {})
        node[headline.rsplit(".", 1)[-1]] = value
    return summary


def load_params(path: str | Path) -> dict:
    """The parameter file, every key and kind checked by the schema (common/schema.py)."""
    from common.schema import check_params

    params = read_params_file(path, "--params")
    check_params(params)
    return params


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m eval.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True, help="a key of eval.suites in the params file")
    parser.add_argument("--section", default="suites",
                        help="eval.<section> holding the suite: suites (metrics) or figures (t-SNE)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dry-run", action="store_true", help="print the calls, run nothing")
    args = parser.parse_args(argv)
    calls = run_suite(load_params(args.params), args.suite, args.dry_run, args.section)
    if not args.dry_run and args.section == "suites":
        write_json(summarize(calls, args.suite), summary_path(args.suite))
    print(f"eval suite {args.suite}: {len(calls)} item(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
