"""The command lines fuzzed (hypothesis): both pretraining CLIs with random overrides drawn from
the schema's keys (the smoke profile's settings, with values of every kind, and keys nobody
reads), the kNN suite with random values of its options. Each draw ends in a result (exit 0, its
metrics.json) or one line naming the key or option (exit 2, no folder left): never a traceback,
never a half-written folder. Derandomized, so CI tests the same draws every time."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import profiles
from burn.pretrain import main as burn_main
from cq.pretrain import main as cq_main
from eval.finetune import main as finetune_main
from eval.knn import main as knn_main
from eval.linear import main as linear_main
from tests.engine_fixtures import write_encoder

SMOKE = profiles.load("smoke")


def _leaves(node, path):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}")
    else:
        yield path


def keys_of(section: str) -> list[str]:
    """The smoke profile's settings under `section` (its step counts aside: every run takes 1)."""
    return sorted(k for k in _leaves(SMOKE[section], section) if ".steps" not in k and not k.endswith(".epochs"))


VALUES = st.one_of(st.integers(-2, 5), st.floats(-1.0, 2.0, allow_nan=False), st.booleans(), st.none(),
                   st.text(alphabet="ab-_1", max_size=4), st.lists(st.integers(0, 3), max_size=2))


def smoke_value(key: str):
    node = SMOKE
    for part in key.split("."):
        node = node[part]
    return node


def overrides(section: str, extra: tuple[str, ...] = ()):
    """1-2 (key, value) pairs: a known key with its smoke value (valid: the draws combine) or a
    value of any kind, or a key nobody reads."""
    known = st.sampled_from(keys_of(section) + list(extra)).flatmap(
        lambda key: st.tuples(st.just(key), st.one_of(st.just(smoke_value(key)), VALUES)))
    unknown = st.tuples(st.text(alphabet="abcxyz_", min_size=3, max_size=8).map(lambda name: f"{section}.{name}"),
                        VALUES)
    return st.lists(st.one_of(known, unknown), min_size=1, max_size=2)


