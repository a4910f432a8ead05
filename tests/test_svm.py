"""The VOC07 SVM suite (eval/svm.py) and its LIBLINEAR solver (eval/liblinear.py): sampling, CV,
suites, CLI, real subset."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.svm import LinearSVC

from common.errors import ConfigError
from common.runs import value_at
from eval import liblinear as solver
from eval.liblinear import RowStore, span_basis, train_svms
from eval.svm import (NEG_PER_POS, VOC_CLASSES, lowshot_choices, lowshot_samples, main, make_svm_data, run_full,
                      run_lowshot, save_features, stratified_folds)
from eval.voc_ap import average_precision
from reports import claims as claims_module


def synthetic_labels(rng, n, num_classes, rate=0.25, difficult=0.05):
    u = rng.random((n, num_classes))
    labels = np.where(u < rate, 1, np.where(u < rate + difficult, 0, -1)).astype(np.int8)
    labels[:num_classes, :] = -1
    labels[np.arange(num_classes), np.arange(num_classes)] = 1  # every class has a positive
    return labels


def separable_data(rng, n_train=200, n_test=200, num_classes=4, dim=24):
    """Each image = sum of its present classes' (orthogonal) directions + small noise."""
    def split(n):
        labels = synthetic_labels(rng, n, num_classes, difficult=0.0)
        x = (labels == 1).astype(float) @ np.eye(num_classes, dim) * 3 + 0.05 * rng.standard_normal((n, dim))
        return x + 0.5 * np.eye(1, dim, dim - 1), labels  # a shared offset keeps rows non-zero
    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    return make_svm_data(xtr, ytr, xte, yte)


# ------------------------------------------------------------------ LIBLINEAR wrapper ----------

def test_train_svms_matches_sklearn_linearsvc_and_bias_convention():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 10))
    y = np.where(x[:, 0] + 0.5 * rng.standard_normal(80) > 0.3, 1.0, -1.0)
    for first in (1.0, -1.0):  # LIBLINEAR scores its first-seen label: the sign must be fixed up
        order = np.argsort(y != first, kind="stable")
        xs, ys = x[order], y[order]
        weights, biases = train_svms(RowStore(xs).problem(np.arange(80), ys), [0.1, 1.0])
        for j, cost in enumerate([0.1, 1.0]):
            ref = LinearSVC(C=cost, class_weight={1: 2, -1: 1}, tol=1e-6, max_iter=100000).fit(xs, ys)
            assert np.allclose(weights[j], ref.coef_[0], atol=2e-3)
            assert biases[j] == pytest.approx(ref.intercept_[0], abs=2e-3)


def test_rowstore_subsets_and_span_trick_give_the_same_svm():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 40))
    x[rng.random(x.shape) < 0.3] = 0.0  # zeros are skipped by the node format
    y = np.where(rng.random(60) < 0.3, 1.0, -1.0)
    rows = rng.choice(60, 25, replace=False)
    w_all, b_all = train_svms(RowStore(x).problem(rows, y[rows]), [1.0, 10.0])
    w_sub, b_sub = train_svms(RowStore(x[rows]).problem(np.arange(25), y[rows]), [1.0, 10.0])
    basis, coords = span_basis(x[rows])
    assert np.allclose(coords @ basis.T, x[rows], atol=1e-12)
    w_proj, b_proj = train_svms(RowStore(coords).problem(np.arange(25), y[rows]), [1.0, 10.0])
    assert np.array_equal(w_all, w_sub) and np.array_equal(b_all, b_sub)
    assert np.allclose(w_proj @ basis.T, w_all, atol=1e-10) and np.allclose(b_proj, b_all, atol=1e-10)


# ------------------------------------------------------------------ low-shot samples -----------

