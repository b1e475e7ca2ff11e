"""Where a study's files lie (picollm.layout)."""
from picollm.layout import experiment_of


def test_experiment_of_reads_the_last_results_folder(tmp_path):
    assert experiment_of("/data/results/pico/results/exp/figures/x.png") == "exp"
    assert experiment_of(tmp_path / "results" / "exp" / "figures" / "x.png") == "exp"
    assert experiment_of("/data/pico/results/exp") is None  # nothing under results/exp/
    assert experiment_of("/data/pico/figures/x.png") is None
