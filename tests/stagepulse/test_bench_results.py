"""bench/results.json keeps every benchmark's figures: a module that replaces its section carries
over what another module merged into it (a rerun of bench_edge once dropped bench_edge_motion's
motion_cost_share and strobe_false_energy_rate, which the summary table still quoted)."""

import json

import pytest

from bench import results
from bench.bench_edge_motion import FIGURE_KEYS as MOTION_FIGURE_KEYS


@pytest.fixture
def results_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    monkeypatch.setattr(results, "RESULTS_PATH", path)
    return path


def test_a_rerun_that_replaces_the_section_keeps_the_other_modules_figures(results_file):
    results.record("edge", {"fps_1080p": 29.0, "dropped_key": 1})
    results.record(
        "edge", {**results.stamp("motion_"), "motion_cost_share": 0.007}, merge=True
    )  # bench_edge_motion, after bench_edge
    first_stamp = json.loads(results_file.read_text())["edge"]["motion_measured_at"]

    carried = results.figures_of_others("edge", lambda key: key in MOTION_FIGURE_KEYS)
    results.record("edge", {**carried, "fps_1080p": 31.8})  # bench_edge again, as it records

    edge = json.loads(results_file.read_text())["edge"]
    assert edge["fps_1080p"] == 31.8
    assert edge["motion_cost_share"] == 0.007
    assert edge["motion_measured_at"] == first_stamp  # still says when the motion was measured
    assert "dropped_key" not in edge  # what bench_edge itself no longer writes goes
    assert edge["_measured_at"] >= first_stamp


def test_the_other_sections_are_left_alone(results_file):
    results.record("pipeline", {"lost": 0})
    results.record("edge", {"fps_1080p": 30.0})
    assert json.loads(results_file.read_text())["pipeline"]["lost"] == 0
    assert results.figures_of_others("missing", lambda key: True) == {}
