"""The claims study, second edition: finished parts -> gate, intervals, Holm verdicts, the page.

    python -m reports.study_v2 [--parts reports/study/v2/parts] [--out reports/study/v2]

Reads the registered protocol (reports/study/v2/protocol.yaml), the claims (reports/claims.yaml)
and every finished part file, and writes verdicts.json, claims.md and effects.png (a forest plot
of every tested claim's interval beside the paper's effect). What each number is:

- effect: mean over seeds of a - b, in points (accuracy x 100; the claim says a > b);
- interval of record: the paired hierarchical bootstrap over seeds and test images
  (reports.stats.hierarchical_bootstrap) on the stored per-image correctness; a measurement
  without per-image scores (the pretraining gradient norms) has the seed-level t interval only;
- t interval: the seed-level 95 % t interval of the paired differences, beside it;
- p: the bootstrap's two-sided p (or the paired t test's), Holm-adjusted over every tested claim;
- gate (protocol `gate`): the proposed arm and BURN's teacher must beat the untrained network
  by the margin with the lower bound, in kNN and linear; a baseline above zero. A claim with an
  arm below its line is "not testable at this scale" and is left out of the Holm family.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from common.checkpoint import write_json
from common.config import ArgumentParser, cli_main, read_yaml_mapping
from common.errors import ConfigError
from common.predictions import unpack_correct
from reports import claims as C
from reports.stats import CONFIDENCE, hierarchical_bootstrap, holm, mean_interval

V2 = Path(__file__).resolve().parent / "study" / "v2"
ALPHA = 1 - CONFIDENCE
NOT_TESTED = "not tested (declared)"


def load_parts(folder: Path) -> tuple[dict, dict, list[dict]]:
    """(values, per_image, part records): measurement key -> {seed: ...} merged over the parts."""
    values: dict[str, dict] = {}
    per_image: dict[str, dict] = {}
    records = []
    for path in sorted(folder.glob("*.json")):
        part = json.loads(path.read_text())
        records.append({k: part[k] for k in ("half", "group", "seed", "commit", "cpu", "minutes_this_sitting")})
        for key, by_seed in part["values"].items():
            values.setdefault(key, {}).update(by_seed)
        for key, by_seed in part.get("per_image", {}).items():
            per_image.setdefault(key, {}).update(by_seed)
    return values, per_image, records


def matrices(key_a: str, key_b: str, per_image: Mapping[str, Mapping], same_b: bool = False) -> tuple[list[str], Any, Any]:
    """(seeds, a, b): the 0/1 correctness of both arms on the seeds both have, stacked by seed.
    `same_b`: b has one seed (BURN's teacher) and pairs with every seed of a."""
    a, b = per_image.get(key_a, {}), per_image.get(key_b, {})
    if same_b and len(b) == 1:
        only = next(iter(b.values()))
        b = {s: only for s in a}
    seeds = sorted(set(a) & set(b), key=int)
    if not seeds:
        return [], None, None
    return seeds, np.stack([unpack_correct(a[s]) for s in seeds]), np.stack([unpack_correct(b[s]) for s in seeds])


def t_summary(a: Mapping, b: Mapping, scale: float) -> dict:
    """The seed-level paired t interval and two-sided p of mean(a - b)."""
    from scipy.stats import t as student

    diffs = [(float(a[s]) - float(b[s])) * scale for s in sorted(set(a) & set(b), key=int)
             if C._number(a[s]) is not None and C._number(b[s]) is not None]
    if not diffs:
        return {"n": 0}
    mean, sd, half = mean_interval(diffs)
    out = {"n": len(diffs), "mean": mean, "t_low": None, "t_high": None, "t_p": None}
    if half is not None:
        out.update(t_low=mean - half, t_high=mean + half)
        out["t_p"] = 1.0 if sd == 0 and mean == 0 else (0.0 if sd == 0 else
                                                         float(2 * student.sf(abs(mean) / (sd / math.sqrt(len(diffs))), len(diffs) - 1)))
    return out


def role(arm: Mapping[str, Any], params_burn_variants: Sequence[str]) -> str | None:
    """'proposed' (a CQ variant, BURN or one of its configurations), 'baseline', or None (untrained)."""
    if C.is_untrained(arm):
        return None
    if arm.get("paper") == "cq":
        return "baseline" if arm["variant"] == "baseline" else "proposed"
    return "proposed" if arm["run"] == "burn" or arm["run"] in params_burn_variants else "baseline"


def gate_margin(arm: Mapping[str, Any], suite: str, per_image: Mapping) -> dict:
    """Bootstrap of (arm - its untrained network) in one suite's top-1, points."""
    what = {"suite": suite, "key": "top1"}
    trained, untrained = C.measurement_key(arm, what), C.measurement_key(C.untrained_of(arm), what)
    if arm == C.TEACHER:  # one teacher (its own seed), paired with each seed's untrained student
        seeds, b, a = matrices(untrained, trained, per_image, same_b=True)
    else:
        seeds, a, b = matrices(trained, untrained, per_image)
    if not seeds:
        return {"n": 0}
    boot = hierarchical_bootstrap(a, b)
    return {"n": len(seeds), "effect": 100 * boot["effect"], "low": 100 * boot["low"], "high": 100 * boot["high"]}


def gate(claim: C.Claim, sanity: Mapping[str, Mapping], burn_variants: Sequence[str]) -> dict:
    """{arm name: its sanity entry (`sanity_of`)} for every trained arm of the claim (and the teacher
    for a BURN claim with a distilled arm). A claim against the untrained network (CQ-Quant against
    no SSL training) is that margin itself: not gated (the registered rule)."""
    if any(C.is_untrained(arm) for arm in (claim.a, claim.b)):
        return {}
    arms = [arm for arm in (claim.a, claim.b) if role(arm, burn_variants)]
    if claim.paper == "burn" and any(role(arm, burn_variants) == "proposed" or arm.get("run") == "s2bnn"
                                     for arm in (claim.a, claim.b)):
        arms.append(C.TEACHER)
    return {C.arm_name(arm): sanity[C.arm_name(arm)] for arm in arms}


def sanity_of(arm: Mapping[str, Any], per_image: Mapping, spec: Mapping, burn_variants: Sequence[str]) -> dict:
    """One arm against its line: {"role", "line", "knn", "linear", "passes"} (passes None: unmeasured)."""
    kind = "proposed" if arm == C.TEACHER else role(arm, burn_variants)
    line = float(spec["proposed_margin"] if kind == "proposed" else spec["baseline_margin"])
    margins = {suite: gate_margin(arm, suite, per_image) for suite in C.SANITY_SUITES}
    measured = all(m["n"] for m in margins.values())
    passes = None if not measured else all(
        (m["low"] >= line if kind == "proposed" else m["low"] > line) for m in margins.values())
    return {"role": kind, "line": line, **margins, "passes": passes}


def sanity_line(claims: Sequence[C.Claim], per_image: Mapping, spec: Mapping,
                burn_variants: Sequence[str]) -> dict[str, dict]:
    """Every trained arm of every claim (and BURN's teacher) against its line, gated or not: the
    page's sanity table, bootstrapped once per arm; a claim's `gate` reads its arms from it."""
    arms = [arm for claim in claims for arm in (claim.a, claim.b) if role(arm, burn_variants)]
    if any(claim.paper == "burn" for claim in claims):
        arms.append(C.TEACHER)
    out: dict[str, dict] = {}
    for arm in arms:
        name = C.arm_name(arm)
        if name not in out:
            out[name] = sanity_of(arm, per_image, spec, burn_variants)
    return out


def judge(claims: Sequence[C.Claim], values: Mapping, per_image: Mapping, protocol: Mapping,
          burn_variants: Sequence[str], sanity: Mapping[str, Mapping] | None = None) -> list[dict]:
    """The verdict rows; `sanity`: sanity_line's result where the caller already has it."""
    if sanity is None:
        sanity = sanity_line(claims, per_image, protocol["gate"], burn_variants)
    rows = []
    for claim in claims:
        key_a, key_b = (C.measurement_key(arm, claim.eval) for arm in (claim.a, claim.b))
        row = {"id": claim.id, "paper": claim.paper, "where": claim.where, "claim": claim.claim, "a": key_a,
               "b": key_b, "paper_effect": claim.paper_effect, "paper_data": claim.paper_data}
        scale = float(claim.eval.get("scale", 1))
        row.update(t_summary(values.get(key_a, {}), values.get(key_b, {}), scale))
        if claim.id in (protocol.get("not_tested") or {}):
            rows.append({**row, "verdict": NOT_TESTED, "reason": protocol["not_tested"][claim.id]})
            continue
        seeds, a, b = matrices(key_a, key_b, per_image)
        if seeds:
            boot = hierarchical_bootstrap(a, b)
            row.update(method="bootstrap", n=len(seeds), mean=scale * boot["effect"], low=scale * boot["low"],
                       high=scale * boot["high"], p=boot["p"])
        elif row["n"] >= 2:
            row.update(method="t", low=row["t_low"], high=row["t_high"], p=row["t_p"])
        else:
            rows.append({**row, "verdict": C.NOT_RUN})
            continue
        row["gate"] = gate(claim, sanity, burn_variants)
        failed = [name for name, g in row["gate"].items() if g["passes"] is False]
        unmeasured = [name for name, g in row["gate"].items() if g["passes"] is None]
        row["verdict"] = C.NOT_TESTABLE if failed or unmeasured else None
        row["failed_gate"], row["gate_unmeasured"] = failed, unmeasured
        rows.append(row)
    family = {r["id"]: r["p"] for r in rows if r.get("verdict", "") is None}
    adjusted = holm(family)
    for row in rows:
        if row["id"] in adjusted:
            row["p_holm"] = adjusted[row["id"]]
            sign = C.DIRECTIONS[next(c.direction for c in claims if c.id == row["id"])]
            significant = row["p_holm"] < ALPHA
            row["verdict"] = (C.INCONCLUSIVE if not significant else C.HOLDS if sign * row["mean"] > 0 else C.REVERSED)
            row["paper_inside"] = C.paper_inside(
                C.Effect(row["n"], row["mean"], None, row["low"], row["high"], None), row["paper_effect"])
    return rows


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:+.{digits}f}"


