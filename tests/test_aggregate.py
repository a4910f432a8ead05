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


def write(root, rel, obj):
    path = root / "eval" / rel / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(obj))


@pytest.fixture()
def runs(tmp_path):
    write(tmp_path, "linear/burn/a", {"status": "ok", "top1": 0.25})
    write(tmp_path, "linear/burn/b", {"status": "not run (pretraining diverged)"})
    write(tmp_path, "linear/burn/c", {"status": "diverged", "top1": 0.1})
    # burn/d has no linear metrics -> not run
    write(tmp_path, "svm/burn/d", {"status": "ok", "full": {"map": 0.5},
                                   "lowshot": {"1": {"cv": {"mean": 0.125, "std": 0.5}}}, "settings": {"samples": 2}})
    write(tmp_path, "finetune/cq/x/fp", {"top5": 42.0})  # no status -> ok
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
        (tmp_path / run).mkdir(parents=True)
        (tmp_path / run / "metrics.json").write_text(json.dumps({"method": {"precision_set": list(bits)}}))
        write(tmp_path, f"finetune/{run}/fp-1pct", {"status": "ok", "top1": 0.5})
    mapping = {"profile": "mini", "report": {"tables": {"cq_table9": {
        "rows": {"ResNet-18 / {precision}": "cq/a", "ResNet-34 / {precision}": "cq/b",
                 "ResNet-74 / {precision}": "cq/missing", "ResNet-110 / {precision}": "cq/c"},
        "columns": {"Fine-tune Acc. (FP) / 1% labels": "finetune/fp-1pct:top1*100"}}}}}
    cells = aggregate(mapping, tmp_path)["tables"]["cq_table9"]["cells"]
    assert cells == {"ResNet-18 / 4-16": {"Fine-tune Acc. (FP) / 1% labels": 50.0},
                     "ResNet-34 / 8-16": {"Fine-tune Acc. (FP) / 1% labels": 50.0}}  # 5-16: no such row
