"""Verdicts on the papers' claims (reports/claims.yaml): seed-paired differences with t intervals.

    python -m reports.claims --values reports/study/values.json --out reports/study

For each claim, arm a and arm b are measured on the same seeds (seed s of both arms shares data
order and initialisation where the methods allow), so the claim is tested on the paired
differences d_s = a_s - b_s (percent points):

    mean d, its 95 % interval  mean d +- t(0.975, n-1) * sd(d) / sqrt(n)
    holds         the interval lies on the paper's side of zero
    reversed      it lies on the other side
    inconclusive  it contains zero, or n < 2 (no interval)
    not testable at this scale   an arm failed the sanity line (trained < untrained + 10 points)

and the minimum detectable effect, the smallest true difference the study had an 80 % chance to
see at two-sided 5 % with this n and spread: (t(0.975, n-1) + t(0.80, n-1)) * sd(d) / sqrt(n)
(the usual approximation of the noncentral t). The paper's own a - b is reported beside it, with
whether it lies inside the interval.

A seed where either arm has no number (diverged, not run) drops out of the pairs and is counted
beside the verdict: a claim is never decided on numbers that silently went missing.

Inputs: ``values.json`` maps each measurement (:func:`measurement_key`: arm identity + what is
read) to ``{seed: number | status}``; ``sanity`` (optional) maps an arm identity to its
trained-minus-untrained margins. Outputs: ``verdicts.json``, ``claims.md``, ``claims.tex``,
``claims.png`` (effect +- interval per claim, the paper's effect marked).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from common import runs
from common.config import ArgumentParser, cli_main, read_params_file, read_yaml_mapping
from common.errors import ConfigError
from common import predictions
from reports.stats import CONFIDENCE, mean_interval, t_quantile
from reports.tables import PaperTable, load_paper_tables

CLAIMS = Path(__file__).with_name("claims.yaml")
POWER = 0.80
SANITY_POINTS = 10.0  # an arm must beat its untrained network by this much (kNN and linear top-1)
SANITY_SUITES = ("knn", "linear")
CLAIM_FIELDS = {"id", "paper", "where", "claim", "a", "b", "eval", "direction", "paper_effect"}
DIRECTIONS = {"greater": 1.0, "less": -1.0}

HOLDS, REVERSED, INCONCLUSIVE, NOT_TESTABLE = "holds", "reversed", "inconclusive", "not testable at this scale"
NOT_RUN = "not run"  # neither arm has a number on any seed: the study did not run it


# --------------------------------------------------------------------------------------------
# The claims file
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    where: str
    claim: str
    a: dict
    b: dict
    eval: dict
    direction: str
    paper_effect: float | None
    paper_data: str | None = None  # where the paper's effect was measured: "CIFAR-100 (Contrastive Quant, Table 4)"


def arm_name(arm: Mapping[str, Any]) -> str:
    """A readable, unique name of a run identity: cq/simclr/cq_c@6-16, burn/s2bnn."""
    if arm.get("paper") == "cq":
        name = f"cq/{arm['method']}/{arm['variant']}"
        return name + (f"@{arm['precision']}" if arm.get("precision") else "")
    return f"burn/{arm['run']}"


def measurement_key(arm: Mapping[str, Any], what: Mapping[str, Any]) -> str:
    """What one arm's number is: `cq/simclr/cq_c@6-16 finetune/fp-10pct:best.top1`."""
    item = f"/{what['item']}" if what.get("item") else ""
    return f"{arm_name(arm)} {what['suite']}{item}:{what['key']}"


def paper_difference(spec: Mapping[str, Any] | None, tables: Mapping[str, PaperTable], where: str) -> float | None:
    """The paper's a - b from its table (reports/paper_numbers.yaml)."""
    if spec is None:
        return None
    table = tables.get(spec.get("table"))
    if table is None:
        raise ConfigError(f"{where}.paper_effect.table: unknown table {spec.get('table')!r}")
    values = []
    for arm in ("a", "b"):
        row, column = spec[arm]
        if row not in table.row_keys or column not in table.columns:
            raise ConfigError(f"{where}.paper_effect.{arm}: no cell ({row!r}, {column!r}) in {table.id}")
        value = table.values[table.row_keys.index(row)][table.columns.index(column)]
        if value is None:
            raise ConfigError(f"{where}.paper_effect.{arm}: {table.id} has no number at ({row!r}, {column!r})")
        values.append(value)
    return round(values[0] - values[1], 6)