def test_lowshot_samples_protocol_seeding_and_file(tmp_path):
    rng = np.random.default_rng(2)
    labels = synthetic_labels(rng, 400, 3)
    classes = ("a", "b", "c")
    ks = (1, 2)
    samples = lowshot_samples(labels, classes, ks, 3, seed=7)
    for (k, s, c), (pos, neg) in samples.items():
        assert len(pos) == k and len(neg) == NEG_PER_POS * k
        assert len(set(pos)) == k and len(set(neg)) == NEG_PER_POS * k
        assert np.all((0 <= pos) & (pos < 400)) and np.all((0 <= neg) & (neg < 400))
        assert np.all(labels[pos, c] == 1) and np.all(labels[neg, c] == -1)  # no 0 (difficult)
    again = lowshot_samples(labels, classes, ks, 3, seed=7)
    assert all(np.array_equal(samples[key][i], again[key][i]) for key in samples for i in (0, 1))
    assert not np.array_equal(samples[(2, 0, 0)][1], samples[(2, 1, 0)][1])  # sample ids differ
    other_seed = lowshot_samples(labels, classes, ks, 3, seed=8)
    assert not np.array_equal(samples[(2, 0, 0)][1], other_seed[(2, 0, 0)][1])

    path = tmp_path / "samples.json"
    written = lowshot_samples(labels, classes, ks, 3, seed=7, path=path)
    assert np.array_equal(written[(1, 0, 1)][0], samples[(1, 0, 1)][0])
    stored = json.loads(path.read_text())
    old = stored["samples"]["1"]["0"]["b"]["positives"]
    new = int(np.setdiff1d(np.flatnonzero(labels[:, 1] == 1), old)[0])
    stored["samples"]["1"]["0"]["b"]["positives"] = [new]
    path.write_text(json.dumps(stored))
    reread = lowshot_samples(labels, classes, ks, 3, seed=7, path=path)
    assert reread[(1, 0, 1)][0].tolist() == [new]  # the file wins over drawing
    with pytest.raises(ConfigError, match="seed 7, not 8"):
        lowshot_samples(labels, classes, ks, 3, seed=8, path=path)
    stored["samples"]["1"]["0"]["b"]["positives"] = [int(np.flatnonzero(labels[:, 1] == -1)[0])]
    path.write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match="positives must be distinct trainval rows labelled 1"):
        lowshot_samples(labels, classes, ks, 3, seed=7, path=path)


def test_lowshot_uses_every_image_when_trainval_is_short():
    rng = np.random.default_rng(3)
    labels = synthetic_labels(rng, 60, 2, rate=0.04)
    pos_avail = int((labels[:, 0] == 1).sum())
    samples = lowshot_samples(labels, ("a", "b"), (pos_avail + 1,), 1, seed=0)
    pos, neg = samples[(pos_avail + 1, 0, 0)]
    assert sorted(pos.tolist()) == np.flatnonzero(labels[:, 0] == 1).tolist()
    assert sorted(neg.tolist()) == np.flatnonzero(labels[:, 0] == -1).tolist()


# ------------------------------------------------------------------ suites ---------------------

def test_separable_features_reach_map_one():
    data = separable_data(np.random.default_rng(4))
    full = run_full(data, costs=(0.1, 1.0, 10.0), n_jobs=1)
    assert full["map"] == 1.0
    low = run_lowshot(data, costs=(0.1, 1.0, 10.0), ks=(2,), n_samples=2, n_jobs=1)
    assert low["table"]["2"]["best_test"]["per_sample"] == [1.0, 1.0]


def test_random_features_give_map_near_positive_rate():
    rng = np.random.default_rng(5)
    ytr, yte = synthetic_labels(rng, 300, 3, rate=0.2), synthetic_labels(rng, 3000, 3, rate=0.2)
    data = make_svm_data(rng.standard_normal((300, 16)), ytr, rng.standard_normal((3000, 16)), yte)
    full = run_full(data, costs=(0.1, 1.0), n_jobs=1)
    rate = np.mean([(yte[:, c] == 1).sum() / (yte[:, c] != 0).sum() for c in range(3)])
    assert abs(full["map"] - rate) < 0.04


