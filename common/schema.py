"""The parameter schema: every key a parameter file may hold, down to the sections whose keys are
fixed, with its kind, what it means and where it comes from. `check_params` refuses a key nobody
reads (one line naming the nearest known key) and a value of the wrong kind, `describe` prints
the schema:

    python -m common.config --describe [section]      e.g. --describe cq.quant

A mapping whose keys are names the profile chooses (`cq.views.<method>`, `eval.suites.<suite>`,
`burn.variants.<variant>`, ...) is free-form here; its reader checks its entries (a method's
arguments, a suite's fields, `common.engine.TrainConfig` every `train` section). Every key the
schema fixes also has its kind checked (and its choices and range where it has them), so a value
of the wrong kind is refused by `check_params` before any stage reads it: `load_params` (every
CLI), `common.profile_check` (the pipeline's first stage) and `common.profiles` (the renderer)
call it.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from common.errors import ConfigError

REQUIRED = object()  # a key with no default: the profile must give it, or the run has none


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_text(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _precision_set_fault(v: Any) -> str | None:
    from common.quant import parse_precision_set

    try:
        parse_precision_set(v)
    except ConfigError as err:
        return str(err).partition(": ")[2] or str(err)  # the parser's words, without its own key
    return None


def _is(test: Callable[[Any], bool], what: str) -> Callable[[Any], str | None]:
    return lambda v: None if test(v) else f"expected {what}, got {v!r}"


def _each(test: Callable[[Any], bool], what: str) -> Callable[[Any], str | None]:
    return _is(lambda v: isinstance(v, list) and all(test(x) for x in v), what)


def _precision_sets_fault(v: Any) -> str | None:
    if not isinstance(v, list):
        return f"expected a list of precision sets, got {v!r}"
    return next(filter(None, map(_precision_set_fault, v)), None)


# The kinds a key's value can be, by the name `describe` prints: what is wrong with a value (None: nothing).
KINDS: dict[str, Callable[[Any], str | None]] = {
    "name": _is(_is_text, "a name"),
    "path": _is(_is_text, "a path"),
    "path or null": _is(lambda v: v is None or _is_text(v), "a path or null"),
    "integer": _is(_is_int, "an integer"),
    "integer or null": _is(lambda v: v is None or _is_int(v), "an integer or null"),
    "true/false": _is(lambda v: isinstance(v, bool), "true or false"),
    "precision set": _precision_set_fault,
    "list": _is(lambda v: isinstance(v, list), "a list"),
    "list or null": _is(lambda v: v is None or isinstance(v, list), "a list or null"),
    "list of names": _each(_is_text, "a list of names"),
    "list of integers": _each(_is_int, "a list of integers"),
    "list of precision sets": _precision_sets_fault,
    "mapping": _is(lambda v: v is None or isinstance(v, dict), "a mapping"),  # null: an empty section
    "setting": lambda v: None,  # a field of the dataclass that reads the section, which checks it
}


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # one of KINDS
    doc: str
    source: str = ""  # the paper's or the protocol's section it comes from
    # the keys of a mapping with fixed keys (a function: the fields of the dataclass that reads it);
    # None: free-form, unless `each` is set
    keys: tuple["Key", ...] | Callable[[], tuple["Key", ...]] | None = None
    # a mapping of names the profile chooses: every value's schema, or a function of the name
    # giving it (None: that name's value is free-form)
    each: "Key | Callable[[str], Key | None] | None" = None
    choices: Callable[[], Sequence[str]] | None = None  # a name's (or each listed name's) allowed values
    at_least: int | None = None  # an integer's smallest value
    at_most: int | None = None  # and its largest
    default: Any = REQUIRED  # what the reader takes when the key is absent

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"schema key {self.name!r}: kind {self.kind!r} is not one of {list(KINDS)}")

    def fixed(self) -> tuple["Key", ...] | None:
        """The keys this mapping may hold (None: any)."""
        return self.keys() if callable(self.keys) else self.keys

    def fault(self, value: Any) -> str | None:
        """What is wrong with `value` for this key (None: nothing)."""
        fault = KINDS[self.kind](value)
        if fault:
            return fault
        if self.choices is not None and value is not None:
            allowed = list(self.choices())
            bad = [v for v in (value if isinstance(value, list) else [value]) if v not in allowed]
            if bad:
                return f"{bad[0]!r} is not one of {' | '.join(map(str, allowed))}"
        if _is_int(value) and not ((self.at_least is None or value >= self.at_least)
                                   and (self.at_most is None or value <= self.at_most)):
            return f"expected an integer in {self.range_text()}, got {value!r}"
        return None

    def range_text(self) -> str:
        low = "" if self.at_least is None else str(self.at_least)
        high = "" if self.at_most is None else str(self.at_most)
        return f"{low}..{high}" if (low or high) else ""


def dataclass_keys(cls: type, where: str) -> tuple["Key", ...]:
    """The fields of a settings dataclass as keys (kind `setting`: the dataclass checks the value
    and its range when it is built), each with its type and default."""
    from dataclasses import MISSING, fields

    return tuple(Key(f.name, "setting", f"{where}.{f.name}: {f.type}",
                     default=f.default if f.default is not MISSING else REQUIRED) for f in fields(cls))


def _train_keys() -> tuple["Key", ...]:
    from common.engine import TrainConfig

    return dataclass_keys(TrainConfig, "common.engine.TrainConfig")


def _quant_modes() -> Sequence[str]:
    from common.quant import MODES

    return MODES


def _cq_methods() -> list[str]:
    from common.methods import registry

    return registry.cq_methods()


def method_key(name: str) -> "Key | None":
    """The settings of the registered method `name`: its constructor's arguments (but the backbone
    and the views), with the registry's defaults; None for a method the registry does not hold
    (BURN's own and S2-BNN, whose readers check them)."""
    import inspect

    from common.methods import registry

    entry = registry.METHODS.get(name)
    if entry is None:
        return None
    keys = tuple(Key(arg, "setting", f"{entry.cls.__module__}.{entry.cls.__name__}({arg}: {p.annotation})",
                     default=entry.defaults.get(arg, p.default if p.default is not p.empty else REQUIRED))
                 for arg, p in inspect.signature(entry.cls).parameters.items() if arg not in ("backbone", "views"))
    return Key(name, "mapping", f"the settings of {name} (its constructor's arguments)", keys=keys)


# Keys whose names come from a registry, not from this file: (section, names, what each holds).
DYNAMIC: dict[str, tuple[Callable[[], list[str]], str]] = {
    "cq": (_cq_methods, "the settings of a registered CQ base method (its constructor's arguments)"),
}

DATASET = (Key("name", "name", "the registered data set (common/data)"),
           Key("root", "path", "its folder (default: data.root)"),
           Key("split", "name", "the split pretraining reads", default="train"),
           Key("options", "mapping", "the data set's own options (e.g. load_size, crops, decode)"))

TRAIN_DOC = "the training loop's settings (common.engine.TrainConfig: batch, steps or epochs, optimizer, schedule, ...)"

CQ = (
    Key("dataset", "mapping", "the pretraining data", "CQ appendix A", DATASET),
    Key("methods", "list of names", "the base SSL methods CQ augments (simclr, byol)", "CQ Sec. 3.4"),
    Key("variants", "list of names", "the CQ variants trained beside each baseline", "CQ Sec. 3.4, Table 7"),
    Key("backbones", "list of names", "the networks pretrained"),
    Key("backbone_options", "mapping", "each network's constructor arguments, by network name"),
    Key("quant", "mapping", "the quantizer of weights and activations", "CQ Eq. 9", (
        Key("mode", "name", "the quantizer: floor (CQ Eq. 9) or cpt (CPT's, with range EMAs)", "CQ Eq. 9",
            choices=_quant_modes, default="floor"),
        Key("grad_bits", "integer or null", "bits of the quantized gradients (null: full precision)",
            at_least=1, at_most=31, default=None),
        Key("switchable_bn", "true/false", "one BatchNorm per precision", default=False),
        Key("keep_fp", "list or null", "layers kept in full precision (null: the backbone's first and last)", default=None),
        Key("target_precision", "name", "the precision of the target branch: match | fp (cq.method checks)",
            default="match"))),
    Key("bn_reestimation", "mapping", "BatchNorm statistics re-estimated at the end of training", "CQ Sec. 4.1", (
        Key("enabled", "true/false", "re-estimate or not", default=True),
        Key("batches", "integer", "training batches read (default: cq.method.BN_REESTIMATION_BATCHES)",
            at_least=1))),
    Key("precision_sets", "mapping", "other precision sets trained beside `precision`", "CQ Tables 1, 9", (
        Key("sets", "list of precision sets", "the sets, e.g. [4-16, 8-16]"),
        Key("variants", "list of names", "the variants trained at each set"),
        Key("methods", "list of names", "the base methods trained at each set"))),
    Key("views", "mapping", "each base method's augmentation recipe and options", "CQ appendix A"),
    Key("train", "mapping", TRAIN_DOC, "CQ appendix A", _train_keys),
    Key("train_by_method", "mapping", "`train` settings of one base method laid over `train`, by method",
        each=Key("<method>", "mapping", TRAIN_DOC, keys=_train_keys)),
)

BURN = (
    Key("dataset", "mapping", "the pretraining data", "BURN Sec. 4", DATASET),
    Key("student", "name", "the binary network of every BURN table (reactnet_a)", "BURN Sec. 3"),
    Key("teacher", "mapping", "the full-precision feature extractor, frozen", "BURN Sec. 3.1", (
        Key("method", "name", "the SSL method that trains it (when trained, not imported)"),
        Key("backbone", "name", "its network"),
        Key("seeds", "list of integers", "the seeds it is trained or imported at"),
        Key("file", "path or null", "a released or your own weights file to import instead of training",
            default=None),
        Key("train", "mapping", "`train` settings of its own run, laid over burn.train", keys=_train_keys))),
    Key("teacher_file_backbone", "mapping", "the network an imported teacher file holds", "", (
        Key("name", "name", "the network"), Key("options", "mapping", "its constructor arguments"))),
    Key("backbone_options", "mapping", "each network's constructor arguments, by network name"),
    Key("views", "mapping", "each method's augmentation recipe and options", "BURN Sec. 4"),
    Key("methods", "mapping", "each method's settings (BURN's own and the baselines')", "BURN Sec. 3, Eqs. 1-4",
        each=method_key),
    Key("variants", "mapping", "BURN's configurations: settings laid over methods.burn", "BURN Tables 5-7"),
    Key("runs", "list of names", "the configurations trained"),
    Key("distill", "list of names", "baselines distilled from the teacher (S2-BNN)", "BURN Table 2"),
    Key("baselines", "list of names", "the other baselines trained"),
    Key("two_stage", "list of names", "baselines trained in ReActNet's two steps", "BURN Sec. 3.3"),
    Key("baseline_variants", "mapping", "variants of a baseline method, by method", "BURN appendix B.1"),
    Key("appendix", "mapping", "the appendix runs", "BURN appendix B.1", (
        Key("runs", "list of names", "<method>-<variant>-<backbone> descriptors"),
        Key("train", "mapping", "`train` settings only these runs take", keys=_train_keys))),
    Key("train", "mapping", TRAIN_DOC, "BURN Sec. 4", _train_keys),
    Key("train_by_method", "mapping", "`train` settings of one method laid over `train`, by method",
        each=Key("<method>", "mapping", TRAIN_DOC, keys=_train_keys)),
)

# One evaluation suite of eval.suites / eval.figures (eval/pipeline.py turns it into CLI calls).
SUITE = Key("<suite>", "mapping", "one evaluation suite", "", (
    Key("cli", "name", "the module that runs one item (eval.knn, eval.linear, ...)"),
    Key("checkpoints", "list of names", "the run groups it evaluates (common/runs.py: cq, burn_main, ...)"),
    Key("args", "mapping", "the CLI's options, --name value (the CLI checks them)"),
    Key("variants", "mapping", "named option sets laid over args: one evaluation of each run per variant"),
    Key("positional", "list", "positional arguments after the options"),
    Key("together", "true/false", "one call over every run's first seed (a picture of several runs)", default=False),
    Key("features", "mapping", "the SVM's feature extraction (eval.features options), run before the suite"),
    Key("snapshots", "list or null", "evaluate these epochs' snapshots instead of the final network", default=None),
))

SCHEMA = Key("", "mapping", "a parameter file (a profile)", "", (
    Key("profile", "name", "the profile's kind: smoke | mini | paper | study (common/profile_check.py)"),
    Key("precision", "precision set", "CQ's precision set of every run, e.g. 6-16 (`dvc exp run -S precision=4-16`)",
        "CQ Sec. 3.3", default="6-16"),
    Key("seeds", "list of integers", "every pretraining run and its evaluations, once per seed (common/runs.py)"),
    Key("seed", "integer", "the one seed of a stage (the pipeline passes seed=N)"),
    Key("data", "mapping", "where the data sets are", "", (
        Key("root", "path", "the folder holding cifar10/, cifar100/, voc2007/, ... (suites and data sets without a root)"),)),
    Key("cq", "mapping", "Contrastive Quant pretraining", "CQ", CQ),
    Key("burn", "mapping", "BURN pretraining and its baselines", "BURN", BURN),
    Key("eval", "mapping", "the evaluation suites (eval/pipeline.py)", "", (
        Key("suites", "mapping", "suites whose output is metrics, by name", each=SUITE),
        Key("figures", "mapping", "suites whose output is pictures, by name", each=SUITE))),
    Key("report_mapping", "path", "the report mapping (reports/mapping/<profile>.yaml)"),
    Key("report", "mapping", "the composed report mapping (reports/mapping.py puts it here)"),
))


def _known(key: Key, path: str) -> dict[str, Key | None]:
    names: dict[str, Key | None] = {k.name: k for k in key.fixed() or ()}
    if path in DYNAMIC:
        names.update((name, method_key(name)) for name in DYNAMIC[path][0]() if name not in names)
    return names


def nearest(name: str, known: Sequence[str]) -> str | None:
    """The known key closest in spelling to `name`, if any is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def check_params(params: Any, key: Key = SCHEMA, path: str = "") -> None:
    """Every key of `params` is one the schema knows, in every mapping with fixed keys, and its
    value is of its kind (choices and range too): else one ConfigError naming the key (an unknown
    one with the nearest known one)."""
    if params is None or (key.keys is None and key.each is None):
        return
    where = path or "the parameter file"
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {params!r}")
    if key.each is not None:  # names the profile chooses, each value of one schema
        for name, value in params.items():
            each = key.each(str(name)) if callable(key.each) else key.each
            fault = each.fault(value) if each is not None else None
            if fault:
                raise ConfigError(f"{path}.{name}: {fault}")
            if each is not None:
                check_params(value, each, f"{path}.{name}")
        return
    known = _known(key, path)
    for name, value in params.items():
        full = f"{path}.{name}" if path else str(name)
        if name not in known:
            guess = nearest(str(name), known)
            hint = f"did you mean {(path + '.' if path else '') + guess}?" if guess else f"known: {', '.join(known)}"
            raise ConfigError(f"{full}: unknown setting ({hint})")
        sub = known[name]
        if sub is None:
            continue
        fault = sub.fault(value)
        if fault and not (sub.fixed() is not None and not isinstance(value, dict)):
            raise ConfigError(f"{full}: {fault}")
        check_params(value, sub, full)


def find(section: str) -> Key:
    """The schema entry at a dotted path ('' is the whole file)."""
    key, parts = SCHEMA, [p for p in section.split(".") if p]
    for i, part in enumerate(parts):
        path_so_far = ".".join(parts[:i])
        if key.each is not None:  # any name (eval.suites.knn, eval.suites.<suite>)
            each = key.each(part) if callable(key.each) else key.each
            if each is None:
                raise ConfigError(f"{section}: {part!r} has no fixed keys in the schema (its reader checks it)")
            key = each
            continue
        known = {k.name: k for k in key.fixed() or ()}
        if path_so_far in DYNAMIC and part in DYNAMIC[path_so_far][0]() and part not in known:
            known[part] = method_key(part)
        if part not in known or known[part] is None:
            raise ConfigError(f"{section}: not a section of the schema (known here: {', '.join(known) or 'none'})")
        key = known[part]
    return key


def _terms(key: Key) -> str:
    """A key's kind, choices, range and default, as `describe` prints them."""
    terms = [key.kind]
    if key.choices is not None:
        terms.append(" | ".join(map(str, key.choices())))
    if key.range_text():
        terms.append(f"in {key.range_text()}")
    if key.default is not REQUIRED:
        terms.append(f"default {json.dumps(key.default)}")  # as YAML spells it: null, true
    return "; ".join(terms)


def default_of(dotted: str) -> Any:
    """The default the schema gives a key (a reader's value when the profile leaves it out)."""
    key = find(dotted)
    if key.default is REQUIRED:
        raise ConfigError(f"{dotted}: the schema gives it no default (a profile must set it)")
    return key.default


def describe(section: str = "") -> str:
    """Each key of a section (and of its fixed sub-sections): kind, meaning, source."""
    lines: list[str] = []

    def walk(key: Key, path: str, depth: int) -> None:
        if callable(key.each):
            lines.append(f"{'  ' * depth}{path}.<name> (mapping): each name's own settings "
                         f"(python -m common.config --describe {path}.<name>)")
        elif key.each is not None:
            walk(key.each, f"{path}.{key.each.name}", depth)
        for sub in key.fixed() or ():
            full = f"{path}.{sub.name}" if path else sub.name
            lines.append(f"{'  ' * depth}{full} ({_terms(sub)}): {sub.doc}{f'  [{sub.source}]' if sub.source else ''}")
            walk(sub, full, depth + 1)
        if path in DYNAMIC:
            lines.append(f"{'  ' * depth}{path}.<{', '.join(DYNAMIC[path][0]())}> (mapping): {DYNAMIC[path][1]} "
                         f"(python -m common.config --describe {path}.<name>)")

    top = find(section)
    if top.keys is None and top.each is None:
        return f"{section} ({top.kind}): {top.doc} (free-form: its reader checks its entries)"
    walk(top, section, 0)
    return "\n".join(lines)
