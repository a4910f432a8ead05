"""reports.figures: the mapped line figures (BURN App. B.1 Figs. 6, 7) read measured cells."""
import json

import pytest

from common.errors import ConfigError
from reports.figures import line_figure, make_figures

SPEC = {"title": "negatives", "xlabel": "fraction",
        "panels": [{"ylabel": "top-1", "source": "linear:top1*100",
                    "lines": {"binary": {"1": "burn/baseline-infomin", "1/4": "burn/appendix-infomin-n4-r",
                                         "e1": ["burn/baseline-infomin", "snap/e1:top1*100"]},
                              "fp": {"1": "burn/appendix-infomin-base-fp", "1/4": "burn/appendix-infomin-n4-fp"}}}]}


def write(runs, suite, run, seed, value, sub=""):
    folder = runs / "eval" / suite / "burn" / run / f"s{seed}" / sub
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": "ok", "top1": value}))


def test_a_line_figure_plots_the_mean_over_seeds_with_its_interval(tmp_path):
    runs = tmp_path / "runs"
    for seed, value in ((0, 0.30), (1, 0.34)):
        write(runs, "linear", "baseline-infomin", seed, value)
        write(runs, "snap", "baseline-infomin", seed, value - 0.1, "e1")
    write(runs, "linear", "appendix-infomin-n4-r", 0, 0.5)
    made = line_figure("fig7", SPEC, runs, tmp_path / "out")
    assert [p.name for p in made] == ["fig7.png"] and made[0].stat().st_size > 1000
    data = json.loads((tmp_path / "out" / "fig7.json").read_text())["panels"]["top-1"]
    assert data["binary"]["1"]["value"] == pytest.approx(32.0) and data["binary"]["1"]["n"] == 2
    assert data["binary"]["1"]["half"] == pytest.approx(12.706 * 2 ** 1.5 / 2 ** 0.5, rel=1e-3)  # t(0.975, 1) sd / sqrt(n)
    assert data["binary"]["e1"]["value"] == pytest.approx(22.0)
    assert data["binary"]["1/4"] == pytest.approx(50.0)  # one seed: its number as it is
    assert data["fp"] == {"1": "not run", "1/4": "not run"}  # gaps, not zeros


def test_a_figure_with_nothing_measured_is_skipped_and_a_bad_spec_is_one_error(tmp_path, capsys):
    assert line_figure("fig7", SPEC, tmp_path / "runs", tmp_path / "out") == []
    assert make_figures(tmp_path / "runs", tmp_path / "out", {"fig7": SPEC}) == []
    assert "no fig7 figure" in capsys.readouterr().err
    for bad, says in (({"panels": []}, "expected {title, xlabel, panels"),
                      ({"panels": [{"lines": {"a": {"1": "burn/x"}}}]}, r"panels\[0\].lines.a.1: expected a run key"),
                      ({"panels": [{"lines": {"a": ["burn/x"]}}]}, "lines.a: expected"),
                      ({"panels": [{"source": "linear", "lines": {"a": {"1": "burn/x"}}}]}, "expected 'suite")):
        with pytest.raises(ConfigError, match=says):
            line_figure("f", bad, tmp_path / "runs", tmp_path / "out")
