"""study/archive.py: a part's run records are its arms' run folders at its seed (and the teacher at
its own), with metrics, curves and evaluation metrics, per-image predictions left to the part file."""
import json

from study.archive import archive_part, part_folders, read_curves


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


def fake_runs(root):
    for seed in (1, 2):
        run = root / "burn" / "burn-stage2" / f"s{seed}"
        write(run / "metrics.json", {"status": "ok", "final_loss": 0.5 + seed})
        write(run / "dvclive" / "metrics.json", {"step": 400})
        write(run / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv", "step\tloss\n0\t2.5\n10\t1.25\n")
        write(root / "eval" / "knn" / "burn" / "burn-stage2" / f"s{seed}" / "metrics.json",
              {"top1": 40.0 + seed, "predictions": {"format": "base64-uint8", "n": 2, "top1": "AAE=", "targets": "AAE="}})
    write(root / "burn" / "teacher-mocov2-resnet18" / "s0" / "metrics.json", {"status": "ok"})
    write(root / "burn" / "baseline-byol" / "s1" / "metrics.json", {"status": "ok"})  # another part's arm
    write(root / "eval" / "linear" / "burn" / "burn-stage2" / "s1" / "metrics.json", {"top1": 1.0})  # not its suite


def test_a_part_keeps_its_arms_at_its_seed_and_the_teacher(tmp_path):
    runs = tmp_path / "runs"
    fake_runs(runs)
    keys, teacher = {"burn/burn-stage2", "burn/teacher-mocov2-resnet18"}, {"burn/teacher-mocov2-resnet18"}
    folders = [f.relative_to(runs).as_posix() for f in part_folders(runs, keys, 1, teacher, ["knn"])]
    assert folders == ["burn/burn-stage2/s1", "burn/teacher-mocov2-resnet18/s0", "eval/knn/burn/burn-stage2/s1"]
    written = archive_part(runs, tmp_path / "out", keys, 1, teacher, ["knn"])
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == [
        "burn/burn-stage2/s1.json", "burn/teacher-mocov2-resnet18/s0.json", "eval/knn/burn/burn-stage2/s1.json"]
    stage2 = json.loads(written[0].read_text())
    assert stage2["metrics"]["final_loss"] == 1.5 and stage2["curves"] == {"train/loss": [[0.0, 2.5], [10.0, 1.25]]}
    knn = json.loads(written[2].read_text())
    assert knn["metrics"] == {"top1": 41.0} and "curves" not in knn  # predictions stay in the part file


def test_curves_of_a_folder_without_dvclive_are_empty(tmp_path):
    assert read_curves(tmp_path) == {}
