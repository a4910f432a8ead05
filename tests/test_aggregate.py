"""reports.aggregate on fixed metrics files: which run feeds which cell, statuses, scales."""
import json

import pytest

from common.errors import ConfigError
from reports.aggregate import aggregate, main

MAPPING = {
    "profile": "smoke",
    "report": {
        "context": {"dataset": "synthetic"},
        "contexts": {"burn": {"network": "reactnet_a (tiny)"}},
        "tables": {
            "burn_table5": {"rows": {"①": "burn/a", "①+②": "burn/b", "①+②+③": "burn/c", "①+②+③+④ (=BURN)": "burn/d"},
                            "columns": {"Top-1 (%)": "linear:top1*100"}},
            "burn_table3": {"rows": {"BURN (Ours)": "burn/d"},
                            "columns": {"k = 1": {"suite": "svm", "key": "lowshot.1.cv.mean", "std": "lowshot.1.cv.std",
                                                  "n": "settings.samples", "scale": 100},
                                        "Full": "svm:full.map*100"}},
            "cq_table2": {"context": {"network": "r20"},
                          "cells": [["ResNet-18", "CQ-C", "cq/x", "finetune/fp:top5"]]},
        },
    },
}


def write(root, suite, run, obj, seed=0, variant=""):
    """An evaluation's metrics.json where common/runs.py puts it: eval/<suite>/<run>/s<seed>/[variant]."""
    path = root / "eval" / suite / run / f"s{seed}" / variant / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(obj))


def pretrained(root, run, bits, seed=0):
    """A CQ pretraining run's metrics.json, recording the precision set it drew from."""
    (root / run / f"s{seed}").mkdir(parents=True)
    (root / run / f"s{seed}" / "metrics.json").write_text(json.dumps({"method": {"precision_set": list(bits)}}))


@pytest.fixture()
def runs(tmp_path):
    write(tmp_path, "linear", "burn/a", {"status": "ok", "top1": 0.25})
    write(tmp_path, "linear", "burn/b", {"status": "not run (pretraining diverged)"})
    write(tmp_path, "linear", "burn/c", {"status": "diverged", "top1": 0.1})
    # burn/d has no linear metrics -> not run
    write(tmp_path, "svm", "burn/d", {"status": "ok", "full": {"map": 0.5},
                                      "lowshot": {"1": {"cv": {"mean": 0.125, "std": 0.5}}}, "settings": {"samples": 2}})
    write(tmp_path, "finetune", "cq/x", {"top5": 42.0}, variant="fp")  # no status -> ok
    return tmp_path


def test_cells_statuses_and_scales(runs):
    got = aggregate(MAPPING, runs)
    assert got == {
        "context": {"profile": "smoke", "dataset": "synthetic"},
        "tables": {
            "burn_table5": {"context": {"network": "reactnet_a (tiny)"},
                            "cells": {"①": {"Top-1 (%)": 25.0}, "①+②": {"Top-1 (%)": "diverged"},
                                      "①+②+③": {"Top-1 (%)": "diverged"},
                                      "①+②+③+④ (=BURN)": {"Top-1 (%)": "not run"}}},
            "burn_table3": {"context": {"network": "reactnet_a (tiny)"},
                            "cells": {"BURN (Ours)": {"k = 1": {"value": 12.5, "std": 50.0, "n": 2}, "Full": 50.0}}},
            "cq_table2": {"context": {"network": "r20"}, "cells": {"ResNet-18": {"CQ-C": 42.0}}},
        },
    }


def test_cli_writes_json_and_mapping_typos_are_errors(runs, tmp_path):
    import yaml
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(MAPPING, allow_unicode=True))
    out = tmp_path / "measured.json"
    assert main(["--out", str(out), "--params", str(params), "--runs", str(runs)]) == 0
    assert json.loads(out.read_text()) == aggregate(MAPPING, runs)

    bad_row = {**MAPPING, "report": {"tables": {"burn_table5": {"rows": {"nope": "burn/a"},
                                                                "columns": {"Top-1 (%)": "linear:top1"}}}}}
    with pytest.raises(ConfigError, match="nope"):
        aggregate(bad_row, runs)
    bad_key = {**MAPPING, "report": {"tables": {"burn_table5": {"rows": {"①": "burn/a"},
                                                                "columns": {"Top-1 (%)": "linear:top9"}}}}}
    with pytest.raises(ConfigError, match="top9"):
        aggregate(bad_key, runs)
    with pytest.raises(ConfigError, match="source"):
        aggregate({**MAPPING, "report": {"tables": {"burn_table5": {"rows": {"①": "burn/a"},
                                                                    "columns": {"Top-1 (%)": "no colon"}}}}}, runs)