def test_full_set_cost_cv_is_in_list_deterministic_and_argmax():
    rng = np.random.default_rng(3)
    ytr, yte = synthetic_labels(rng, 90, 3), synthetic_labels(rng, 40, 3)
    data = make_svm_data(rng.standard_normal((90, 12)) + 1.5 * (ytr == 1) @ np.eye(3, 12), ytr,
                         rng.standard_normal((40, 12)) + 1.5 * (yte == 1) @ np.eye(3, 12), yte)
    costs = (0.01, 0.1, 1.0, 100.0)
    first, second = run_full(data, costs=costs, n_jobs=1), run_full(data, costs=costs, n_jobs=1)
    assert first == second
    assert len(set(first["cost"].values())) > 1  # this data makes the classes disagree
    for name in data.classes:
        cv_ap = np.array(first["cv_ap"][name])
        assert first["cost"][name] in costs
        assert first["cost"][name] == costs[int(np.flatnonzero(cv_ap == cv_ap.max())[0])]


def test_full_set_equals_direct_liblinear_pipeline():
    """Refit at the chosen cost with LIBLINEAR's own Python API on normalised features; AP on
    test with 0-labelled images left out, must equal the suite's AP."""
    from liblinear.liblinearutil import predict, train

    rng = np.random.default_rng(7)
    ytr, yte = synthetic_labels(rng, 120, 3), synthetic_labels(rng, 80, 3)
    xtr, xte = rng.standard_normal((120, 200)), rng.standard_normal((80, 200))  # rows < dims: span trick on
    data = make_svm_data(xtr, ytr, xte, yte)
    full = run_full(data, costs=(0.1, 1.0, 10.0), n_jobs=1)
    ntr = xtr / (np.linalg.norm(xtr, axis=1, keepdims=True) + 1e-5)
    nte = xte / (np.linalg.norm(xte, axis=1, keepdims=True) + 1e-5)
    for c, name in enumerate(data.classes):
        y = np.where(ytr[:, c] == 1, 1.0, -1.0)
        solver._SRAND(1)
        model = train(y, ntr, f"-s 1 -e 0.0001 -w1 2 -B 1 -q -c {full['cost'][name]}")
        _, _, values = predict(np.zeros(80), nte, model, "-q")
        scores = np.array(values)[:, 0] * (1 if model.get_labels()[0] == 1 else -1)
        assert full["ap"][name] == pytest.approx(average_precision(scores, yte[:, c]), abs=1e-9)


def test_class_job_cv_treats_difficult_as_negative_and_ignores_it_when_held_out():
    import eval.svm as svm

    rng = np.random.default_rng(10)
    labels = synthetic_labels(rng, 90, 1, rate=0.3, difficult=0.15)[:, 0]
    x = svm.l2_normalize(rng.standard_normal((90, 8)) + 0.8 * (labels != -1)[:, None])
    test_x, test_y = svm.l2_normalize(rng.standard_normal((40, 8))), synthetic_labels(rng, 40, 1, difficult=0.2)
    folds = svm.stratified_folds(labels == 1, 3, np.random.default_rng(0))
    costs = (0.1, 1.0, 10.0)
    solver._init_worker(x, test_x, test_y, project=False, single_thread=False)
    try:
        got = solver.evaluate_class(solver.ClassJob(0, np.arange(90), labels, folds, costs, refit_all=False, fallback=1))
    finally:
        solver._WORKER.clear()
    targets = np.where(labels == 1, 1.0, -1.0)  # 0 (difficult) trains as a negative
    expected = np.zeros(3)
    for fold in range(3):
        train, held = folds != fold, folds == fold
        w, b = train_svms(RowStore(x[train]).problem(np.arange(train.sum()), targets[train]), costs)
        scores = x[held] @ w.T + b
        kept = labels[held] != 0  # ... and is left out of the held-out AP
        expected += [average_precision(scores[kept, j], labels[held][kept]) for j in range(3)]
    expected /= 3
    assert np.allclose(got["cv_ap"], expected, atol=1e-12)
    assert got["chosen"] == int(np.flatnonzero(expected == expected.max())[0])
    w, b = train_svms(RowStore(x).problem(np.arange(90), targets), [costs[got["chosen"]]])
    assert got["test_ap"][got["chosen"]] == pytest.approx(average_precision(test_x @ w[0] + b[0], test_y[:, 0]))
    assert np.isnan(np.delete(got["test_ap"], got["chosen"])).all()  # only the chosen cost is refit


