"""reports/claims.py: the verdict logic on inputs whose answer is known, and the claims file itself."""
import json
import math

import pytest

from common.errors import ConfigError
from reports import claims as C

A = {"paper": "cq", "method": "simclr", "variant": "cq_c"}
B = {"paper": "cq", "method": "simclr", "variant": "baseline"}
LINEAR = {"suite": "linear", "key": "top1", "scale": 100}


def claim(direction="greater", paper_effect=1.0):
    return C.Claim(id="x", paper="cq", where="Table 0", claim="a beats b", a=A, b=B, eval=LINEAR,
                   direction=direction, paper_effect=paper_effect)


def values(a, b):
    key_a, key_b = C.measurement_key(A, LINEAR), C.measurement_key(B, LINEAR)
    return {key_a: dict(enumerate(a)), key_b: dict(enumerate(b))}


def test_interval_and_detectable_effect_follow_the_t_distribution():
    effect = C.paired_effect({0: 3.0, 1: 4.0, 2: 5.0}, {0: 2.0, 1: 2.0, 2: 2.0})  # d = 1, 2, 3
    assert (effect.n, effect.mean, effect.sd) == (3, 2.0, 1.0)
    half = 4.302652729749464 / math.sqrt(3)  # t(0.975, 2)
    assert effect.low == pytest.approx(2 - half) and effect.high == pytest.approx(2 + half)
    assert effect.min_detectable == pytest.approx((4.302652729749464 + 1.0606601717798212) / math.sqrt(3))
    assert C.verdict(effect, "greater") == C.INCONCLUSIVE  # [-0.48, 4.48] contains zero


@pytest.mark.parametrize("a, b, direction, expected", [
    ([0.520, 0.525, 0.515], [0.50, 0.50, 0.50], "greater", C.HOLDS),  # +2 +- 0.5: [0.76, 3.24]
    ([0.480, 0.475, 0.485], [0.50, 0.50, 0.50], "greater", C.REVERSED),
    ([0.480, 0.475, 0.485], [0.50, 0.50, 0.50], "less", C.HOLDS),
    ([0.50, 0.50, 0.50], [0.50, 0.50, 0.50], "greater", C.INCONCLUSIVE),  # exact ties: [0, 0]
    ([0.60, 0.40, 0.55], [0.50, 0.50, 0.50], "greater", C.INCONCLUSIVE),
    ([0.60], [0.50], "greater", C.INCONCLUSIVE),  # n = 1: no interval
])
def test_verdicts_on_known_answers(a, b, direction, expected):
    row = C.judge([claim(direction)], values(a, b))[0]
    assert row["verdict"] == expected
    assert row["n"] == len(a)
    if len(a) == 1:
        assert row["low"] is None and row["mean"] == pytest.approx(10.0) and "no interval" in C.interval_text(row)


def test_a_diverged_seed_drops_out_of_the_pairs_and_is_reported():
    row = C.judge([claim()], values([0.520, "diverged", 0.525, 0.515], [0.50, 0.50, 0.50, 0.50]))[0]
    assert row["n"] == 3 and list(row["dropped"]) == ["1"] and "diverged" in row["dropped"]["1"]
    assert row["verdict"] == C.HOLDS and "1 seed(s) without a number" in C.verdict_text(row)
    gone = C.judge([claim()], values(["diverged"] * 3, [0.5] * 3))[0]
    assert gone["n"] == 0 and gone["verdict"] == C.INCONCLUSIVE and C.interval_text(gone) == "no pairs"
    missing = C.judge([claim()], {})[0]  # an arm never measured: the study did not run it
    assert missing["n"] == 0 and missing["verdict"] == C.NOT_RUN
    # one arm measured, the other never run (outside the study's scope): not run, not inconclusive,
    # even when the measured arm fails the sanity line
    half = C.judge([claim()], {k: v for k, v in values([0.5, 0.6], [0.5, 0.5]).items()
                               if k.startswith(C.arm_name(A))}, {C.arm_name(A): {"knn": 1.0}})[0]
    assert half["verdict"] == C.NOT_RUN and C.verdict_text(half) == C.NOT_RUN


