"""tutorial_lib.results, tutorial_lib.bootstrap and tools.readme on small synthetic experiments."""

from __future__ import annotations

import base64

import nbformat
import numpy as np
import pandas as pd
import pytest

from tools import readme
from tutorial_lib import bootstrap, results

QUESTIONS = 40


def row(run, loss, seed, accuracy, kind="online", seconds=10.0, mode="full", rate=1e-4):
    return {"run": run, "kind": kind, "loss": loss, "seed": seed, "learning_rate": rate, "steps": 4, "batch_size": 8,
            "margin": 0.5, "train_seconds": seconds, "accuracy": accuracy, "knn_accuracy": accuracy,
            "triplet_accuracy": accuracy, "silhouette": accuracy / 10, "recall_at_1": accuracy, "mode": mode}


def answers_with(accuracy: float, seed: int) -> dict[str, np.ndarray]:
    correct = (np.random.default_rng(seed).random(QUESTIONS) < accuracy).astype(int)
    return {"accuracy": correct, "recall_at_1": correct}


@pytest.fixture
def synthetic(tmp_path):
    """untrained (1 run), a strong batch_all and a weak batch_hard (3 seeds each), with per-question answers."""
    folder = tmp_path / "runs"
    untrained = answers_with(0.5, 99)
    results.append_run(folder, {**row("untrained", "untrained", None, untrained["accuracy"].mean(), "untrained", 0.0),
                                "learning_rate": None, "steps": 0, "batch_size": None, "margin": None}, None, untrained)
    for seed in range(3):
        strong, weak = answers_with(0.95, seed), answers_with(0.6, 10 + seed)
        history = pd.DataFrame({"step": [1, 2, 3, 4], "loss": [0.5, 0.4, 0.3, 0.2]})
        results.append_run(folder, row(f"batch_all/s{seed}", "batch_all", seed, strong["accuracy"].mean()), history,
                           strong)
        results.append_run(folder, row(f"batch_hard/s{seed}", "batch_hard", seed, weak["accuracy"].mean()), history,
                           weak)
    return folder


def test_append_run_writes_rows_histories_answers_and_refuses_duplicates(synthetic):
    runs = pd.read_csv(synthetic / results.RUNS_FILE)
    assert len(runs) == 7 and list(runs.columns) == list(results.RUN_COLUMNS)
    histories = pd.read_csv(synthetic / results.HISTORIES_FILE)
    assert len(histories) == 6 * 4 and list(histories.columns) == ["run", "step", "loss"]
    answers = pd.read_csv(synthetic / results.ANSWERS_FILE)
    assert len(answers) == 7 * QUESTIONS
    by_run = answers.groupby("run")["accuracy"].mean()
    assert np.allclose(by_run.loc[runs["run"]].to_numpy(), runs["accuracy"].to_numpy())
    with pytest.raises(ValueError, match="already holds"):
        results.append_run(synthetic, row("batch_all/s0", "batch_all", 0, 0.9))
    with pytest.raises(ValueError, match="lacks"):
        results.append_run(synthetic, {"run": "x"})


def test_summary_orders_baselines_first(synthetic):
    table = results.summary(pd.read_csv(synthetic / results.RUNS_FILE), ["accuracy"])
    assert list(table.index) == ["untrained", "batch_all", "batch_hard"]
    assert int(table.loc["batch_all", ("n", "")]) == 3 and np.isnan(table.loc["untrained", ("accuracy", "std")])