def test_lowshot_modes_aggregate_as_specified():
    """best_test: one cost per sample, the best mean-over-classes test AP; cv: per-class costs."""
    rng = np.random.default_rng(11)
    ytr, yte = synthetic_labels(rng, 160, 3, rate=0.3), synthetic_labels(rng, 70, 3)
    data = make_svm_data(rng.standard_normal((160, 6)) + (ytr == 1) @ np.eye(3, 6), ytr,
                         rng.standard_normal((70, 6)) + (yte == 1) @ np.eye(3, 6), yte)
    costs = (0.01, 1.0, 100.0)
    low = run_lowshot(data, costs=costs, ks=(3,), n_samples=2, n_jobs=1)
    samples = lowshot_samples(data.trainval_y, data.classes, (3,), 2, seed=0)
    all_test_ap = []
    for s in range(2):
        test_ap, cv_choice = np.empty((3, 3)), []
        all_test_ap.append(test_ap)
        for c in range(3):
            pos, neg = samples[(3, s, c)]
            x = data.trainval_x[np.r_[pos, neg]]
            y = np.r_[np.ones(len(pos)), -np.ones(len(neg))]
            w, b = train_svms(RowStore(x).problem(np.arange(len(y)), y), costs)
            scores = data.test_x @ w.T + b
            test_ap[c] = [average_precision(scores[:, j], yte[:, c]) for j in range(3)]
            # CV inside the sample: 3 stratified folds seeded by (seed, sample, k, class, 1).
            folds = stratified_folds(y == 1, 3, np.random.default_rng([0, s, 3, c, 1]))
            cv_ap = np.zeros(3)
            for fold in range(3):
                tr = folds != fold
                w, b = train_svms(RowStore(x[tr]).problem(np.arange(tr.sum()), y[tr]), costs)
                held = (x[~tr] @ w.T + b)
                cv_ap += [average_precision(held[:, j], y[~tr]) for j in range(3)]
            cv_choice.append(costs[int(np.argmax(cv_ap))])
        best = low["table"]["3"]["best_test"]
        assert best["per_sample"][s] == pytest.approx(test_ap.mean(axis=0).max(), abs=1e-12)
        assert best["costs"][s] == costs[int(np.argmax(test_ap.mean(axis=0)))]
        cv = low["table"]["3"]["cv"]
        assert cv["costs"][s] == cv_choice
        picked = [costs.index(cost) for cost in cv["costs"][s]]
        assert cv["per_sample"][s] == pytest.approx(test_ap[np.arange(3), picked].mean(), abs=1e-12)
    # reference: ONE cost for k, the best test mAP averaged over the samples; each sample at it
    mean_over_samples = np.mean([t.mean(axis=0) for t in all_test_ap], axis=0)
    ref_cost = int(np.argmax(mean_over_samples))
    ref = low["table"]["3"]["reference"]
    assert ref["costs"] == costs[ref_cost]
    assert ref["per_sample"] == pytest.approx([t.mean(axis=0)[ref_cost] for t in all_test_ap], abs=1e-12)
    assert ref["mean"] <= low["table"]["3"]["best_test"]["mean"] + 1e-12


