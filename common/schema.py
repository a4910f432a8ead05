"""The parameter schema: every key a parameter file may hold, down to the sections whose keys are
fixed, with its kind, what it means and where it comes from. `check_keys` refuses a key nobody
reads (one line naming the nearest known key), `describe` prints the schema:

    python -m common.config --describe [section]      e.g. --describe cq.quant

A mapping whose keys are names the profile chooses (`cq.views.<method>`, `eval.suites.<suite>`,
`burn.variants.<variant>`, ...) is free-form here; its reader checks its entries (a method's
arguments, a suite's fields), as the values' types and ranges are checked where they are read
(`common.engine.TrainConfig` for every `train` section, `common.profile_check` for the profile).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from common.errors import ConfigError


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # what the value is: a name, a number, a list, a mapping, ...
    doc: str
    source: str = ""  # the paper's or the protocol's section it comes from
    keys: tuple["Key", ...] | None = None  # the keys of a mapping with fixed keys; None: free-form


def _cq_methods() -> list[str]:
    from common.methods import registry

    return registry.cq_methods()


# Keys whose names come from a registry, not from this file: (section, names, what each holds).
DYNAMIC: dict[str, tuple[Callable[[], list[str]], str]] = {
    "cq": (_cq_methods, "the settings of a registered CQ base method (its constructor's arguments)"),
}

DATASET = (Key("name", "name", "the registered data set (common/data)"),
           Key("root", "path", "its folder (default: data.root)"),
           Key("split", "name", "the split pretraining reads"),
           Key("options", "mapping", "the data set's own options (e.g. load_size, crops, decode)"))

TRAIN_DOC = "the training loop's settings (common.engine.TrainConfig: batch, steps or epochs, optimizer, schedule, ...)"

CQ = (
    Key("dataset", "mapping", "the pretraining data", "CQ appendix A", DATASET),
    Key("methods", "list", "the base SSL methods CQ augments (simclr, byol)", "CQ Sec. 3.4"),
    Key("variants", "list", "the CQ variants trained beside each baseline (cq_a, cq_b, cq_c, cq_quant)", "CQ Sec. 3.4, Table 7"),
    Key("backbones", "list", "the networks pretrained"),
    Key("backbone_options", "mapping", "each network's constructor arguments, by network name"),
    Key("quant", "mapping", "the quantizer of weights and activations", "CQ Eq. 9", (
        Key("mode", "name", "rounding of the quantizer: floor | round", "CQ Eq. 9"),
        Key("grad_bits", "integer or null", "bits of the quantized gradients (null: full precision)"),
        Key("switchable_bn", "true/false", "one BatchNorm per precision"),
        Key("keep_fp", "list or null", "layers kept in full precision"),
        Key("target_precision", "name", "the precision of the target branch: match | fp"))),
    Key("bn_reestimation", "mapping", "BatchNorm statistics re-estimated at the end of training", "CQ Sec. 4.1", (
        Key("enabled", "true/false", "re-estimate or not"),
        Key("batches", "integer", "training batches read"))),
    Key("precision_sets", "mapping", "other precision sets trained beside `precision`", "CQ Tables 1, 9", (
        Key("sets", "list", "the sets, e.g. [4-16, 8-16]"),
        Key("variants", "list", "the variants trained at each set"),
        Key("methods", "list", "the base methods trained at each set"))),
    Key("views", "mapping", "each base method's augmentation recipe and options", "CQ appendix A"),
    Key("train", "mapping", TRAIN_DOC, "CQ appendix A"),
    Key("train_by_method", "mapping", "`train` settings of one base method laid over `train`"),
)

BURN = (
    Key("dataset", "mapping", "the pretraining data", "BURN Sec. 4", DATASET),
    Key("student", "name", "the binary network of every BURN table (reactnet_a)", "BURN Sec. 3"),
    Key("teacher", "mapping", "the full-precision feature extractor, frozen", "BURN Sec. 3.1", (
        Key("method", "name", "the SSL method that trains it (when trained, not imported)"),
        Key("backbone", "name", "its network"),
        Key("seeds", "list", "the seeds it is trained or imported at"),
        Key("file", "path or null", "a released or your own weights file to import instead of training"),
        Key("train", "mapping", "`train` settings of its own run, laid over burn.train"))),
    Key("teacher_file_backbone", "mapping", "the network an imported teacher file holds", "", (
        Key("name", "name", "the network"), Key("options", "mapping", "its constructor arguments"))),
    Key("backbone_options", "mapping", "each network's constructor arguments, by network name"),
    Key("views", "mapping", "each method's augmentation recipe and options", "BURN Sec. 4"),
    Key("methods", "mapping", "each method's settings (BURN's own and the baselines')", "BURN Sec. 3, Eqs. 1-4"),
    Key("variants", "mapping", "BURN's configurations: settings laid over methods.burn", "BURN Tables 5-7"),
    Key("runs", "list", "the configurations trained"),
    Key("distill", "list", "baselines distilled from the teacher (S2-BNN)", "BURN Table 2"),
    Key("baselines", "list", "the other baselines trained"),
    Key("two_stage", "list", "baselines trained in ReActNet's two steps", "BURN Sec. 3.3"),
    Key("baseline_variants", "mapping", "variants of a baseline method, by method", "BURN appendix B.1"),
    Key("appendix", "mapping", "the appendix runs", "BURN appendix B.1", (
        Key("runs", "list", "<method>-<variant>-<backbone> descriptors"),
        Key("train", "mapping", "`train` settings only these runs take"))),
    Key("train", "mapping", TRAIN_DOC, "BURN Sec. 4"),
    Key("train_by_method", "mapping", "`train` settings of one method laid over `train`"),
)

SCHEMA = Key("", "mapping", "a parameter file (a profile)", "", (
    Key("profile", "name", "the profile's kind: smoke | mini | paper | study (common/profile_check.py)"),
    Key("precision", "precision set", "CQ's precision set of every run, e.g. 6-16 (`dvc exp run -S precision=4-16`)",
        "CQ Sec. 3.3"),
    Key("seeds", "list", "every pretraining run and its evaluations, once per seed (common/runs.py)"),
    Key("seed", "integer", "the one seed of a stage (the pipeline passes seed=N)"),
    Key("data", "mapping", "where the data sets are", "", (
        Key("root", "path", "the folder holding cifar10/, cifar100/, voc2007/, ... (suites and data sets without a root)"),)),
    Key("cq", "mapping", "Contrastive Quant pretraining", "CQ", CQ),
    Key("burn", "mapping", "BURN pretraining and its baselines", "BURN", BURN),
    Key("eval", "mapping", "the evaluation suites (eval/pipeline.py)", "", (
        Key("suites", "mapping", "suites whose output is metrics, by name: {cli, checkpoints, args, ...}"),
        Key("figures", "mapping", "suites whose output is pictures, by name"))),
    Key("report_mapping", "path", "the report mapping (reports/mapping/<profile>.yaml)"),
    Key("report", "mapping", "the composed report mapping (reports/mapping.py puts it here)"),
))


def _known(key: Key, path: str) -> dict[str, Key | None]:
    names: dict[str, Key | None] = {k.name: k for k in key.keys or ()}
    if path in DYNAMIC:
        names.update((name, None) for name in DYNAMIC[path][0]() if name not in names)
    return names


def nearest(name: str, known: Sequence[str]) -> str | None:
    """The known key closest in spelling to `name`, if any is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def check_keys(params: Any, key: Key = SCHEMA, path: str = "") -> None:
    """Every key of `params` is one the schema knows, in every mapping with fixed keys: else one
    ConfigError naming the key and the nearest known one."""
    if key.keys is None or params is None:
        return
    where = path or "the parameter file"
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {params!r}")
    known = _known(key, path)
    for name, value in params.items():
        full = f"{path}.{name}" if path else str(name)
        if name not in known:
            guess = nearest(str(name), known)
            hint = f"did you mean {(path + '.' if path else '') + guess}?" if guess else f"known: {', '.join(known)}"
            raise ConfigError(f"{full}: unknown setting ({hint})")
        if known[name] is not None:
            check_keys(value, known[name], full)


def find(section: str) -> Key:
    """The schema entry at a dotted path ('' is the whole file)."""
    key = SCHEMA
    for part in filter(None, section.split(".")):
        known = {k.name: k for k in key.keys or ()}
        if part not in known:
            raise ConfigError(f"{section}: not a section of the schema (known here: {', '.join(known) or 'none'})")
        key = known[part]
    return key


def describe(section: str = "") -> str:
    """Each key of a section (and of its fixed sub-sections): kind, meaning, source."""
    lines: list[str] = []

    def walk(key: Key, path: str, depth: int) -> None:
        for sub in key.keys or ():
            full = f"{path}.{sub.name}" if path else sub.name
            source = f"  [{sub.source}]" if sub.source else ""
            lines.append(f"{'  ' * depth}{full} ({sub.kind}): {sub.doc}{source}")
            walk(sub, full, depth + 1)
        if path in DYNAMIC:
            lines.append(f"{'  ' * depth}{path}.<{', '.join(DYNAMIC[path][0]())}> (mapping): {DYNAMIC[path][1]}")

    top = find(section)
    if top.keys is None:
        return f"{section} ({top.kind}): {top.doc} (free-form: its reader checks its entries)"
    walk(top, section, 0)
    return "\n".join(lines)