def paper_data(spec: Mapping[str, Any] | None, tables: Mapping[str, PaperTable]) -> str | None:
    """The data set and table the paper's a - b comes from (checked by paper_difference)."""
    if spec is None:
        return None
    table = tables[spec["table"]]
    return f"{table.pretrain_dataset} ({table.paper}, Table {table.number})"


def load_claims(path: str | Path = CLAIMS) -> list[Claim]:
    data = read_yaml_mapping(path, "claims file")
    tables = {t.id: t for t in load_paper_tables()}
    claims, seen = [], set()
    for i, raw in enumerate(data.get("claims") or []):
        where = f"{path}: claims[{i}]"
        if not isinstance(raw, dict) or set(raw) != CLAIM_FIELDS:
            got = sorted(raw) if isinstance(raw, dict) else raw
            raise ConfigError(f"{where}: expected the fields {sorted(CLAIM_FIELDS)}, got {got}")
        if raw["id"] in seen:
            raise ConfigError(f"{where}: duplicate id {raw['id']!r}")
        if raw["direction"] not in DIRECTIONS:
            raise ConfigError(f"{where}.direction: expected one of {sorted(DIRECTIONS)}, got {raw['direction']!r}")
        seen.add(raw["id"])
        effect = paper_difference(raw["paper_effect"], tables, where)
        claims.append(Claim(**{**raw, "paper_effect": effect, "paper_data": paper_data(raw["paper_effect"], tables)}))
    if not claims:
        raise ConfigError(f"{path}: no claims")
    return claims


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------

@dataclass
class Effect:
    """The seed-paired difference a - b (percent points) over the seeds both arms have numbers for."""

    n: int
    mean: float | None
    sd: float | None
    low: float | None
    high: float | None
    min_detectable: float | None
    dropped: dict = field(default_factory=dict)  # seed -> why it is not in the pairs


def _number(x: Any) -> float | None:
    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    return float(x) if ok else None


def paired_effect(a: Mapping[Any, Any], b: Mapping[Any, Any], scale: float = 1.0) -> Effect:
    diffs, dropped = [], {}
    for seed in sorted(set(a) | set(b), key=str):
        va, vb = _number(a.get(seed)), _number(b.get(seed))
        if va is None or vb is None:
            dropped[str(seed)] = f"a: {a.get(seed, 'missing')}, b: {b.get(seed, 'missing')}"
            continue
        diffs.append((va - vb) * scale)
    n = len(diffs)
    if n == 0:
        return Effect(0, None, None, None, None, None, dropped)
    mean, sd, half = mean_interval(diffs, CONFIDENCE)
    if sd is None:
        return Effect(1, mean, None, None, None, None, dropped)
    mde = (t_quantile(0.5 + CONFIDENCE / 2, n - 1) + t_quantile(POWER, n - 1)) * sd / math.sqrt(n)
    return Effect(n, mean, sd, mean - half, mean + half, mde, dropped)


def verdict(effect: Effect, direction: str, testable: bool = True, ran: bool = True) -> str:
    """`ran`: both arms have an entry (a number or a status such as diverged) on some seed; an arm
    the study never ran makes the claim "not run", before any other verdict."""
    if not ran or (effect.n == 0 and not effect.dropped):
        return NOT_RUN
    if not testable:
        return NOT_TESTABLE
    if effect.low is None:
        return INCONCLUSIVE
    sign = DIRECTIONS[direction]
    low, high = sorted((sign * effect.low, sign * effect.high))
    if low > 0:
        return HOLDS
    if high < 0:
        return REVERSED
    return INCONCLUSIVE