def test_reference_rule_differs_from_the_per_sample_best_on_a_known_case():
    """Two samples, two classes, three costs: per sample the best costs differ (index 0 and 2),
    the best mean over samples is cost index 1."""
    test_ap = np.array([[[0.9, 0.8, 0.1], [0.9, 0.8, 0.1]],    # sample 0: cost 0 best (0.9)
                        [[0.1, 0.8, 0.9], [0.1, 0.8, 0.9]]])   # sample 1: cost 2 best (0.9)
    out = lowshot_choices(test_ap, [[0, 0], [1, 2]], (0.1, 1.0, 10.0))
    assert out["reference"]["costs"] == 1.0 and out["reference"]["per_sample"] == pytest.approx([0.8, 0.8])
    assert out["best_test"]["costs"] == [0.1, 10.0] and out["best_test"]["mean"] == pytest.approx(0.9)
    assert out["cv"]["per_sample"] == pytest.approx([0.9, 0.85]) and out["cv"]["costs"] == [[0.1, 0.1], [1.0, 10.0]]
    # ties go to the smallest cost
    tied = lowshot_choices(np.full((2, 1, 3), 0.5), [[0], [0]], (0.1, 1.0, 10.0))
    assert tied["reference"]["costs"] == 0.1 and tied["best_test"]["costs"] == [0.1, 0.1]


def test_lowshot_same_results_with_workers_and_without_span_trick():
    rng = np.random.default_rng(8)
    ytr, yte = synthetic_labels(rng, 150, 2), synthetic_labels(rng, 60, 2)
    data = make_svm_data(rng.standard_normal((150, 64)), ytr, rng.standard_normal((60, 64)), yte)
    kwargs = dict(costs=(0.1, 1.0, 10.0), ks=(1, 3), n_samples=2)
    base = run_lowshot(data, n_jobs=1, **kwargs)
    assert run_lowshot(data, n_jobs=2, **kwargs) == base
    plain = run_lowshot(data, n_jobs=1, project=False, **kwargs)
    for k in ("1", "3"):
        for mode in ("cv", "best_test"):
            assert np.allclose(plain["table"][k][mode]["per_sample"], base["table"][k][mode]["per_sample"], atol=1e-9)
    # k = 1: no positive can be held out, so cv falls back to the listed cost nearest C = 1.
    assert base["table"]["1"]["cv"]["costs"] == [[1.0, 1.0], [1.0, 1.0]]
    row = base["table"]["3"]["best_test"]
    assert row["mean"] == pytest.approx(np.mean(row["per_sample"]))
    assert row["std"] == pytest.approx(np.std(row["per_sample"]))


# ------------------------------------------------------------------ CLI ------------------------