def _p(x: float | None) -> str:
    return "–" if x is None else (f"{x:.4f}" if x >= 1e-4 else "< 0.0001")


def _margin(m: Mapping[str, Any]) -> str:
    return f"{_fmt(m['effect'])} [{_fmt(m['low'])}, {_fmt(m['high'])}]" if m.get("n") else "–"


def sanity_markdown(sanity: Mapping[str, Mapping[str, Any]]) -> str:
    """The sanity table: each arm's margin over its untrained network, with the bootstrap bounds."""
    head = ("| arm | role | line (lower bound) | n | kNN − untrained [95 %] | linear − untrained [95 %] | passes |\n"
            "|---|---|---|---|---|---|---|")
    lines = []
    for name, g in sanity.items():
        line = f"≥ {g['line']:+.0f}" if g["role"] == "proposed" else f"> {g['line']:+.0f}"
        passes = {True: "yes", False: "no", None: "not measured"}[g["passes"]]
        n = min(g[s].get("n", 0) for s in C.SANITY_SUITES)
        lines.append(f"| {name} | {g['role']} | {line} | {n} | {_margin(g['knn'])} | {_margin(g['linear'])} | {passes} |")
    return ("## The sanity line\n\n"
            "Each trained arm's top-1 minus its untrained network's, in points, with the paired hierarchical "
            "bootstrap's 95 % interval. A proposed arm (a CQ variant, BURN or one of its configurations) and "
            "BURN's FP teacher must reach the line with the lower bound in kNN and in linear evaluation; a "
            "baseline only has to beat its untrained network. A claim with an arm short of its line is \"not "
            "testable at this scale\"; a claim against the untrained network (CQ-Quant against no SSL training) "
            "is that margin itself and is not gated.\n\n" + head + "\n" + "\n".join(lines) + "\n")


