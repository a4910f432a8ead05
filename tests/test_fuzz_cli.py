"""The pretraining CLI fuzzed (hypothesis): random overrides drawn from the schema's keys (the
smoke profile's settings, with values of every kind, and keys nobody reads). Each draw ends in a
run (exit 0, its metrics.json) or one line naming the key (exit 2, no folder left): never a
traceback, never a half-written folder. Derandomized, so CI tests the same draws every time."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import profiles
from cq.pretrain import main

SMOKE = profiles.load("smoke")


def _leaves(node, path):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}")
    else:
        yield path


KEYS = sorted(k for k in _leaves(SMOKE["cq"], "cq") if not k.startswith("cq.train.steps")) + ["precision"]
VALUES = st.one_of(st.integers(-2, 5), st.floats(-1.0, 2.0, allow_nan=False), st.booleans(), st.none(),
                   st.text(alphabet="ab-_1", max_size=4), st.lists(st.integers(0, 3), max_size=2))
UNKNOWN = st.text(alphabet="abcxyz_", min_size=3, max_size=8).map(lambda name: f"cq.{name}")
OVERRIDE = st.tuples(st.one_of(st.sampled_from(KEYS), UNKNOWN), VALUES)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(OVERRIDE, min_size=1, max_size=2))
def test_random_overrides_end_in_a_run_or_one_line_naming_the_key(overrides):
    work = Path(tempfile.mkdtemp())
    out = work / "run"
    argv = ["--method", "simclr", "--variant", "cq_c", "--backbone", "cifar_resnet20", "--out", str(out),
            *[f"{key}={json.dumps(value)}" for key, value in overrides], "cq.train.steps=1"]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        lines = err.getvalue().strip().splitlines()
        if code == 0:
            assert json.loads((out / "metrics.json").read_text())["status"] in ("ok", "diverged"), argv
        else:
            assert code == 2, (argv, err.getvalue()[-2000:])
            assert len(lines) == 1 and lines[0].startswith("error: "), (argv, lines)
            named = {part for key, _ in overrides for part in key.split(".")[-2:]}
            assert any(part in lines[0] for part in named), (argv, lines[0])
            assert not out.exists(), (argv, lines[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