def test_precision_rows_name_the_set_each_run_used(tmp_path):
    """CQ Table 9: "{precision}" in a row key comes from the run's own pretraining metrics."""
    for run, bits in (("cq/a", range(4, 17)), ("cq/b", range(8, 17)), ("cq/c", range(5, 17))):
        pretrained(tmp_path, run, bits)
        write(tmp_path, "finetune", run, {"status": "ok", "top1": 0.5}, variant="fp-1pct")
    mapping = {"profile": "mini", "report": {"tables": {"cq_table9": {
        "rows": {"ResNet-18 / {precision}": "cq/a", "ResNet-34 / {precision}": "cq/b",
                 "ResNet-74 / {precision}": "cq/missing", "ResNet-110 / {precision}": "cq/c"},
        "columns": {"Fine-tune Acc. (FP) / 1% labels": "finetune/fp-1pct:top1*100"}}}}}
    cells = aggregate(mapping, tmp_path)["tables"]["cq_table9"]["cells"]
    assert cells == {"ResNet-18 / 4-16": {"Fine-tune Acc. (FP) / 1% labels": 50.0},
                     "ResNet-34 / 8-16": {"Fine-tune Acc. (FP) / 1% labels": 50.0}}  # 5-16: no such row


def test_several_seeds_give_the_mean_and_the_95_percent_t_interval(tmp_path):
    for seed, top1 in ((0, 0.50), (1, 0.52), (2, 0.54)):
        write(tmp_path, "linear", "burn/a", {"status": "ok", "top1": top1}, seed=seed)
        write(tmp_path, "linear", "burn/d", {"status": "ok" if seed != 1 else "diverged", "top1": top1}, seed=seed)
    mapping = {"profile": "mini", "report": {"tables": {"burn_table5": {
        "rows": {"①": "burn/a", "①+②+③+④ (=BURN)": "burn/d"}, "columns": {"Top-1 (%)": "linear:top1*100"}}}}}
    cells = aggregate(mapping, tmp_path)["tables"]["burn_table5"]["cells"]
    cell = cells["①"]["Top-1 (%)"]
    assert cell["n"] == 3 and cell["value"] == pytest.approx(52.0) and cell["std"] == pytest.approx(2.0)
    assert cell["half"] == pytest.approx(4.302652729749464 * 2.0 / 3 ** 0.5)  # t(0.975, 2) * sd / sqrt(n)
    assert cells["①+②+③+④ (=BURN)"]["Top-1 (%)"] == "diverged"  # one diverged seed is never averaged away


def test_every_precision_set_of_a_run_fills_its_own_row(tmp_path):
    """CQ Table 9 side by side: the run at the profile's precision plus its p<set> runs (@*)."""
    pretrained(tmp_path, "cq/c", range(6, 17))
    for bits in (range(4, 17), range(8, 17)):
        pretrained(tmp_path, f"cq/c/p{bits[0]}-16", bits)
    for where, top1 in (("cq/c", 0.6), ("cq/c/p4-16", 0.4), ("cq/c/p8-16", 0.8)):
        write(tmp_path, "finetune", where, {"status": "ok", "top1": top1}, variant="fp-1pct")
    mapping = {"profile": "mini", "report": {"tables": {"cq_table9": {
        "rows": {"ResNet-18 / {precision}": "cq/c@*"},
        "columns": {"Fine-tune Acc. (FP) / 1% labels": "finetune/fp-1pct:top1*100"}}}}}
    cells = aggregate(mapping, tmp_path)["tables"]["cq_table9"]["cells"]
    assert {row: c["Fine-tune Acc. (FP) / 1% labels"] for row, c in cells.items()} == {
        "ResNet-18 / 6-16": 60.0, "ResNet-18 / 4-16": 40.0, "ResNet-18 / 8-16": 80.0}


def test_headline_names_a_few_cells_with_short_labels(runs):
    from reports.aggregate import headline
    measured = aggregate(MAPPING, runs)
    spec = {"burn5.1": ["burn_table5", "①", "Top-1 (%)"], "burn5.4": ["burn_table5", "①+②+③+④ (=BURN)", "Top-1 (%)"],
            "burn3.k1": ["burn_table3", "BURN (Ours)", "k = 1"]}
    assert headline(measured, spec) == {"burn5.1": 25.0, "burn5.4": "not run", "burn3.k1": 12.5}
    with pytest.raises(ConfigError, match="no cell"):
        headline(measured, {"x": ["burn_table5", "nope", "Top-1 (%)"]})
    with pytest.raises(ConfigError, match="not in the mapping"):
        headline(measured, {"x": ["cq_table9", "ResNet-18 / 4-16", "Fine-tune Acc. (FP) / 10% labels"]})