def test_an_arm_below_the_sanity_line_makes_the_claim_not_testable():
    sanity = {C.arm_name(A): {"knn": 12.0, "linear": 4.0}, C.arm_name(B): {"knn": 15.0, "linear": 11.0}}
    row = C.judge([claim()], values([0.6, 0.61, 0.62], [0.5, 0.5, 0.5]), sanity)[0]
    assert row["verdict"] == C.NOT_TESTABLE and row["failed_sanity"] == ["cq/simclr/cq_c"]
    ok = {**sanity, C.arm_name(A): {"knn": 12.0, "linear": 10.0}}
    assert C.judge([claim()], values([0.6, 0.61, 0.62], [0.5, 0.5, 0.5]), ok)[0]["verdict"] == C.HOLDS


def test_paper_effect_inside_or_outside_the_interval():
    inside = C.judge([claim(paper_effect=10.0)], values([0.60, 0.61, 0.59], [0.5, 0.5, 0.5]))[0]
    assert inside["paper_inside"] is True
    outside = C.judge([claim(paper_effect=1.0)], values([0.60, 0.61, 0.59], [0.5, 0.5, 0.5]))[0]
    assert outside["paper_inside"] is False
    assert C.judge([claim(paper_effect=None)], values([0.6] * 3, [0.5] * 3))[0]["paper_inside"] is None


def test_the_claims_file_holds_every_headline_claim_with_the_papers_effect():
    claims = {c.id: c for c in C.load_claims()}
    required = ["cq_c_vs_simclr_ft_fp10", "cq_c_vs_simclr_ft_fp1", "cq_c_vs_simclr_ft_4bit10",
                "cq_c_vs_simclr_linear", "cq_a_vs_simclr_linear", "cq_c_on_byol_vs_byol", "cq_c_vs_cq_a",
                "cq_c_vs_cq_b", "cq_b_gradient_explosion", "cq_quant_vs_no_ssl", "cq_low_precision_set_helps_4bit",
                "burn_vs_s2bnn", "burn_vs_byol", "burn_vs_mocov2", "burn_vs_swav", "burn_ladder_feature_similarity",
                "burn_ladder_dynamic_balance", "burn_ladder_multi_stage", "burn_cosine_vs_l1", "burn_cosine_vs_l2",
                "burn_lambda_cosine_vs_constant", "burn_lambda_cosine_vs_step", "burn_lowshot_k1_vs_s2bnn"]
    assert not set(required) - set(claims)
    # read from the transcribed tables, not typed in: CQ Table 5 ResNet-74, BURN Tables 2, 5
    assert claims["cq_c_vs_simclr_linear"].paper_effect == pytest.approx(54.06 - 52.96)
    assert claims["burn_vs_s2bnn"].paper_effect == pytest.approx(62.29 - 61.50)
    assert claims["burn_ladder_multi_stage"].paper_effect == pytest.approx(62.29 - 61.43)
    assert claims["cq_b_gradient_explosion"].paper_effect is None
    # the papers claim an improvement in every case
    assert all(c.direction == "greater" for c in claims.values())
    assert all(c.paper_effect is None or c.paper_effect > 0 for c in claims.values())


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(id="cq_c_vs_simclr_ft_fp1"), "duplicate id"),
    (lambda c: c.update(direction="bigger"), "direction: expected one of"),
    (lambda c: c["paper_effect"].update(table="cq_table99"), "unknown table 'cq_table99'"),
    (lambda c: c["paper_effect"].update(a=["ResNet-999 / CQ-C", "x"]), "no cell ('ResNet-999 / CQ-C', 'x')"),
    (lambda c: c.pop("where"), "expected the fields"),
])
def test_a_bad_claims_file_is_one_clear_error(tmp_path, edit, message):
    import yaml
    data = yaml.safe_load(C.CLAIMS.read_text())
    edit(data["claims"][0])
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        C.load_claims(path)


