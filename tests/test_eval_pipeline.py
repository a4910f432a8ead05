"""eval.pipeline (the eval@<suite> stages) and eval.guard (diverged pretraining is reported)."""
import json

import pytest

from common.errors import ConfigError
from eval import pipeline
from eval.guard import NOT_RUN_DIVERGED, pretraining_diverged

PARAMS = {
    "cq": {"methods": ["simclr"], "variants": ["cq_a"], "backbones": ["r20"]},
    "burn": {"runs": ["burn"], "baselines": ["byol"], "teacher": {"method": "mocov2", "backbone": "resnet18"}},
    "eval": {"suites": {
        "linear": {"cli": "eval.linear", "checkpoints": ["cq", "burn/burn-stage2"],
                   "args": {"dataset": "synthetic", "options": {"seed": 1}, "cache_dir": "c", "ks": [1, 2]}},
        "ft": {"cli": "eval.finetune", "checkpoints": ["cq/simclr-cq_a-r20"],
               "variants": {"4bit": {"bits": 4}}, "args": {"flag": True, "off": False}},
        "tsne": {"cli": "eval.tsne", "together": True, "checkpoints": ["burn"], "args": {"seed": 0}},
    }},
}


def test_groups_expand_from_the_pretraining_lists():
    assert pipeline.expand_checkpoints(["cq", "burn", "cq"], PARAMS) == [
        "cq/simclr-baseline-r20", "cq/simclr-cq_a-r20",
        "burn/burn-stage2", "burn/baseline-s2bnn", "burn/baseline-byol"]
    assert pipeline.expand_checkpoints(["burn_teacher"], PARAMS) == ["burn/teacher-mocov2-resnet18"]
    with_ablation = {**PARAMS, "burn": {**PARAMS["burn"], "runs": ["fs_l1", "burn"]}}
    assert pipeline.expand_checkpoints(["burn_main"], with_ablation) == [
        "burn/burn-stage2", "burn/baseline-s2bnn", "burn/baseline-byol"]


def test_plan_builds_one_call_per_item_with_its_own_folder():
    calls = pipeline.plan(PARAMS, "linear")
    assert [str(c["out"]) for c in calls] == ["runs/eval/linear/cq/simclr-baseline-r20/s0",
                                               "runs/eval/linear/cq/simclr-cq_a-r20/s0",
                                               "runs/eval/linear/burn/burn-stage2/s0"]
    assert calls[0]["argv"] == ["--encoder", "runs/cq/simclr-baseline-r20/s0/encoder.pt", "--dataset", "synthetic",
                                "--options", "{seed: 1}", "--cache-dir", "c", "--ks", "1,2",
                                "--out", "runs/eval/linear/cq/simclr-baseline-r20/s0"]
    ft = pipeline.plan(PARAMS, "ft")
    assert [str(c["out"]) for c in ft] == ["runs/eval/ft/cq/simclr-cq_a-r20/s0/4bit"]
    assert ft[0]["argv"][2:] == ["--flag", "--bits", "4", "--out", "runs/eval/ft/cq/simclr-cq_a-r20/s0/4bit"]
    tsne = pipeline.plan(PARAMS, "tsne")
    assert len(tsne) == 1 and tsne[0]["argv"].count("--encoder") == 3


def test_every_seed_and_precision_set_is_evaluated_in_its_own_folder():
    params = {**PARAMS, "seeds": [3, 5],
              "cq": {**PARAMS["cq"], "precision_sets": {"sets": ["4-16"], "methods": ["simclr"], "variants": ["cq_a"]}},
              "eval": {"suites": {"knn": {"cli": "eval.knn", "checkpoints": ["cq_sets", "burn/burn-stage2"]},
                                  "tsne": {"cli": "eval.tsne", "together": True, "checkpoints": ["cq"]}}}}
    calls = pipeline.plan(params, "knn")
    assert [str(c["out"]) for c in calls] == ["runs/eval/knn/cq/simclr-cq_a-r20/p4-16/s3",
                                               "runs/eval/knn/cq/simclr-cq_a-r20/p4-16/s5",
                                               "runs/eval/knn/burn/burn-stage2/s3", "runs/eval/knn/burn/burn-stage2/s5"]
    assert calls[1]["encoders"] == ["runs/cq/simclr-cq_a-r20/p4-16/s5/encoder.pt"]
    tsne = pipeline.plan(params, "tsne")[0]  # one picture: the first seed of each run
    assert tsne["encoders"] == ["runs/cq/simclr-baseline-r20/s3/encoder.pt", "runs/cq/simclr-cq_a-r20/s3/encoder.pt"]
    assert tsne["argv"][:4] == ["--encoder", "runs/cq/simclr-baseline-r20/s3/encoder.pt", "--name", "simclr-baseline-r20"]


def test_suites_reading_files_get_the_data_root_unless_they_name_one():
    params = {**PARAMS, "data": {"root": "/data"}, "eval": {"suites": {
        "knn": {"cli": "eval.knn", "checkpoints": ["cq/x"], "args": {"dataset": "cifar10"}},
        "own": {"cli": "eval.knn", "checkpoints": ["cq/x"], "args": {"dataset": "cifar10", "root": "/mine"}},
        "gen": {"cli": "eval.knn", "checkpoints": ["cq/x"], "args": {"dataset": "synthetic"}},
        "tr": {"cli": "eval.transfer", "checkpoints": ["cq/x"], "args": {}, "variants": {"c100": {"dataset": "cifar100"}}},
        "svm": {"cli": "eval.svm", "checkpoints": ["cq/x"], "args": {}, "features": {"dataset": "voc07_cls"}}}}}
    assert pipeline.plan(params, "knn")[0]["argv"][2:6] == ["--dataset", "cifar10", "--root", "/data"]
    assert "/mine" in pipeline.plan(params, "own")[0]["argv"] and "/data" not in pipeline.plan(params, "own")[0]["argv"]
    assert "--root" not in pipeline.plan(params, "gen")[0]["argv"]
    assert pipeline.plan(params, "tr")[0]["argv"][2:6] == ["--dataset", "cifar100", "--root", "/data"]
    assert pipeline.plan(params, "svm")[0]["features"][2:6] == ["--dataset", "voc07_cls", "--root", "/data"]
    assert pipeline.plan(params, "svm")[0]["features"][-1] == "runs/features/svm/cq/x/s0.pt"