def paper_inside(effect: Effect, paper_effect: float | None) -> bool | None:
    if paper_effect is None or effect.low is None:
        return None
    return effect.low <= paper_effect <= effect.high


# --------------------------------------------------------------------------------------------
# Claims -> verdicts
# --------------------------------------------------------------------------------------------

def judge(claims: Sequence[Claim], values: Mapping[str, Mapping[Any, Any]],
          sanity: Mapping[str, Mapping[str, float]] | None = None) -> list[dict]:
    """One row per claim: the effect, its interval, the verdict, the paper's effect beside it.
    `sanity`: arm name -> {"knn": margin, "linear": margin} (trained - untrained, points); an arm
    listed there with a margin below SANITY_POINTS makes its claims not testable."""
    rows = []
    for claim in claims:
        keys = [measurement_key(arm, claim.eval) for arm in (claim.a, claim.b)]
        a, b = (values.get(k, {}) for k in keys)
        effect = paired_effect(a, b, float(claim.eval.get("scale", 1)))
        failed = [arm_name(arm) for arm in (claim.a, claim.b)
                  if any(m < SANITY_POINTS for m in (sanity or {}).get(arm_name(arm), {}).values())]
        rows.append({"id": claim.id, "paper": claim.paper, "where": claim.where, "claim": claim.claim,
                     "a": keys[0], "b": keys[1], "direction": claim.direction,
                     "verdict": verdict(effect, claim.direction, testable=not failed, ran=bool(a) and bool(b)),
                     "failed_sanity": failed, "paper_effect": claim.paper_effect,
                     "paper_inside": paper_inside(effect, claim.paper_effect), **asdict(effect)})
    return rows


# --------------------------------------------------------------------------------------------
# Measurements from the runs (the run contract, common/runs.py)
# --------------------------------------------------------------------------------------------

TEACHER = {"paper": "burn", "run": "teacher"}  # BURN's FP teacher: its own kNN / linear top-1 are reported


def untrained_of(arm: Mapping[str, Any]) -> dict:
    """The untrained network an arm starts from (the reference of the sanity line)."""
    if arm.get("paper") == "cq":
        return {**arm, "variant": "untrained", "precision": None}
    return {"paper": "burn", "run": "untrained"}


def is_untrained(arm: Mapping[str, Any]) -> bool:
    return "untrained" in (arm.get("variant"), arm.get("run"))