def parts_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """Where the numbers come from: each finished part's commit, CPU and the minutes of its last sitting."""
    head = "| part | seed | commit | CPU | minutes (last sitting) |\n|---|---|---|---|---|"
    lines = [f"| {r['half']} {r['group']} | {r['seed']} | {str(r['commit'])[:7]} | {r['cpu']} | "
             f"{float(r['minutes_this_sitting']):.1f} |" for r in records]
    total = sum(float(r["minutes_this_sitting"]) for r in records) / 60
    return ("## The parts\n\n" + head + "\n" + "\n".join(lines)
            + f"\n\nLast sittings together: {total:.1f} hours. A sitting that a session's end cut off "
            "is not in a part file; reports/study/v2/RUN.md logs every sitting and the hours used in all.\n")


def to_markdown(rows: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]],
                sanity: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    head = ("| claim | paper | n | a − b [bootstrap 95 %] | seed t 95 % | p | p (Holm) | paper a − b | paper's data | verdict |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    lines = []
    for r in rows:
        interval = (f"{_fmt(r.get('mean'))} [{_fmt(r.get('low'))}, {_fmt(r.get('high'))}]" if "low" in r else "–")
        seed_t = f"[{_fmt(r.get('t_low'))}, {_fmt(r.get('t_high'))}]" if r.get("t_low") is not None else "–"
        verdict = r["verdict"] + (f" ({', '.join(r['failed_gate'] + r['gate_unmeasured'])})"
                                  if r["verdict"] == C.NOT_TESTABLE else "")
        lines.append(f"| {r['id']}: {r['claim']} | {'CQ' if r['paper'] == 'cq' else 'BURN'} | {r.get('n', 0)} | "
                     f"{interval} | {seed_t} | {_p(r.get('p'))} | {_p(r.get('p_holm'))} | "
                     f"{_fmt(r['paper_effect'])} | {r.get('paper_data') or '–'} | {verdict} |")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    cpus = sorted({rec["cpu"] for rec in records})
    return ("# The papers' claims, tested: second edition\n\n"
            "Whole CIFAR-10 (JPEG), 10,000 test images. Effects are a − b in points; the interval of record is "
            "the paired hierarchical bootstrap over seeds and test images, the seed-level t interval beside it; "
            "verdicts after Holm's correction over every tested claim (reports/study/v2/protocol.yaml).\n\n"
            + head + "\n" + "\n".join(lines)
            + f"\n\n{len(rows)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items())
            + f". {len(records)} finished parts, trained on: {', '.join(cpus) or '–'}.\n\n"
            "![every tested effect with its 95 % bootstrap interval; x: the paper's effect](effects.png)\n\n"
            + (sanity_markdown(sanity) + "\n" if sanity else "") + parts_markdown(records))


def draw_forest(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if "low" in r and r.get("low") is not None]
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(shown), 1) + 1))
    for i, r in enumerate(shown):
        color = "black" if "p_holm" in r else "darkgrey"  # grey: not testable at this scale (no verdict)
        ax.plot([r["low"], r["high"]], [i, i], color=color)
        ax.plot(r["mean"], i, "o", color=color)
        if r["paper_effect"] is not None:
            ax.plot(r["paper_effect"], i, "x", color="tab:red")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(shown)), [r["id"] + ("" if "p_holm" in r else " (not testable)") for r in shown],
                  fontsize=7)
    ax.set_xlabel("a − b in points, 95 % bootstrap interval (grey: not testable); x: the paper's", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m reports.study_v2", description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=str(V2 / "parts"))
    parser.add_argument("--protocol", default=str(V2 / "protocol.yaml"))
    parser.add_argument("--burn-profile", default=None, help="for the names of BURN's configurations")
    parser.add_argument("--out", default=str(V2))
    args = parser.parse_args(argv)
    protocol = read_yaml_mapping(Path(args.protocol), "study protocol")
    from common.config import read_params_file
    burn_profile = args.burn_profile or str(Path(__file__).resolve().parents[1] / protocol["halves"]["burn"]["profile"])
    burn_variants = list((read_params_file(burn_profile).get("burn") or {}).get("variants") or {})
    if not Path(args.parts).is_dir():
        raise ConfigError(f"--parts {args.parts}: no such folder")
    values, per_image, records = load_parts(Path(args.parts))
    claims = C.load_claims()
    sanity = sanity_line(claims, per_image, protocol["gate"], burn_variants)
    rows = judge(claims, values, per_image, protocol, burn_variants, sanity)
    out = Path(args.out)
    write_json({"rows": rows, "sanity": sanity, "parts": records}, out / "verdicts.json")
    (out / "claims.md").write_text(to_markdown(rows, records, sanity))
    draw_forest(rows, out / "effects.png")
    print(f"{out}: {len(rows)} claims, {len(records)} parts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
