"""The run contract (common/runs.py): names, folders, keys; dvc.yaml and the import rules agree with it."""
import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common import profiles, runs
from common.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).parent / "dvc")


def test_a_run_key_names_every_seed_and_its_folders():
    run = runs.Run("cq", "simclr-cq_c-cifar_resnet20", seed=2, precision="8-16")
    assert run.key == "cq/simclr-cq_c-cifar_resnet20@8-16"
    assert str(run.encoder) == "runs/cq/simclr-cq_c-cifar_resnet20/p8-16/s2/encoder.pt"
    assert str(run.eval_folder("finetune", "fp-1pct")) == "runs/eval/finetune/cq/simclr-cq_c-cifar_resnet20/p8-16/s2/fp-1pct"
    assert runs.runs_of(run.key, [0, 2])[1] == run
    assert str(runs.Run("burn", "burn-stage2").folder) == "runs/burn/burn-stage2/s0"
    for bad in ("simclr", "xx/y", "cq/a/b", "cq/"):
        with pytest.raises(ConfigError, match="expected <cq|burn>/<name>"):
            runs.parse_key(bad)


@pytest.mark.parametrize("seeds", [[], [0, 0], ["a"], 3, [True]])
def test_seeds_must_be_a_list_of_distinct_integers(seeds):
    with pytest.raises(ConfigError, match="seeds: expected a list of distinct integers"):
        runs.profile_seeds({"seeds": seeds})


def test_resolve_reads_a_precision_set_from_its_own_folder_or_the_runs_own(tmp_path):
    for folder, bits in (("cq/r/s0", range(6, 17)), ("cq/r/s1", range(6, 17)), ("cq/r/p8-16/s0", range(8, 17))):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "metrics.json").write_text('{"method": {"precision_set": %s}}' % list(bits))
    assert list(runs.resolve("cq/r", tmp_path)) == [0, 1]
    assert runs.resolve("cq/r@8-16", tmp_path) == {0: tmp_path / "cq/r/p8-16/s0"}
    assert list(runs.resolve("cq/r@6-16", tmp_path)) == [0, 1]  # the profile's own set
    assert runs.resolve("cq/r@4-16", tmp_path) == {}