def run_key(arm: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """The run key of an arm in a profile: CQ arms on the profile's first CQ backbone (`untrained`:
    its random_init run); BURN arms by configuration (stage 2) or baseline name (`untrained`: the
    binary student's random_init run, `teacher`: the FP teacher)."""
    if arm.get("paper") == "cq":
        backbone = ((params.get("cq") or {}).get("backbones") or ["?"])[0]
        name = (runs.random_init_name(backbone) if arm["variant"] == "untrained"
                else runs.cq_name(arm["method"], arm["variant"], backbone))
        return f"cq/{name}" + (f"@{arm['precision']}" if arm.get("precision") else "")
    burn = params.get("burn") or {}
    teacher = burn.get("teacher") or {}
    if arm["run"] == "untrained":
        name = runs.random_init_name(burn.get("student", "?"))
    elif arm["run"] == "teacher":
        name = runs.teacher_name(teacher.get("method", "?"), teacher.get("backbone", "?"))
    elif arm["run"] in (burn.get("variants") or {}):
        name = runs.burn_stage_name(arm["run"], 2)
    else:
        name = runs.baseline_name(arm["run"])
    return f"burn/{name}"


def grad_norm_peak(folder: Path) -> float | None:
    """The largest finite total gradient norm a run logged (a diverged run: the last finite ones)."""
    tsv = folder / "dvclive" / "plots" / "metrics" / "train" / "grad_norm" / "total.tsv"
    if not tsv.is_file():
        return None
    values = []
    for line in tsv.read_text().splitlines()[1:]:
        try:
            values.append(float(line.split("\t")[1]))
        except (IndexError, ValueError):
            continue
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else None


def measure(key: str, what: Mapping[str, Any], root: Path) -> dict[int, Any]:
    """{seed: number or status} of one run key under one measurement."""
    if what["suite"] == "pretrain":
        if what["key"] != "grad_norm_peak":
            raise ConfigError(f"eval.key: suite 'pretrain' measures grad_norm_peak, not {what['key']!r}")
        return {seed: grad_norm_peak(folder) for seed, folder in runs.resolve(key, root).items()}
    out = {}
    for seed, folder in runs.resolve(key, root, under=root / "eval" / what["suite"]).items():
        path = folder / (what.get("item") or "") / runs.METRICS
        metrics = runs.read_metrics(path)
        if metrics is None:
            out[seed] = runs.NOT_RUN
        elif runs.status_of(metrics) != runs.OK:
            out[seed] = str(metrics["status"])
        else:  # a finished evaluation without the number: the claim names a key the suite does not write
            out[seed] = runs.value_at(metrics, what["key"])
            if out[seed] is None:
                raise ConfigError(f"{path}: no value at {what['key']!r} (eval.key of the claims file)")
    return out


def sanity_arms(claims: Sequence[Claim]) -> dict[str, tuple[dict, dict]]:
    """arm name -> (arm, its untrained network) for every trained arm of the claims (the untrained
    network is the profile's random_init run of the same backbone and seed)."""
    out = {}
    for claim in claims:
        for arm in (claim.a, claim.b):
            if not is_untrained(arm):
                out.setdefault(arm_name(arm), (arm, untrained_of(arm)))
    return out


def wanted_measurements(claims: Sequence[Claim]) -> list[tuple[dict, dict]]:
    """(arm, measurement) of every arm of every claim, and the kNN and linear top-1 of every arm
    the sanity line compares, of its untrained network and of BURN's FP teacher."""
    wanted = [(arm, claim.eval) for claim in claims for arm in (claim.a, claim.b)]
    wanted += [(arm, {"suite": suite, "key": "top1"}) for pair in [*sanity_arms(claims).values(), (TEACHER,)]
               for arm in pair for suite in SANITY_SUITES]
    return wanted


def harvest(claims: Sequence[Claim], params: Mapping[str, Any], root: Path = runs.RUNS) -> dict[str, dict]:
    """measurement key -> {seed: value}, from the runs folder: every arm of every claim, and the
    kNN and linear top-1 of every arm the sanity line compares (and of its untrained network)."""
    values: dict[str, dict] = {}
    for arm, what in wanted_measurements(claims):
        key = measurement_key(arm, what)
        if key not in values:
            values[key] = measure(run_key(arm, params), what, root)
    return values


PER_IMAGE_SUITES = ("linear", "knn", "finetune")  # suites whose metrics keep per-image predictions


def measure_per_image(key: str, what: Mapping[str, Any], root: Path) -> dict[int, dict]:
    """{seed: packed 0/1 correctness per test image} of one run key under one measurement (the
    suites of PER_IMAGE_SUITES; seeds whose metrics hold no predictions are left out)."""
    out = {}
    for seed, folder in runs.resolve(key, root, under=root / "eval" / what["suite"]).items():
        metrics = runs.read_metrics(folder / (what.get("item") or "") / runs.METRICS)
        if metrics and runs.status_of(metrics) == runs.OK and predictions.KEY in metrics:
            out[seed] = predictions.pack_correct(predictions.correct(metrics))
    return out


def harvest_per_image(claims: Sequence[Claim], params: Mapping[str, Any], root: Path = runs.RUNS) -> dict[str, dict]:
    """measurement key -> {seed: packed correctness}, for every measurement `harvest` takes whose
    suite keeps per-image predictions: what the second study's bootstrap resamples."""
    out: dict[str, dict] = {}
    for arm, what in wanted_measurements(claims):
        key = measurement_key(arm, what)
        if what["suite"] in PER_IMAGE_SUITES and key not in out:
            out[key] = measure_per_image(run_key(arm, params), what, root)
    return out


def sanity(claims: Sequence[Claim], values: Mapping[str, Mapping[Any, Any]]) -> dict[str, dict]:
    """arm name -> {"knn": margin, "linear": margin}: the mean over seeds of trained minus untrained
    top-1 (points) of every arm that `values` holds both numbers for on some seed."""
    out: dict[str, dict] = {}
    for name, (arm, untrained) in sanity_arms(claims).items():
        margins = {}
        for suite in SANITY_SUITES:
            what = {"suite": suite, "key": "top1"}
            trained, base = (values.get(measurement_key(a, what), {}) for a in (arm, untrained))
            diffs = [100 * (_number(trained[s]) - _number(base[s])) for s in trained
                     if _number(trained[s]) is not None and _number(base.get(s)) is not None]
            if diffs:
                margins[suite] = sum(diffs) / len(diffs)
        if margins:
            out[name] = margins
    return out


def sanity_rows(claims: Sequence[Claim], values: Mapping[str, Mapping[Any, Any]]) -> list[dict]:
    """The sanity line per measured arm: mean kNN / linear top-1 over its seeds (percent, with the
    half-width of its 95 % t interval) and the mean margin over its untrained network; the FP
    teacher (no margin) last."""
    margins = sanity(claims, values)
    arms = [(name, arm) for name, (arm, _) in sanity_arms(claims).items()] + [("burn/teacher (FP)", TEACHER)]
    rows = []
    for name, arm in arms:
        row: dict[str, Any] = {"arm": name, "passes": None}
        for suite in SANITY_SUITES:
            found = [_number(v) for v in values.get(measurement_key(arm, {"suite": suite, "key": "top1"}), {}).values()]
            found = [100 * v for v in found if v is not None]
            row[suite], _, row[f"{suite}_half"] = mean_interval(found) if found else (None, None, None)
            row[f"{suite}_n"] = len(found)
            row[f"{suite}_margin"] = margins.get(name, {}).get(suite)
        if row["knn"] is None and row["linear"] is None:
            continue
        if name in margins:
            row["passes"] = all(m >= SANITY_POINTS for m in margins[name].values())
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def sanity_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return ""

    def pct(x: float | None, half: float | None = None) -> str:
        return "–" if x is None else f"{x:.2f}" + ("" if half is None else f" ± {half:.2f}")

    lines = ["| arm | seeds | kNN top-1 | kNN − untrained | linear top-1 | linear − untrained | passes |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        passes = {True: "yes", False: "**no**", None: "–"}[r["passes"]]
        lines.append(f"| {r['arm']} | {max(r['knn_n'], r['linear_n'])} | {pct(r['knn'], r['knn_half'])} | "
                     f"{_fmt(r['knn_margin'])} | {pct(r['linear'], r['linear_half'])} | {_fmt(r['linear_margin'])} | "
                     f"{passes} |")
    return (f"\n## Sanity line\n\nEvery trained arm must beat its untrained network by {SANITY_POINTS:.0f} points in "
            "kNN and in linear top-1 (means over seeds of the paired margins); an arm that does not makes its "
            "claims \"not testable at this scale\". Top-1: mean over seeds ± the half-width of its 95 % t "
            "interval. The FP teacher of BURN is listed with its own accuracy.\n\n"
            + "\n".join(lines) + "\n")


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:+.{digits}f}"


def interval_text(row: Mapping[str, Any]) -> str:
    if row["mean"] is None:
        return "no pairs"
    if row["low"] is None:
        return f"{_fmt(row['mean'])} (n = 1, no interval)"
    return f"{_fmt(row['mean'])} [{_fmt(row['low'])}, {_fmt(row['high'])}]"


def verdict_text(row: Mapping[str, Any]) -> str:
    text = row["verdict"]
    if text == NOT_RUN:  # an arm outside the study: what its other arm did says nothing here
        return text
    if row["failed_sanity"]:
        text += f" ({', '.join(row['failed_sanity'])} failed the sanity line)"
    if row["dropped"]:
        text += f"; {len(row['dropped'])} seed(s) without a number"
    return text


COLUMNS = ("claim", "paper", "where", "n", "measured a − b [95 % CI]", "MDE", "paper a − b", "paper in CI", "verdict")


def table_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    out = []
    for row in rows:
        inside = {True: "yes", False: "no", None: "–"}[row["paper_inside"]]
        mde = "–" if row["min_detectable"] is None else f"{row['min_detectable']:.2f}"
        out.append([f"{row['id']}: {row['claim']}", row["paper"].upper() if row["paper"] == "cq" else "BURN",
                    row["where"], str(row["n"]), interval_text(row), mde, _fmt(row["paper_effect"]), inside,
                    verdict_text(row)])
    return out


def to_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in table_rows(rows)]
    counts = {v: sum(r["verdict"] == v for r in rows) for v in (HOLDS, REVERSED, INCONCLUSIVE, NOT_TESTABLE, NOT_RUN)}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return ("# The papers' claims, tested\n\nEffects are a − b in percent points (the claim says a > b), "
            "paired over seeds; MDE: the smallest effect this n could detect (80 % power, 5 % two-sided).\n\n"
            + "\n".join(lines) + f"\n\n{len(rows)} claims: {summary}.\n")