def test_pairwise_intervals_separate_a_clear_difference_and_not_a_tiny_one(synthetic):
    runs, answers = (pd.read_csv(synthetic / name) for name in (results.RUNS_FILE, results.ANSWERS_FILE))
    table = results.pairwise(runs, answers, n_boot=500)
    assert set(table.columns) >= {"a", "b", "metric", "diff", "ci_low", "ci_high", "beyond_noise"}
    assert len(table) == 3 * 2  # 3 pairs x 2 per-question metrics
    diff, low, high = results.interval(table, "batch_all", "batch_hard")
    assert low <= diff <= high and low > 0 and results.better(table, "batch_all", "batch_hard")
    reverse = results.interval(table, "batch_hard", "batch_all")
    assert reverse == pytest.approx((-diff, -high, -low))
    assert not results.better(table, "batch_hard", "batch_all")
    same = answers_with(0.8, 5)
    near = same["accuracy"].copy()
    near[0] = 1 - near[0]  # one question of 40 differs
    assert not bootstrap.paired_bootstrap(same["accuracy"], near, n_boot=500).excludes_zero
    with pytest.raises(ValueError, match="no pair"):
        results.interval(table, "batch_all", "mnrl")


def test_the_bootstrap_pairs_questions():
    """Two models that differ on 5 of 200 questions, both right or both wrong on the rest: paired, the interval is
    narrow and excludes 0; resampling them independently (unpaired) would not."""
    rng = np.random.default_rng(0)
    shared = (rng.random(200) < 0.7).astype(int)
    a, b = shared.copy(), shared.copy()
    flips = np.flatnonzero(shared == 0)[:5]
    a[flips] = 1
    paired = bootstrap.paired_bootstrap(a, b)
    assert paired.diff == pytest.approx(5 / 200) and paired.excludes_zero
    unpaired = [a[rng.integers(0, 200, 200)].mean() - b[rng.integers(0, 200, 200)].mean() for _ in range(2000)]
    assert np.percentile(unpaired, 2.5) < 0 < paired.low  # the pairing is what makes the difference visible


def test_choose_settings_by_mean_validation_accuracy_then_silhouette():
    grid = pd.DataFrame([
        {"loss": "batch_all", "learning_rate": 1e-5, "c": None, "seed": 0, "validation_accuracy": 0.90,
         "validation_silhouette": 0.1},
        {"loss": "batch_all", "learning_rate": 1e-5, "c": None, "seed": 1, "validation_accuracy": 0.94,
         "validation_silhouette": 0.1},
        {"loss": "batch_all", "learning_rate": 1e-4, "c": None, "seed": 0, "validation_accuracy": 0.92,
         "validation_silhouette": 0.3},
        {"loss": "batch_all", "learning_rate": 1e-4, "c": None, "seed": 1, "validation_accuracy": 0.92,
         "validation_silhouette": 0.3},  # the same mean accuracy, a higher silhouette: chosen
        {"loss": "linear_probe", "learning_rate": None, "c": 1.0, "seed": 0, "validation_accuracy": 0.93,
         "validation_silhouette": np.nan},
        {"loss": "linear_probe", "learning_rate": None, "c": 10.0, "seed": 0, "validation_accuracy": 0.95,
         "validation_silhouette": np.nan},
    ])
    chosen = results.choose_settings(grid)
    assert chosen.to_dict() == {"linear_probe": 10.0, "batch_all": 1e-4}


def test_tables_are_written_atomically_and_named_when_missing(tmp_path):
    path = results.save_table("open_set.csv", pd.DataFrame({"x": [1, 2]}), tmp_path)
    assert path.read_text().splitlines() == ["x", "1", "2"]
    assert [p.name for p in tmp_path.iterdir()] == ["open_set.csv"]  # no temporary file left behind
    assert results.load_table("open_set.csv", tmp_path)["x"].tolist() == [1, 2]
    with pytest.raises(FileNotFoundError, match="run the notebook that writes it"):
        results.load_table("label_noise.csv", tmp_path)


def test_markdown_table_and_readme_block(synthetic, tmp_path):
    runs = pd.read_csv(synthetic / results.RUNS_FILE)
    answers = pd.read_csv(synthetic / results.ANSWERS_FILE)
    table = results.markdown_table(runs)
    lines = table.splitlines()
    assert lines[0].startswith("| model | accuracy | kNN accuracy") and len(lines) == 2 + 3
    assert "| untrained model |" in table and "| BatchAllTripletLoss |" in table
    pairs = results.pairwise(runs, answers, n_boot=200)
    with pytest.raises(KeyError):  # the README's verdicts need every baseline of the real experiment
        readme.results_block(runs, pairs)
    text = f"intro\n{readme.RESULTS_START}\nold\n{readme.RESULTS_END}\nrest\n"
    new = readme.readme_with_results(text, "NEW")
    assert new == f"intro\n{readme.RESULTS_START}\nNEW\n{readme.RESULTS_END}\nrest\n"
    with pytest.raises(ValueError, match="markers"):
        readme.readme_with_results("no markers", "NEW")
    with pytest.raises(ValueError, match="full run"):
        readme.results_block(runs.assign(mode="fast"), pairs)