def dvc_outputs(tmp_path: Path, profile: Path) -> set[str]:
    """The outputs of every stage of dvc.yaml, interpolated with `profile` (DVC's own reading)."""
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "params.yaml").write_text(profiles.render(profile.stem))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    if not (tmp_path / ".dvc").exists():
        subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=env)
    code = ("from dvc.repo import Repo\nr = Repo('.')\n"
            "print('\\n'.join(str(o.def_path) for s in r.index.stages for o in s.outs))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize("profile", ["smoke", "mini", "paper_small_data", "study_cq", "study_burn"])
def test_dvc_yaml_writes_exactly_the_runs_the_contract_names(tmp_path, profile):
    path = profiles.profile_path(profile)
    params = profiles.load(profile)
    expected = {str(r.encoder) for key in runs.pretraining_keys(params)
                for r in runs.runs_of(key, runs.key_seeds(key, params))}
    written = {o for o in dvc_outputs(tmp_path, path) if o.endswith("/encoder.pt")}
    assert written == expected
    assert len(expected) == sum(len(runs.key_seeds(k, params)) for k in runs.pretraining_keys(params))


def test_one_teacher_serves_every_seed_unless_each_seed_has_its_own():
    shared = {"seeds": [1, 2, 3], "burn": {"teacher": {"method": "mocov2", "backbone": "r18", "seeds": [1]}}}
    assert [runs.teacher_seed(shared, s) for s in (1, 2, 3)] == [1, 1, 1]
    assert runs.key_seeds("burn/teacher-mocov2-r18", shared) == [1]
    assert runs.key_seeds("burn/burn-stage2", shared) == [1, 2, 3]
    own = {"seeds": [0, 1], "burn": {"teacher": {"method": "mocov2", "backbone": "r18"}}}  # default: the seeds
    assert [runs.teacher_seed(own, s) for s in (0, 1)] == [0, 1]
    none = {"seeds": [0], "burn": {"teacher": {"method": "mocov2", "backbone": "r18", "seeds": []}}}
    assert runs.burn_teacher_keys(none) == []
    with pytest.raises(ConfigError, match="burn.teacher.seeds: empty"):
        runs.teacher_seed(none, 0)
    with pytest.raises(ConfigError, match="burn.teacher.seeds: expected a list"):
        runs.teacher_seeds({"burn": {"teacher": {"seeds": 0}}})


def test_a_student_given_the_teacher_folder_reads_the_teacher_of_its_seed(tmp_path):
    from burn.pretrain import resolve_teacher

    for seed in (0, 1):
        (tmp_path / "teacher" / f"s{seed}").mkdir(parents=True)
    params = {"seed": 2, "seeds": [0, 2], "burn": {"teacher": {"seeds": [0, 1]}}}
    assert resolve_teacher(params, str(tmp_path / "teacher")) == str(tmp_path / "teacher" / "s0")
    assert resolve_teacher({**params, "seed": 1}, str(tmp_path / "teacher")) == str(tmp_path / "teacher" / "s1")
    assert resolve_teacher(params, str(tmp_path / "teacher" / "s1")) == str(tmp_path / "teacher" / "s1")  # a run folder
    with pytest.raises(ConfigError, match="no teacher run s3"):
        resolve_teacher({"seed": 3, "burn": {"teacher": {"seeds": [3]}}}, str(tmp_path / "teacher"))


PACKAGES = ("common", "cq", "burn", "eval", "reports", "bench")
NAME_PATTERNS = [re.compile(p) for p in (r"-stage\{", r"-stage[12]\b", r"baseline-\{", r"\"baseline-", r"random_init-",
                                        r"teacher-\{", r"/s\{seed", r"\"s\{")]


def string_constants(path: Path) -> list[str]:
    """Every string literal of a module, docstrings left out (they may show example paths)."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            out.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            out.append(ast.unparse(node))
    return out


def test_no_module_but_the_run_contract_spells_run_folder_names():
    offenders = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path.relative_to(REPO).as_posix() == "common/runs.py":
                continue
            for text in string_constants(path):
                if any(p.search(text) for p in NAME_PATTERNS):
                    offenders.append(f"{path.relative_to(REPO)}: {text!r}")
    assert not offenders, "\n".join(offenders)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package, forbidden", [
    ("reports", ("burn", "cq", "eval", "common.engine", "common.methods", "common.backbones")),
    ("eval", ("burn", "cq", "common.engine", "common.backbones.")),  # the backbone registry, not its classes
    ("common", ("burn", "cq", "eval", "reports")),
])
def test_layers_import_only_downwards(package, forbidden):
    def hit(module: str, rule: str) -> bool:  # "x." forbids x's submodules only, "x" x and its submodules
        return module.startswith(rule) if rule.endswith(".") else module == rule or module.startswith(rule + ".")

    bad = [f"{p.relative_to(REPO)} imports {m}" for p in sorted((REPO / package).rglob("*.py"))
           for m in imports_of(p) if any(hit(m, rule) for rule in forbidden)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path, ignored", [
    ("runs/eval/linear.json", False),  # a DVC metrics file: committed, so `dvc exp show` can compare
    ("runs/eval/linear/cq/x/s0/metrics.json", True), ("runs/cq/x/s0/encoder.pt", True),
    ("runs/profile.json", True)])
def test_git_keeps_only_the_headline_summaries_of_the_runs_folder(path, ignored):
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO)
    assert done.returncode == (0 if ignored else 1), path


def test_two_stage_is_a_list_of_baselines_and_burn_is_not_one():
    burn = {"distill": ["s2bnn"], "baselines": ["mocov2_tuned"], "two_stage": ["s2bnn", "mocov2_tuned"]}
    assert runs.two_stage(burn) == ["s2bnn", "mocov2_tuned"] and runs.two_stage({}) == []
    assert runs.two_stage({**burn, "baselines": []}) == ["s2bnn", "mocov2_tuned"]  # idle when not run
    with pytest.raises(ConfigError, match="BURN has its own stages"):
        runs.two_stage({**burn, "two_stage": ["burn"]})
    with pytest.raises(ConfigError, match="expected a list"):
        runs.two_stage({"two_stage": "s2bnn"})


def test_run_names_parse_back_to_what_named_them():
    from common.errors import ConfigError

    assert runs.cq_run_parts(runs.cq_name("simclr", "cq_c", "cifar_resnet20")) == ("simclr", "cq_c", "cifar_resnet20")
    assert runs.cq_run_parts(runs.random_init_name("resnet18")) is None
    assert runs.burn_run_kind(runs.teacher_name("mocov2", "resnet50")) == ("teacher", "mocov2-resnet50")
    assert runs.burn_run_kind(runs.baseline_name("mocov2_tuned")) == ("baseline", "mocov2_tuned")
    assert runs.burn_run_kind(runs.random_init_name("reactnet_a")) == ("random_init", "reactnet_a")
    assert runs.burn_run_kind(runs.burn_stage_name("lambda_step", 2)) == ("stage2", "lambda_step")
    with pytest.raises(ConfigError):
        runs.burn_run_kind("lambda_step")


def test_appendix_runs_are_named_by_method_variant_and_backbone():
    params = {"burn": {"appendix": {"runs": ["infomin-weak_views-reactnet_a", "infomin-base-resnet50"]}}}
    assert runs.burn_appendix_keys(params) == ["burn/appendix-infomin-weak_views-reactnet_a",
                                               "burn/appendix-infomin-base-resnet50"]
    assert runs.expand(["burn_appendix"], params) == runs.burn_appendix_keys(params)
    assert set(runs.burn_appendix_keys(params)) <= set(runs.pretraining_keys(params))
    assert runs.appendix_parts("appendix-infomin-base-resnet50") == ("infomin", None, "resnet50")
    assert runs.burn_run_kind("appendix-infomin-weak_views-reactnet_a") == ("appendix", "infomin-weak_views-reactnet_a")
    for bad in (["infomin-weak"], ["a-b-c-d"], ["infomin--r"], "infomin-base-r"):
        with pytest.raises(ConfigError, match="burn.appendix.runs"):
            runs.appendix_runs({"burn": {"appendix": {"runs": bad}}})


def test_snapshots_live_in_their_own_folder_that_the_baseline_and_appendix_stages_declare(tmp_path):
    assert str(runs.snapshot_path("runs/burn/x/s0", 200)) == "runs/burn/x/s0/snapshots/encoder-e200.pt"
    path = profiles.profile_path("paper_small_data")
    params = profiles.load("paper_small_data")
    outs = dvc_outputs(tmp_path, path)
    keys = [k for k in runs.pretraining_keys(params) if k.startswith("burn/")
            and runs.burn_run_kind(k.split("/")[1])[0] in ("baseline", "appendix")]
    assert len(keys) == 3 + 6  # supervised, InfoMin, SimCLRv2 and the six runs of BURN App. B.1
    assert {f"{r.folder}/{runs.SNAPSHOTS}" for k in keys for r in runs.runs_of(k, runs.key_seeds(k, params))} <= outs
