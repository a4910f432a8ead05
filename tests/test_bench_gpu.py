"""bench/gpu.py (with bench/gpu_cost.py and bench/gpu_report.py): the projection arithmetic on known rates, and the whole script in its tiny CPU mode
(no GPU here): every stage runs through the real CLIs and the report says that no GPU was found."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import gpu_cost as cost  # noqa: E402
from bench import gpu_report  # noqa: E402


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench/gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def rates(gpu, **ips):
    return [cost.Result(stage.replace("__", "/"), "", 256, "bf16", value) for stage, value in ips.items()]


def test_pretraining_cost_is_epochs_times_images_over_rate(gpu):
    from common.config import load_params

    params = load_params(ROOT / "profiles/paper.yaml")
    results = rates(gpu, cq_pretrain__cq_c__resnet18=1000.0, cq_pretrain__baseline__resnet18=2000.0,
                    cq_pretrain__cq_c__resnet34=500.0, burn_stage1=400.0, burn_stage2=400.0)
    images = 1_281_167
    cq_c = cost.pretraining_cost(results, params, "cq/simclr-cq_c-resnet18")
    assert cq_c.hours == pytest.approx(100 * images / 1000.0 / 3600) and cq_c.approx == ""
    # CQ-B is projected from CQ-C (same forwards per image), and says so
    b = cost.pretraining_cost(results, params, "cq/simclr-cq_b-resnet18")
    assert b.hours == pytest.approx(cq_c.hours) and b.approx.startswith("~")
    # SimCLR on ResNet-34: SimCLR ResNet-18 scaled by the measured CQ-C ResNet-34 / ResNet-18 ratio
    r34 = cost.pretraining_cost(results, params, "cq/simclr-baseline-resnet34")
    assert r34.hours == pytest.approx(100 * images / (2000.0 * 500 / 1000) / 3600)
    # BURN: 200 epochs per stage; tuned MoCo v2 runs S2-BNN's two stages (projected from BURN's rate)
    assert cost.pretraining_cost(results, params, "burn/burn-stage2").hours == pytest.approx(200 * images / 400 / 3600)
    moco = cost.pretraining_cost(results, params, "burn/baseline-mocov2_tuned")
    assert moco.hours == pytest.approx(2 * 200 * images / 400 / 3600) and moco.approx
    # the imported teacher costs nothing; an unmeasured kind is None, not a guess
    assert cost.pretraining_cost(results, params, "burn/teacher-mocov2-resnet50").hours == 0.0
    small = load_params(ROOT / "profiles/paper_small_data.yaml")
    assert cost.pretraining_cost(results, small, "cq/byol-cq_c-resnet18").hours is None


def test_tables_sum_the_runs_and_evaluations_they_read(gpu):
    from common import runs
    from common.config import load_params

    params = load_params(ROOT / "profiles/paper.yaml")
    report = {"tables": {"t": {
        "rows": {"a": "cq/simclr-cq_c-resnet18@*", "b": "burn/burn-stage2"},
        "columns": {"x": "linear:top1*100", "y": {"suite": "detection", "key": "AP.mean"}}}}}
    run_keys, evals = cost.table_parts(report, runs.pretraining_keys(params))["t"]
    # the wildcard takes the 8-16 run too; a stage-2 run brings its stage 1
    assert run_keys == {"cq/simclr-cq_c-resnet18", "cq/simclr-cq_c-resnet18@8-16", "burn/burn-stage2",
                        "burn/burn-stage1"}
    assert ("detection", None, "burn/burn-stage2") in evals and len(evals) == 6


def test_burn_appendix_figures_are_projected_from_their_runs_and_snapshot_evaluations(gpu):
    from common import runs
    from common.config import load_params
    from reports.mapping import read_mapping

    params = load_params(ROOT / "profiles/paper_small_data.yaml")
    parts = cost.table_parts(read_mapping(ROOT / "reports/mapping/paper_small_data.yaml"), runs.pretraining_keys(params))
    fig6_runs, fig6_evals = parts["burn_fig6_infomin_views"]
    assert fig6_runs == {"burn/baseline-infomin", "burn/baseline-simclrv2", "burn/appendix-infomin-weak_views-reactnet_a"}
    assert len(fig6_evals) == 9 and ("linear_snapshots", "e200", "burn/baseline-simclrv2") in fig6_evals
    fig7_runs, fig7_evals = parts["burn_fig7_negatives"]
    assert len(fig7_runs) == 6 and len(fig7_evals) == 12  # 6 runs x (linear, SVM)
    results = rates(gpu, burn_baseline__infomin=500.0, burn_stage2=400.0)
    images = 126_689
    weak = cost.pretraining_cost(results, params, "burn/appendix-infomin-weak_views-reactnet_a")
    assert weak.hours == pytest.approx(600 * images / 500.0 / 3600) and weak.approx == ""
    fp = cost.pretraining_cost(results, params, "burn/appendix-infomin-negatives_1_16-resnet50")
    assert fp.hours == pytest.approx(weak.hours) and fp.approx  # FP network at the binary one's rate, marked


@pytest.mark.parametrize("cores", [16, 8, 3])
def test_the_checks_folder_keeps_every_worker_busy(gpu, cores):
    """On the GPU check's own settings, one epoch of the generated folder is at least 4 batches
    per loader worker, and the workers are the machine's cores but two."""
    s = gpu.settings(False, 90, 256, cores=cores)
    assert s.workers == cores - 2
    batches_per_epoch = s.per_class * 10 // s.batch  # drop_last, as the engine
    assert batches_per_epoch >= 4 * s.workers
    if cores == 16:
        assert s.per_class * 10 >= 14 * 256 * 4