def to_latex(rows: Sequence[Mapping[str, Any]]) -> str:
    from reports.render import latex_escape

    body = [" & ".join(latex_escape(c) for c in r) + r" \\" for r in table_rows(rows)]
    return "\n".join([r"\begin{tabular}{" + "l" * len(COLUMNS) + "}", r"\toprule",
                      " & ".join(latex_escape(c) for c in COLUMNS) + r" \\", r"\midrule", *body,
                      r"\bottomrule", r"\end{tabular}", ""])


def draw_figure(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.2))
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i
        if row["mean"] is not None:
            err = None if row["low"] is None else [[row["mean"] - row["low"]], [row["high"] - row["mean"]]]
            color = {HOLDS: "tab:green", REVERSED: "tab:red"}.get(row["verdict"], "tab:gray")
            ax.errorbar(row["mean"], y, xerr=err, fmt="o", color=color, capsize=3)
        if row["paper_effect"] is not None:
            ax.plot(row["paper_effect"], y, marker="x", color="black")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [r["id"] for r in reversed(rows)], fontsize=7)
    ax.set_xlabel("a − b (points): measured mean ± 95 % CI (dot), paper (x)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m reports.claims", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--values", help="JSON: measurement key -> {seed: value} (e.g. a study's values.json)")
    source.add_argument("--from-runs", action="store_true", help="measure every arm in the runs folder")
    parser.add_argument("--sanity", default=None, help="JSON: arm name -> {suite: trained - untrained}")
    parser.add_argument("--params", default="params.yaml", help="the profile the runs come from (--from-runs)")
    parser.add_argument("--runs", default=str(runs.RUNS))
    parser.add_argument("--claims", default=str(CLAIMS))
    parser.add_argument("--out", required=True, help="folder for verdicts.json, claims.md/.tex/.png")
    args = parser.parse_args(argv)
    claims = load_claims(args.claims)
    if args.from_runs:
        params = read_params_file(args.params, "--params")
        values = harvest(claims, params, Path(args.runs))
    else:
        values = _read_json(args.values, "--values")
        if set(values) == {"values", "sanity"}:  # a values.json this command wrote
            values = values["values"]
    margins = _read_json(args.sanity, "--sanity") if args.sanity else sanity(claims, values)
    rows = judge(claims, values, margins)
    from common.checkpoint import atomic_write, write_json

    out = Path(args.out)
    write_json({"values": values, "sanity": margins}, out / "values.json")
    write_json(rows, out / "verdicts.json")
    page = to_markdown(rows) + sanity_markdown(sanity_rows(claims, values))
    atomic_write(out / "claims.md", lambda tmp: tmp.write_text(page))
    atomic_write(out / "claims.tex", lambda tmp: tmp.write_text(to_latex(rows)))
    draw_figure(rows, out / "claims.png")
    print(f"{len(rows)} claims -> {out}")
    return 0


def _read_json(path: str, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{what} {path}: cannot be read as JSON ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: expected a JSON object")
    return data


if __name__ == "__main__":
    raise SystemExit(main())