def test_cli_writes_the_table_the_latex_and_the_figure(tmp_path):
    claims = C.load_claims()
    measured = {}  # every b arm at 50 %, every a arm at 55 % (+-0.5); an arm that is both: a
    for c in claims:
        measured.setdefault(C.measurement_key(c.b, c.eval), {str(s): 0.50 for s in range(3)})
    for c in claims:
        measured[C.measurement_key(c.a, c.eval)] = {str(s): 0.55 + 0.005 * (s - 1) for s in range(3)}
    (tmp_path / "values.json").write_text(json.dumps(measured))
    (tmp_path / "sanity.json").write_text("{}")  # no sanity numbers (else read from the values)
    assert C.main(["--values", str(tmp_path / "values.json"), "--sanity", str(tmp_path / "sanity.json"),
                   "--out", str(tmp_path / "out")]) == 0
    rows = json.loads((tmp_path / "out" / "verdicts.json").read_text())
    assert len(rows) == len(claims)
    for row, c in zip(rows, claims):
        both_a = any(c.b == other.a and c.eval == other.eval for other in claims)
        assert row["verdict"] == (C.INCONCLUSIVE if both_a else C.HOLDS), row["id"]
    md = (tmp_path / "out" / "claims.md").read_text()
    verdict_table = md.split("## Sanity line")[0]
    assert verdict_table.count("\n| ") == len(rows) + 1 and "holds" in md
    assert r"\begin{tabular}" in (tmp_path / "out" / "claims.tex").read_text()
    assert (tmp_path / "out" / "claims.png").stat().st_size > 5000


def fake_run(root, rel, seed, metrics=None, grad=None):
    folder = root / rel / f"s{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    if grad is not None:
        curve = folder / "dvclive" / "plots" / "metrics" / "train" / "grad_norm"
        curve.mkdir(parents=True)
        (curve / "total.tsv").write_text("step\ttotal\n" + "".join(f"{i}\t{g}\n" for i, g in enumerate(grad)))


