"""The SVM solver of the VOC07 suites (eval/svm.py): LIBLINEAR through `liblinear-official`,
one class's SVMs per job, jobs in worker processes.

Solver settings (docs/protocols.md section 3): L2-regularized squared hinge, dual coordinate
descent (-s 1), tolerance 1e-4, positives weighted 2 : 1. Choices where the protocol is silent:
- Bias: LIBLINEAR -B 1, a constant feature 1 appended to every row, its weight regularized like the
  others. This is exactly the intercept of scikit-learn's LinearSVC (fit_intercept=True,
  intercept_scaling=1), which the reference scripts used.
- Iteration cap: LIBLINEAR's own (1000 outer passes of the dual solver, hard-coded in the library).
- Determinism: the dual solver shuffles its coordinates with the C library's rand(), never seeded
  by LIBLINEAR. We call srand(1) before every fit, which makes each fit what a fresh `train` process
  computes, independent of job order and of the number of worker processes.

Speed (the SVMs are the slow part of the suites):
- each training matrix is converted to LIBLINEAR's sparse node format once (`RowStore`) and every
  fold and cost reuses it through row pointers; no per-fit copies;
- span trick: an SVM trained on n rows has its weight vector in the span of those rows, so the
  rows can be replaced by their coordinates in an orthonormal basis of that span (a QR
  factorisation) without changing the problem: the Gram matrix, hence LIBLINEAR's dual problem
  and every iterate, stay the same up to rounding (about 1e-15), and test scores are computed
  through the basis. With n rows much smaller than the dimension this divides the work per
  solver pass by about dim / n. It is used once for all of trainval when it has fewer rows than
  dimensions, and again per training set when that set has at most half as many rows as the
  current dimension (`project=False` turns it off);
- (class, training set) jobs run in parallel worker processes (`n_jobs`), each single-threaded.
  LIBLINEAR releases the GIL (ctypes), but threads would share rand() and break determinism.
  Workers are started with "spawn" (safe next to torch's threads), so a script that calls the
  suites with n_jobs > 1 needs the usual `if __name__ == "__main__":` guard.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from liblinear.liblinear import feature_node, liblinear, parameter, problem, toPyModel

from common.errors import ConfigError
from eval.voc_ap import average_precision

SOLVER = 1                  # LIBLINEAR -s 1: L2-regularized L2-loss SVC, dual
TOLERANCE = 1e-4            # -e 0.0001
POSITIVE_WEIGHT = 2.0       # -w1 2
BIAS = 1.0                  # -B 1 (see above)
LIBLINEAR_OPTIONS = f"-s {SOLVER} -e {TOLERANCE:g} -w1 {POSITIVE_WEIGHT:g} -B {BIAS:g}"
PROJECT_MAX_FRACTION = 0.5  # span trick per training set when rows <= this * dimension


# --------------------------------------------------------------------------------------------
# LIBLINEAR, fast path
# --------------------------------------------------------------------------------------------

def _c_library_srand():
    for name in (None, ctypes.util.find_library("c")):
        try:
            return ctypes.CDLL(name).srand
        except (OSError, AttributeError, TypeError):
            continue
    return None  # no C library found: fits stay correct, only the shuffling order is unseeded


_SRAND = _c_library_srand()


class RowStore:
    """The rows of a dense matrix in LIBLINEAR's node format (with the -B 1 bias node), built once.

    `problem(rows, targets)` makes a LIBLINEAR problem over any subset of the rows by pointing
    into this one node array: no copy per fold or per cost.
    """

    def __init__(self, x: np.ndarray):
        x = np.ascontiguousarray(x, dtype=np.float64)
        n_rows, self.dim = x.shape
        rows, cols = np.nonzero(x)  # zeros are skipped, as LIBLINEAR's sparse format allows
        counts = np.bincount(rows, minlength=n_rows)
        self.start = np.zeros(n_rows + 1, dtype=np.int64)
        self.start[1:] = np.cumsum(counts + 2)  # + bias node + terminator
        nonzeros_before_row = self.start[:-1] - 2 * np.arange(n_rows)
        rank_in_row = np.arange(rows.size) - np.repeat(nonzeros_before_row, counts)  # np.nonzero is row-major
        nodes = np.zeros(self.start[-1], dtype=feature_node)
        nodes["index"][self.start[rows] + rank_in_row] = cols + 1
        nodes["value"][self.start[rows] + rank_in_row] = x[rows, cols]
        nodes["index"][self.start[1:] - 2] = self.dim + 1
        nodes["value"][self.start[1:] - 2] = BIAS
        nodes["index"][self.start[1:] - 1] = -1
        self.nodes = nodes

    def problem(self, rows: np.ndarray, targets: np.ndarray) -> problem:
        prob = problem.__new__(problem)
        prob.l, prob.n, prob.bias = len(rows), self.dim + 1, BIAS
        prob.y_buffer = np.ascontiguousarray(targets, dtype=np.float64)
        prob.x_buffer = (self.nodes.ctypes.data + self.start[rows] * self.nodes.itemsize).astype(np.uint64)
        prob.y = prob.y_buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        prob.x = prob.x_buffer.ctypes.data_as(ctypes.POINTER(ctypes.POINTER(feature_node)))
        prob.store = self  # keep the nodes alive as long as the problem
        return prob


def train_svms(prob: problem, costs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """One LIBLINEAR fit per cost on ``prob``: (weights (n_costs, dim), biases (n_costs,)).

    The sign is fixed so that a positive score means class +1.
    """
    weights = np.empty((len(costs), prob.n - 1))
    biases = np.empty(len(costs))
    for j, cost in enumerate(costs):
        param = parameter(f"{LIBLINEAR_OPTIONS} -c {float(cost)!r} -q")
        if _SRAND is not None:
            _SRAND(1)
        model = toPyModel(liblinear.train(prob, param))
        w = np.ctypeslib.as_array(model.w, shape=(prob.n,))
        sign = 1.0 if model.label[0] == 1 else -1.0  # w scores label[0]; LIBLINEAR puts +1 there, checked anyway
        weights[j], biases[j] = sign * w[:-1], sign * w[-1] * BIAS
    return weights, biases


def span_basis(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(basis (D, r), coords (n, r)) with x = coords @ basis.T and orthonormal basis columns.

    From the QR factorisation x.T = basis @ R: coords = R.T, lower-triangular (so about half of
    its entries are zeros, which the node format skips).
    """
    basis, upper = np.linalg.qr(np.asarray(x, dtype=np.float64).T)
    return basis, np.ascontiguousarray(upper.T)