def test_unknown_suite_or_field_is_one_clear_error():
    with pytest.raises(ConfigError, match="--suite nope"):
        pipeline.plan(PARAMS, "nope")
    bad = {"eval": {"suites": {"x": {"cli": "eval.knn", "checkpoints": [], "typo": 1}}}}
    with pytest.raises(ConfigError, match="typo"):
        pipeline.plan(bad, "x")


def test_diverged_pretraining_writes_not_run_instead_of_evaluating(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for run, status in (("simclr-baseline-r20", "ok"), ("simclr-cq_a-r20", "diverged")):
        folder = tmp_path / "runs" / "cq" / run / "s0"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"status": status, "step": 3}))
        (folder / "encoder.pt").write_bytes(b"")
    called = []
    monkeypatch.setattr(pipeline, "call_cli", lambda module, argv: called.append(argv[1]))
    params = {**PARAMS, "eval": {"suites": {"linear": {**PARAMS["eval"]["suites"]["linear"], "checkpoints": ["cq"]}}}}
    pipeline.run_suite(params, "linear")
    assert called == ["runs/cq/simclr-baseline-r20/s0/encoder.pt"]
    assert pretraining_diverged("runs/cq/simclr-cq_a-r20/s0/encoder.pt")
    assert not pretraining_diverged("runs/cq/simclr-baseline-r20/s0/encoder.pt")
    written = json.loads((tmp_path / "runs/eval/linear/cq/simclr-cq_a-r20/s0/metrics.json").read_text())
    assert written["status"] == NOT_RUN_DIVERGED == "not run (pretraining diverged)"
    assert written["pretraining"]["step"] == 3
    assert not (tmp_path / "runs/eval/linear/cq/simclr-baseline-r20/s0").exists()


def test_summary_holds_one_headline_number_per_item_or_its_status(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    items = {"runs/eval/ft/cq/simclr-cq_a-r20/s0/4bit": {"status": "ok", "best": {"top1": 0.25, "top5": 0.5},
                                                         "provenance": {"host": "x"}},
             "runs/eval/ft/cq/simclr-cq_b-r20/s0/4bit": {"status": "not run (pretraining diverged)"}}
    for folder, metrics in items.items():
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "metrics.json").write_text(json.dumps(metrics))
    calls = [{"cli": "eval.finetune", "out": folder} for folder in items]
    calls.append({"cli": "eval.finetune", "out": "runs/eval/ft/cq/never-run/s0/4bit"})  # no file: left out
    assert pipeline.summarize(calls, "ft") == {"cq": {
        "simclr-cq_a-r20": {"s0": {"4bit": {"top1": 0.25}}},
        "simclr-cq_b-r20": {"s0": {"4bit": {"top1": "not run (pretraining diverged)"}}}}}
    assert str(pipeline.summary_path("ft")) == "runs/eval/ft.json"  # beside the folder, not in it


def test_every_metrics_suite_names_its_headline_number():
    import importlib
    for cli in ("eval.linear", "eval.knn", "eval.finetune", "eval.svm", "eval.transfer", "eval.detection"):
        assert isinstance(importlib.import_module(cli).HEADLINE, str), cli


def test_a_suite_with_snapshots_evaluates_each_snapshot_in_its_own_folder():
    params = {**PARAMS, "seeds": [0, 1], "burn": {**PARAMS["burn"], "appendix": {"runs": ["infomin-weak-r18"]}},
              "eval": {"suites": {
                  "lin": {"cli": "eval.linear", "checkpoints": ["burn_appendix"], "snapshots": [200, 400]},
                  "svm": {"cli": "eval.svm", "checkpoints": ["burn/baseline-byol"], "snapshots": [2],
                          "features": {"dataset": "synthetic_cls"}}}}}
    calls = pipeline.plan(params, "lin")
    assert [(c["encoders"][0], str(c["out"])) for c in calls] == [
        (f"runs/burn/appendix-infomin-weak-r18/s{s}/snapshots/encoder-e{e}.pt",
         f"runs/eval/lin/burn/appendix-infomin-weak-r18/s{s}/e{e}") for s in (0, 1) for e in (200, 400)]
    svm = pipeline.plan(params, "svm")[0]  # each snapshot gets its own features file
    assert svm["features"][:2] == ["--encoder", "runs/burn/baseline-byol/s0/snapshots/encoder-e2.pt"]
    assert svm["features"][-1] == "runs/features/svm/burn/baseline-byol/s0/e2.pt"
    for bad in ([], [0], ["200"], 200):
        params["eval"]["suites"]["lin"]["snapshots"] = bad
        with pytest.raises(ConfigError, match="eval.suites.lin.snapshots: expected a list of epochs"):
            pipeline.plan(params, "lin")
    together = {**PARAMS, "eval": {"suites": {"t": {**PARAMS["eval"]["suites"]["tsne"], "snapshots": [1]}}}}
    with pytest.raises(ConfigError, match="not 'together'"):
        pipeline.plan(together, "t")