def test_measurements_come_from_the_runs_through_the_run_contract(tmp_path):
    params = {"precision": "6-16", "cq": {"backbones": ["r20"]},
              "burn": {"variants": {"burn": {}}, "student": "bnn", "teacher": {"method": "mocov2", "backbone": "r18"}}}
    for seed in (0, 1):
        fake_run(tmp_path, "cq/simclr-baseline-r20", seed, {"status": "ok"}, grad=[1.0, 2.0])
        fake_run(tmp_path, "cq/simclr-cq_c-r20", seed, {"status": "ok", "method": {"precision_set": list(range(6, 17))}},
                 grad=[1.0, "nan", 5.0])
        for rel, knn, linear in (("cq/simclr-baseline-r20", 0.40, 0.45), ("cq/simclr-cq_c-r20", 0.42 + 0.01 * seed, 0.50),
                                 ("cq/random_init-r20", 0.28, 0.30)):
            fake_run(tmp_path, f"eval/knn/{rel}", seed, {"status": "ok", "top1": knn})
            fake_run(tmp_path, f"eval/linear/{rel}", seed, {"status": "ok", "top1": linear})
    fake_run(tmp_path, "eval/linear/burn/burn-stage2", 0, {"status": "not run (pretraining diverged)"})
    for rel, top1 in (("burn/baseline-s2bnn", 0.35), ("burn/random_init-bnn", 0.30), ("burn/teacher-mocov2-r18", 0.55)):
        for suite in ("knn", "linear"):
            fake_run(tmp_path, f"eval/{suite}/{rel}", 0, {"status": "ok", "top1": top1})
    claims = [c for c in C.load_claims() if c.id in ("cq_c_vs_simclr_linear", "cq_b_gradient_explosion", "burn_vs_s2bnn")]
    values = C.harvest(claims, params, tmp_path)
    assert values["cq/simclr/cq_c linear:top1"] == {0: 0.50, 1: 0.50}
    assert values["cq/simclr/baseline linear:top1"] == {0: 0.45, 1: 0.45}
    assert values["cq/simclr/cq_c pretrain:grad_norm_peak"] == {0: 5.0, 1: 5.0}  # "nan" skipped
    assert values["cq/simclr/cq_b pretrain:grad_norm_peak"] == {}  # not trained: no seeds, no pairs
    assert values["burn/burn linear:top1"] == {0: "not run (pretraining diverged)"}
    assert C.run_key({"paper": "burn", "run": "s2bnn"}, params) == "burn/baseline-s2bnn"
    margins = C.sanity(claims, values)
    assert margins["cq/simclr/cq_c"] == {"knn": pytest.approx(14.5), "linear": pytest.approx(20.0)}
    assert margins["cq/simclr/baseline"] == {"knn": pytest.approx(12.0), "linear": pytest.approx(15.0)}
    assert margins["burn/s2bnn"] == {"knn": pytest.approx(5.0), "linear": pytest.approx(5.0)}  # vs its random init
    row = C.judge(claims[:1], values, margins)[0]
    assert row["id"] == "cq_c_vs_simclr_linear" and row["n"] == 2 and row["mean"] == pytest.approx(5.0)
    assert C.judge(claims[2:], values, margins)[0]["verdict"] == C.NOT_TESTABLE  # burn_vs_s2bnn: s2bnn < +10
    table = {r["arm"]: r for r in C.sanity_rows(claims, values)}
    assert table["cq/simclr/cq_c"]["passes"] is True and table["burn/s2bnn"]["passes"] is False
    assert table["burn/teacher (FP)"]["linear"] == pytest.approx(55.0) and table["burn/teacher (FP)"]["passes"] is None
    assert "burn/burn" not in table  # no number on any seed: not listed
    page = C.sanity_markdown(C.sanity_rows(claims, values))
    assert "| burn/s2bnn | 1 | 35.00 | +5.00 | 35.00 | +5.00 | **no** |" in page
    assert "| cq/simclr/cq_c | 2 | " in page and "| 50.00 ± 0.00 | +20.00 | yes |" in page  # two equal seeds
    # a finished evaluation without the claim's number: the claims file names a key the suite does not write
    fake_run(tmp_path, "eval/linear/burn/burn-stage2", 0, {"status": "ok", "top5": 0.9})
    with pytest.raises(ConfigError, match=r"burn-stage2/s0/metrics.json: no value at 'top1'"):
        C.harvest(claims, params, tmp_path)



def test_per_image_correctness_is_harvested_from_the_suites_that_keep_predictions(tmp_path):
    import torch

    from common import predictions

    params = {"precision": "6-16", "cq": {"backbones": ["r20"]}}
    scores = torch.eye(4)[[0, 1, 2, 3, 0, 1]]  # predictions 0 1 2 3 0 1
    targets = torch.tensor([0, 1, 2, 0, 0, 3])  # right on images 0, 1, 2, 4
    fake_run(tmp_path, "eval/linear/cq/simclr-cq_c-r20", 1,
             {"status": "ok", "top1": 4 / 6, **predictions.encode(scores, targets)})
    fake_run(tmp_path, "eval/linear/cq/simclr-baseline-r20", 1, {"status": "ok", "top1": 0.5})  # an old run: no predictions
    fake_run(tmp_path, "eval/linear/cq/simclr-cq_c-r20", 2, {"status": "diverged"})
    claims = [c for c in C.load_claims() if c.id in ("cq_c_vs_simclr_linear", "cq_b_gradient_explosion")]
    found = C.harvest_per_image(claims, params, tmp_path)
    assert list(predictions.unpack_correct(found["cq/simclr/cq_c linear:top1"][1])) == [1, 1, 1, 0, 1, 0]
    assert found["cq/simclr/baseline linear:top1"] == {}  # and the diverged seed is left out above
    assert not any("pretrain" in key for key in found)  # gradient norms have no per-image scores