def test_a_stage_feed_is_the_engines_loader_with_its_views(gpu, tmp_path):
    """The loader alone of a CQ and a BURN stage on a tiny folder: the CQ-C stage crops the slots
    its method uses, every image of the timed window counted once."""
    s = gpu.Settings(True, 2, 4, 1, 48, 6, 60)
    folder = gpu.make_folder(tmp_path / "images", s)
    assert sum(1 for _ in (folder / "train").rglob("*.jpg")) == 60
    params = gpu.check_params("paper", s, folder, tmp_path / "unused.pth")
    cq = gpu.stage_feed(params, "cq", "cq_c", s, gpu.torch.device("cpu"))
    burn = gpu.stage_feed(params, "burn", "burn", s, gpu.torch.device("cpu"))
    for feed in (cq, burn):
        assert feed["workers"] == 1 and feed["epoch_batches"] == 60 // 4
        assert feed["batches"] == feed["epoch_batches"] - 1  # the first round left out
        assert feed["images_per_s"] > 0 and feed["per_worker"] == feed["images_per_s"]
    assert cq["slots"] == 2


def test_the_report_says_what_bounds_each_run(gpu):
    row = cost.Result("burn_stage1", "", 256, "bf16", 900.0, reference=1000.0, extra={"loader": {"images_per_s": 1000.0}})
    assert gpu_report.bound_by(row) == "loader"
    row.images_per_s = 500.0
    assert gpu_report.bound_by(row) == "step"
    assert gpu_report.bound_by(cost.Result("x", "", 1, "fp32", 10.0)) == "-"


@pytest.mark.e2e
def test_gpu_check_runs_on_a_cpu_in_its_tiny_mode(tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "bench/gpu.py", "--out", str(out), "--work", str(tmp_path / "work")],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no GPU found" in proc.stdout
    report = (out / "cpu-tiny.md").read_text()
    assert "No GPU was found" in report and "| burn_stage1 |" in report and "cq_table1" in report
    stages = json.loads((out / "cpu-tiny.json").read_text())
    assert {s["stage"] for s in stages["results"]} >= {"cq_pretrain/cq_c/resnet18", "burn_stage1", "burn_stage2",
                                            "eval/linear", "eval/finetune", "eval/detection", "cq_small/cq_c/resnet18"}
    assert all(s["status"] == "ok" and s["images_per_s"] > 0 for s in stages["results"])
    assert stages["resume"] == "ok" and stages["device"] == "cpu-tiny"
    pretraining = [r for r in stages["results"] if r["stage"].startswith(("cq_", "burn_stage"))]
    assert pretraining and all(r["extra"]["loader"]["images_per_s"] > 0 for r in pretraining)
    assert "| loader alone images/s |" in report
    assert "TARGET quantizer_exact_under_bf16:" in proc.stdout and "TARGET resume_of_a_finished_run: ok" in proc.stdout
    n = len(stages["results"])
    assert f"TARGET stages_complete: {n}/{n}" in proc.stdout