# --------------------------------------------------------------------------------------------
# Per-class job (runs in a worker process)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassJob:
    """Train one class's SVMs on some trainval rows, choose a cost by CV, test on test.

    ``labels``: the class's labels {1, 0, -1} of those rows (0 is a negative in training and left
    out of held-out AP). ``folds``: fold id per row, or None for no cross-validation.
    ``refit_all``: refit every cost on all rows (low-shot needs every cost's test AP); otherwise
    only the CV-chosen one (or ``fallback`` when there is no CV).
    """
    class_index: int
    rows: np.ndarray
    labels: np.ndarray
    folds: np.ndarray | None
    costs: tuple[float, ...]
    refit_all: bool
    fallback: int


_WORKER: dict = {}


def _init_worker(trainval_x: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, project: bool,
                 single_thread: bool = True) -> None:
    if single_thread:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)  # one BLAS thread per worker process: no oversubscription
    _WORKER.clear()
    _WORKER.update(trainval_x=trainval_x, test_x=test_x, test_y=test_y, project=project, store=None)


def _trainval_store() -> RowStore:
    if _WORKER["store"] is None:
        _WORKER["store"] = RowStore(_WORKER["trainval_x"])
    return _WORKER["store"]


def best_cost_index(map_per_cost: np.ndarray) -> int:
    """Index of the highest AP or mAP; ties go to the smallest cost (costs are sorted ascending)."""
    return int(np.flatnonzero(map_per_cost >= map_per_cost.max() - 1e-12)[0])