def test_save_projection_checks_shapes(tmp_path):
    results.save_projection(tmp_path, "r", np.zeros((3, 2)), [0, 1, 1], "pca")
    frame = pd.read_csv(tmp_path / results.PROJECTIONS_FILE)
    assert list(frame.columns) == ["run", "x", "y", "label", "method"] and len(frame) == 3
    with pytest.raises(ValueError, match="N, 2"):
        results.save_projection(tmp_path, "r", np.zeros((3, 3)), [0, 1, 1], "pca")


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()


def write_notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    for source, tags, png in cells:
        cell = nbformat.v4.new_code_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        if png:
            cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "fig"})]
        nb.cells.append(cell)
    nbformat.write(nb, path)


def test_extract_figure_prefers_the_tagged_cell(tmp_path):
    other = base64.b64encode(b"\x89PNG other").decode()
    notebook = tmp_path / "nb.ipynb"
    write_notebook(notebook, [("x = 1", None, None), ("viz.plot_before_after(a, b, y)", None, other),
                              ("fig", ["before-after"], PNG)])
    out = readme.extract_figure(notebook, tmp_path / "docs" / "before_after.png")
    assert out.read_bytes() == base64.b64decode(PNG)
    write_notebook(notebook, [("x = 1", None, None), ("viz.plot_before_after(a, b, y)", None, other)])
    assert readme.extract_figure(notebook, tmp_path / "out.png").read_bytes() == base64.b64decode(other)
    write_notebook(notebook, [("x = 1", None, None)])
    with pytest.raises(ValueError, match="no code cell"):
        readme.extract_figure(notebook, tmp_path / "none.png")


def _notebook_10_tables(change_hard: float, high_hard: float):
    from tutorial_lib.strategies import STRATEGIES

    open_set = pd.DataFrame([{"loss": s, "seed": seed, "held_out": "a + b + c", "recall_at_1_before": 0.6,
                              "recall_at_1_after": 0.9} for s in STRATEGIES for seed in range(3)])
    noise = pd.DataFrame([{"loss": s, "noise": level, "seed": 0, "accuracy": 0.9} for s in STRATEGIES
                          for level in (0.0, 0.1, 0.2)])
    intervals = pd.DataFrame(
        [{"study": "unseen_labels", "loss": s, "noise": 0.0, "metric": "recall_at_1", "diff": 0.3, "ci_low": 0.2,
          "ci_high": 0.4, "beyond_noise": True} for s in STRATEGIES]
        + [{"study": "label_noise", "loss": s, "noise": 0.2, "metric": "accuracy",
            "diff": change_hard if s == "batch_hard" else 0.0, "ci_low": change_hard - 0.02 if s == "batch_hard"
            else -0.01, "ci_high": high_hard if s == "batch_hard" else 0.01, "beyond_noise": False}
           for s in STRATEGIES])
    return open_set, noise, intervals


def test_where_it_wins_states_only_what_the_intervals_show():
    lost = readme.where_it_wins(*_notebook_10_tables(-0.05, -0.01))
    assert "0.600 (untrained)" in lost and "every gain's 95% paired bootstrap interval lies above 0" in lost
    assert "BatchHard -0.050 [-0.070, -0.010]" in lost
    assert "beyond noise for BatchHard," in lost
    unclear = readme.where_it_wins(*_notebook_10_tables(-0.05, 0.01))
    assert "no strategy's loss is distinguishable from no change" in unclear and "beyond noise for" not in unclear