def test_cli_missing_features_file(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    assert main(["--features", str(missing), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0] and "not found" in err[0]
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.parametrize("breakage, message", [
    (lambda d: d["trainval"].update(labels=d["trainval"]["labels"] * 2), "labels must be in"),
    (lambda d: d["test"].update(features=d["test"]["features"][:, :3]), "disagree on feature dim"),
    (lambda d: d.pop("test"), "expected {'test'"),
])
def test_cli_bad_features_exit_2(tmp_path, capsys, breakage, message):
    rng = np.random.default_rng(9)
    obj = {split: {"features": torch.randn(30, 5), "labels": torch.as_tensor(synthetic_labels(rng, 30, 2))}
           for split in ("trainval", "test")}
    breakage(obj)
    path = tmp_path / "bad.pt"
    torch.save(obj, path)
    assert main(["--features", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(path) in err[0]


# ------------------------------------------------------------------ real VOC2007 subset --------

def voc_labels(root: Path, split: str) -> tuple[list[str], np.ndarray]:
    main_dir = root / "VOCdevkit/VOC2007/ImageSets/Main"
    ids = (main_dir / f"{split}.txt").read_text().split()
    row = {image_id: i for i, image_id in enumerate(ids)}
    labels = np.zeros((len(ids), 20), dtype=np.int8)
    for c, name in enumerate(VOC_CLASSES):
        for line in (main_dir / f"{name}_{split}.txt").read_text().splitlines():
            image_id, label = line.split()
            labels[row[image_id], c] = int(label)
    return ids, labels


def colour_histograms(root: Path, ids: list[str]) -> np.ndarray:
    """4x4x4 RGB histogram of a small decode of each JPEG (sqrt: Hellinger-style)."""
    feats = []
    for image_id in ids:
        with Image.open(root / "VOCdevkit/VOC2007/JPEGImages" / f"{image_id}.jpg") as image:
            image.draft("RGB", (80, 80))
            rgb = np.asarray(image.convert("RGB"), dtype=np.int64) // 64
        code = rgb[..., 0] * 16 + rgb[..., 1] * 4 + rgb[..., 2]
        feats.append(np.sqrt(np.bincount(code.ravel(), minlength=64) / code.size))
    return np.asarray(feats)


@pytest.fixture(scope="module")
def voc_features(shared_data, tmp_path_factory):
    root = shared_data / "voc2007"
    (tv_ids, tv_labels), (te_ids, te_labels) = voc_labels(root, "trainval"), voc_labels(root, "test")
    assert len(tv_ids) == 500 and len(te_ids) == 250
    path = tmp_path_factory.mktemp("voc") / "feats.pt"
    save_features(path, colour_histograms(root, tv_ids), tv_labels, colour_histograms(root, te_ids), te_labels)
    return path, tv_labels, te_labels


def test_cli_end_to_end_on_voc2007_subset(voc_features, tmp_path, capsys):
    path, tv_labels, te_labels = voc_features
    out = tmp_path / "svm"
    argv = ["--features", str(path), "--out", str(out), "--costs", "0.1,1,10", "--ks", "1,2,64",
            "--samples", "2", "--n-jobs", "1"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == list(VOC_CLASSES)
    full = metrics["full"]
    assert set(full["ap"]) == set(VOC_CLASSES) and set(full["cost"].values()) <= {0.1, 1.0, 10.0}
    assert full["map"] == pytest.approx(np.mean(list(full["ap"].values())))
    chance = np.mean([(te_labels[:, c] == 1).sum() / (te_labels[:, c] != 0).sum() for c in range(20)])
    assert full["map"] > chance + 0.05  # colour carries some signal (sky, grass, water)
    assert set(metrics["lowshot"]) == {"1", "2", "64"}
    for row in metrics["lowshot"].values():
        for mode in ("cv", "best_test"):
            assert len(row[mode]["per_sample"]) == 2 and 0 < row[mode]["mean"] <= 1
            assert row[mode]["std"] == pytest.approx(np.std(row[mode]["per_sample"]))
    # The subset has fewer than 64 positives for most classes: the shortfall is recorded.
    assert {entry["k"] for entry in metrics["lowshot_short"]} == {64}
    samples = json.loads(Path(metrics["lowshot_samples"]).read_text())
    entry = samples["samples"]["2"]["1"]["dog"]
    dog = VOC_CLASSES.index("dog")
    assert len(entry["positives"]) == 2 and len(entry["negatives"]) == 38
    assert np.all(tv_labels[entry["positives"], dog] == 1) and np.all(tv_labels[entry["negatives"], dog] == -1)
    svm_claims = [c for c in claims_module.load_claims() if c.eval["suite"] == "svm"]
    assert svm_claims and all(isinstance(value_at(metrics, c.eval["key"]), float) for c in svm_claims)
    settings = metrics["settings"]
    assert settings["costs"] == [0.1, 1.0, 10.0] and settings["samples"] == 2 and settings["num_trainval"] == 500
    assert "full-set mAP" in capsys.readouterr().out
    # A second run reuses the sample file and reproduces the numbers exactly.
    assert main(argv) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["lowshot"] == metrics["lowshot"] and again["full"] == metrics["full"]