def evaluate_class(job: ClassJob) -> dict:
    """{"cv_ap": AP per cost averaged over held-out folds (or None), "chosen": cost index,
    "test_ap": test AP per cost (NaN where not refit)}."""
    trainval_x = _WORKER["trainval_x"]
    if _WORKER["project"] and len(job.rows) <= PROJECT_MAX_FRACTION * trainval_x.shape[1]:
        basis, feats = span_basis(trainval_x[job.rows])
        store, local = RowStore(feats), np.arange(len(job.rows))
    else:
        basis, feats = None, trainval_x[job.rows]
        store, local = _trainval_store(), job.rows
    targets = np.where(job.labels == 1, 1.0, -1.0)

    cv_ap, chosen = None, job.fallback
    if job.folds is not None:
        n_folds = int(job.folds.max()) + 1
        cv_ap = np.zeros(len(job.costs))
        for fold in range(n_folds):
            train, held = job.folds != fold, job.folds == fold
            weights, biases = train_svms(store.problem(local[train], targets[train]), job.costs)
            scores = feats[held] @ weights.T + biases
            cv_ap += [average_precision(scores[:, j], job.labels[held]) for j in range(len(job.costs))]
        cv_ap /= n_folds
        chosen = best_cost_index(cv_ap)

    refit = list(range(len(job.costs))) if job.refit_all else [chosen]
    weights, biases = train_svms(store.problem(local, targets), [job.costs[j] for j in refit])
    if basis is not None:
        weights = weights @ basis.T
    scores = _WORKER["test_x"] @ weights.T + biases
    test_ap = np.full(len(job.costs), np.nan)
    test_labels = _WORKER["test_y"][:, job.class_index]
    test_ap[refit] = [average_precision(scores[:, i], test_labels) for i in range(len(refit))]
    return {"cv_ap": cv_ap, "chosen": chosen, "test_ap": test_ap}


def default_n_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _solver_features(trainval_x: np.ndarray, test_x: np.ndarray, project: bool) -> tuple[np.ndarray, np.ndarray]:
    """Trainval/test features for the solver: in trainval's span when it has fewer rows than dims."""
    if project and trainval_x.shape[0] < trainval_x.shape[1]:
        basis, coords = span_basis(trainval_x)
        return coords, test_x @ basis
    return trainval_x, test_x


def run_jobs(trainval_x: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, jobs: list[ClassJob],
             n_jobs: int | None = None, project: bool = True, progress: bool = False, desc: str = "svm") -> list[dict]:
    """`evaluate_class` over ``jobs`` (results in job order), serially or in worker processes;
    features L2-normalised, labels (N, C) in {1, 0, -1}."""
    from tqdm import tqdm

    n_jobs = default_n_jobs() if n_jobs is None else n_jobs
    if n_jobs < 1:
        raise ConfigError(f"n_jobs: expected >= 1, got {n_jobs}")
    init_args = (*_solver_features(trainval_x, test_x, project), test_y, project)
    bar = dict(total=len(jobs), desc=desc, disable=not progress, file=sys.stderr)
    if n_jobs == 1 or len(jobs) <= 1:
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1):
            _init_worker(*init_args, single_thread=False)
            try:
                return [evaluate_class(job) for job in tqdm(jobs, **bar)]
            finally:
                _WORKER.clear()
    # Largest training sets first, small chunks: the workers finish together.
    order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].rows))
    workers = min(n_jobs, len(jobs))
    chunk = max(1, len(jobs) // (workers * 16))
    results: list[dict | None] = [None] * len(jobs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=init_args) as pool:
        done = pool.map(evaluate_class, [jobs[i] for i in order], chunksize=chunk)
        for position, result in enumerate(tqdm(done, **bar)):
            results[order[position]] = result
    return results