def run_or_one_line(main, argv, out, named) -> None:
    """The contract: exit 0 and a finished metrics.json, or exit 2, one line naming one of `named`,
    and no `out` folder."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    lines = err.getvalue().strip().splitlines()
    if code == 0:
        assert json.loads((out / "metrics.json").read_text()).get("status", "ok") in ("ok", "diverged"), argv
        return
    assert code == 2, (argv, err.getvalue()[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, lines)
    assert any(part in lines[0] for part in named), (argv, lines[0])
    assert not out.exists(), (argv, lines[0])


def named_by(drawn) -> set[str]:
    return {part for key, _ in drawn for part in key.split(".")[-2:]}


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(overrides("cq", extra=("precision",)))
def test_cq_pretraining_overrides_end_in_a_run_or_one_line_naming_the_key(drawn):
    work = Path(tempfile.mkdtemp())
    out = work / "run"
    argv = ["--method", "simclr", "--variant", "cq_c", "--backbone", "cifar_resnet20", "--out", str(out),
            *[f"{key}={json.dumps(value)}" for key, value in drawn], "cq.train.steps=1"]
    try:
        run_or_one_line(cq_main, argv, out, named_by(drawn))
    finally:
        shutil.rmtree(work, ignore_errors=True)


# BURN's side at toy size: the teacher's method (MoCo v2, ResNet-18) on 16-pixel images
BURN_SMALL = ["burn.dataset.options.num_images=16", "burn.dataset.options.image_size=16",
              "burn.views.mocov2.out_size=16", "burn.train.batch_size=4", "burn.train.steps=1",
              "burn.teacher.train.steps=1"]


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(overrides("burn"))
def test_burn_pretraining_overrides_end_in_a_run_or_one_line_naming_the_key(drawn):
    work = Path(tempfile.mkdtemp())
    out = work / "run"
    argv = ["--method", "mocov2", "--backbone", "resnet18", "--as-teacher", "--out", str(out), *BURN_SMALL,
            *[f"{key}={json.dumps(value)}" for key, value in drawn]]
    try:
        run_or_one_line(burn_main, argv, out, named_by(drawn))
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-encoder") / "encoder.pt"
    write_encoder(path)
    return path


DATA_OPTIONS = {
    "--limit": st.integers(-1, 12).map(str),
    "--image-size": st.integers(-1, 40).map(str),
    "--norm": st.sampled_from(["imagenet", "cifar10", "cifar100", "cifar1000", ""]),
    "--device": st.sampled_from(["cpu", "auto", "tpu"]),
    "--train-split": st.sampled_from(["train", "test", "val"]),
    "--dataset": st.sampled_from(["synthetic", "cifar10x"]),
    "--options": st.fixed_dictionaries({}, optional={"num_images": st.integers(-1, 40), "image_size": st.integers(-1, 40),
                                                     "nosuch": st.integers(0, 2)}).map(json.dumps),
}
NUMBER = st.one_of(st.floats(-0.5, 2.0, allow_nan=False).map(str), st.sampled_from(["inf", "nan", "x"]))
EXTRACTOR = {"--extract-batch": st.integers(-1, 64).map(str), "--resize": st.integers(-1, 40).map(str),
             "--workers": st.integers(-1, 1).map(str)}
TRAINING = {"--epochs": st.integers(-1, 2).map(str), "--lr": NUMBER, "--batch-size": st.integers(-1, 16).map(str)}
# each suite: its main, the options every draw starts from, the options a draw may change
SUITES = {
    "knn": (knn_main, {"--k": "5"}, {**DATA_OPTIONS, **EXTRACTOR, "--k": st.integers(-1, 40).map(str),
                                     "--temperature": NUMBER}),
    "linear": (linear_main, {"--epochs": "1", "--batch-size": "8"},
               {**DATA_OPTIONS, **EXTRACTOR, **TRAINING, "--preset": st.sampled_from(["burn", "cq", "nope"]),
                "--mode": st.sampled_from(["cached", "augment", "x"])}),
    "finetune": (finetune_main, {"--epochs": "1", "--batch-size": "8", "--fraction": "0.5", "--lrs": "0.01",
                                 "--head-mults": "1"},
                 {**DATA_OPTIONS, **TRAINING, "--fraction": NUMBER, "--bits": st.integers(-1, 40).map(str),
                  "--quant-mode": st.sampled_from(["floor", "cpt", "round"]), "--lrs": st.sampled_from(["0.01", "0.1,x", ""]),
                  "--head-mults": st.sampled_from(["1", "10,100", "-1"]), "--preset": st.sampled_from(["burn", "cq", "nope"])}),
}
EXAMPLES = {"knn": 25, "linear": 15, "finetune": 15}


def suite_draw(name):
    values = SUITES[name][2]
    return st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=3, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries({option: values[option] for option in chosen}))


def check_suite(name, encoder, drawn):
    main, base, _ = SUITES[name]
    work = Path(tempfile.mkdtemp())
    out = work / name
    options = {"--dataset": "synthetic", "--options": json.dumps({"num_images": 24, "image_size": 16}),
               "--device": "cpu", **base, **drawn}
    argv = ["--encoder", str(encoder), "--out", str(out), *[x for kv in options.items() for x in kv]]
    named = set(drawn) | {name.lstrip("-") for name in drawn} | set(drawn.values()) | {
        k for v in drawn.values() if v.startswith("{") for k in json.loads(v)}
    try:
        run_or_one_line(main, argv, out, named)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@settings(max_examples=EXAMPLES["knn"], deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(drawn=suite_draw("knn"))
def test_knn_options_end_in_a_result_or_one_line_naming_the_option(encoder, drawn):
    check_suite("knn", encoder, drawn)


@settings(max_examples=EXAMPLES["linear"], deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(drawn=suite_draw("linear"))
def test_linear_options_end_in_a_result_or_one_line_naming_the_option(encoder, drawn):
    check_suite("linear", encoder, drawn)


@settings(max_examples=EXAMPLES["finetune"], deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(drawn=suite_draw("finetune"))
def test_finetune_options_end_in_a_result_or_one_line_naming_the_option(encoder, drawn):
    check_suite("finetune", encoder, drawn)
