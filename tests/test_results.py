"""The committed results: complete, from full runs, in the documented shape, and saying what the prose says.

Notebook 07's files (comparison, answers, learning-rate grid, pairwise intervals), notebook 10's (open set, label
noise) and notebook 04's (collapse controls) are checked here with plain pandas and NumPy, independently of the
notebooks; README.md's results section and GUIDE.md's verdicts must be what ``python -m tools.readme`` generates from
them.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from tools import readme
from tutorial_lib import results

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "notebooks" / "results"
STRATEGIES = ["batch_all", "batch_hard", "batch_semi_hard", "batch_hard_soft_margin"]
TRAINED = ["offline_random", "offline_mined", "mnrl", *STRATEGIES]
METHODS = ["untrained", "linear_probe", *TRAINED]
SEEDS = [0, 1, 2]
N_TRAIN, N_TEST = 840, 210


@pytest.fixture(scope="module")
def committed():
    return results.load_results(FOLDER)


@pytest.fixture(scope="module")
def runs(committed):
    return committed.runs


@pytest.fixture(scope="module")
def notebook_10():
    """open_set.csv, label_noise.csv, intervals_10.csv (read once)."""
    tables = readme.notebook_10_tables(FOLDER)
    assert tables is not None, f"notebook 10's results are missing: {readme.NOTEBOOK_10_FILES}"
    return tables


def assert_intervals_consistent(table):
    """Each stored interval holds its difference, and beyond_noise says whether it excludes 0."""
    assert (table["ci_low"] <= table["diff"]).all() and (table["diff"] <= table["ci_high"]).all()
    assert (table["beyond_noise"] == ((table["ci_low"] > 0) | (table["ci_high"] < 0))).all()


# ----------------------------------------------------------------------------------------------------------------
# notebook 07: comparison.csv
# ----------------------------------------------------------------------------------------------------------------


def test_every_method_and_seed(runs):
    assert set(runs["mode"]) == {"full"} and runs["run"].is_unique
    assert set(runs["loss"]) == set(METHODS)
    for method in TRAINED:
        assert sorted(runs.loc[runs["loss"] == method, "seed"].astype(int)) == SEEDS, method
    for method in ("untrained", "linear_probe"):
        assert (runs["loss"] == method).sum() == 1
    assert set(runs.loc[runs["loss"].isin(STRATEGIES), "kind"]) == {"online"}
    for method in ("linear_probe", "mnrl", "offline_mined", "offline_random", "untrained"):
        assert set(runs.loc[runs["loss"] == method, "kind"]) == {method}


def test_columns_and_one_epoch_for_every_trained_run(runs):
    assert {"kind", "loss", "seed", "learning_rate", "steps", "batch_size", "accuracy", "knn_accuracy",
            "triplet_accuracy", "silhouette", "recall_at_1"} <= set(runs.columns)
    trained = runs[runs["loss"].isin(TRAINED)]
    assert (trained["steps"] * trained["batch_size"] >= N_TRAIN).all()
    online = runs[runs["kind"] == "online"]
    assert (online["steps"] * online["batch_size"] >= N_TRAIN).all() and len(online) == 4 * len(SEEDS)


def test_accuracy_is_knn_accuracy_for_embedding_models_and_the_probes_own(runs, committed):
    embedding = runs[runs["loss"] != "linear_probe"]
    assert np.allclose(embedding["accuracy"], embedding["knn_accuracy"])
    probe, untrained = (runs[runs["loss"] == m].iloc[0] for m in ("linear_probe", "untrained"))
    for metric in ("knn_accuracy", "triplet_accuracy", "silhouette", "recall_at_1"):
        assert probe[metric] == untrained[metric]  # the probe does not change the embeddings
    answers = committed.answers
    assert set(answers["run"]) == set(runs["run"])
    assert (answers.groupby("run")["question"].nunique() == N_TEST).all()
    by_run = answers.groupby("run")[["accuracy", "recall_at_1"]].mean()
    assert np.allclose(by_run.loc[runs["run"], "accuracy"], runs["accuracy"])
    assert np.allclose(by_run.loc[runs["run"], "recall_at_1"], runs["recall_at_1"])


# ----------------------------------------------------------------------------------------------------------------
# notebook 07: the learning-rate grid and the chosen rates
# ----------------------------------------------------------------------------------------------------------------


def test_the_grid_spans_1e5_to_1e3_for_every_trained_method(committed):
    grid = committed.lr_selection
    assert {"loss", "learning_rate", "seed", "validation_accuracy", "chosen"} <= set(grid.columns)
    for method in TRAINED:
        rates = sorted(grid.loc[grid["loss"] == method, "learning_rate"].unique())
        assert len(rates) >= 3 and rates[0] <= 1e-5 and rates[-1] >= 1e-3, (method, rates)
    assert grid.loc[grid["loss"] == "linear_probe", "c"].nunique() >= 3


def test_the_chosen_rate_is_the_best_mean_validation_accuracy_and_the_final_runs_use_it(committed, runs):
    grid = committed.lr_selection
    for method in TRAINED:
        rows = grid[grid["loss"] == method]
        means = rows.groupby("learning_rate")["validation_accuracy"].mean()
        chosen = rows.loc[rows["chosen"].astype(bool), "learning_rate"].unique()
        assert len(chosen) == 1 and means[chosen[0]] == means.max(), method
        assert set(runs.loc[runs["loss"] == method, "learning_rate"]) == {chosen[0]}, method


# ----------------------------------------------------------------------------------------------------------------
# notebook 07: the paired bootstrap
# ----------------------------------------------------------------------------------------------------------------


def test_pairwise_covers_every_pair_on_accuracy(committed, runs):
    pairs = committed.pairwise
    assert {"a", "b", "metric", "diff", "ci_low", "ci_high"} <= set(pairs.columns)
    accuracy = pairs[pairs["metric"] == "accuracy"]
    stored = {frozenset((a, b)) for a, b in zip(accuracy["a"], accuracy["b"])}
    assert stored == {frozenset(p) for p in itertools.combinations(METHODS, 2)}
    means = runs.groupby("loss")["accuracy"].mean()
    assert np.allclose(accuracy["diff"], means.loc[accuracy["a"]].to_numpy() - means.loc[accuracy["b"]].to_numpy())
    assert_intervals_consistent(pairs)


def test_an_interval_recomputed_independently(committed, runs):
    """A plain NumPy paired bootstrap (questions resampled jointly, seeds jointly) gives the stored interval of the
    two best strategies to within the Monte-Carlo error of 2,000 draws."""
    means = runs[runs["loss"].isin(STRATEGIES)].groupby("loss")["accuracy"].mean().sort_values()
    a, b = means.index[-1], means.index[-2]

    def matrix(method):
        chosen = runs[runs["loss"] == method].sort_values("seed")["run"]
        table = committed.answers[committed.answers["run"].isin(chosen)]
        return table.pivot(index="run", columns="question", values="accuracy").loc[list(chosen)].to_numpy()

    ma, mb = matrix(a), matrix(b)
    rng = np.random.default_rng(123)
    diffs = []
    for _ in range(4000):
        q = rng.integers(0, N_TEST, N_TEST)
        s = rng.integers(0, len(SEEDS), len(SEEDS))
        diffs.append(ma[np.ix_(s, q)].mean() - mb[np.ix_(s, q)].mean())
    low, high = np.percentile(diffs, [2.5, 97.5])
    _, stored_low, stored_high = results.interval(committed.pairwise, a, b)
    assert abs(low - stored_low) < 0.006 and abs(high - stored_high) < 0.006, (low, high, stored_low, stored_high)


def test_readme_and_guide_are_generated_from_the_committed_results():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split(readme.RESULTS_START)[1].split(readme.RESULTS_END)[0].strip("\n")
    assert block == readme.readme_block(ROOT), "run: python -m tools.readme readme"
    guide = (ROOT / "GUIDE.md").read_text(encoding="utf-8")
    verdicts = guide.split(readme.GUIDE_START)[1].split(readme.GUIDE_END)[0].strip("\n")
    assert verdicts == readme.guide_block(ROOT), "run: python -m tools.readme readme"


def test_the_readme_picture_is_the_committed_output_of_notebook_03(tmp_path):
    committed_png = ROOT / readme.IMAGE_PATH
    assert committed_png.is_file(), f"{readme.IMAGE_PATH} is missing: run python -m tools.readme figure"
    fresh = readme.extract_figure(ROOT / "notebooks" / "03_batch_all.ipynb", tmp_path / "before_after.png")
    assert fresh.read_bytes() == committed_png.read_bytes(), "run: python -m tools.readme figure"


# ----------------------------------------------------------------------------------------------------------------
# notebooks 10 and 04
# ----------------------------------------------------------------------------------------------------------------


def test_open_set(notebook_10):
    table = notebook_10[0]
    assert {"loss", "seed", "held_out", "recall_at_1_before", "recall_at_1_after"} <= set(table.columns)
    assert set(table["loss"]) == set(STRATEGIES) and (table.groupby("loss")["seed"].nunique() >= 3).all()
    assert table["held_out"].nunique() == 1 and len(table["held_out"].iloc[0].split(" + ")) >= 3
    assert table["recall_at_1_before"].nunique() == 1  # one untrained model
    assert (table["recall_at_1_after"] > table["recall_at_1_before"]).all()  # what notebook 10 and the README say


def test_label_noise(notebook_10, runs):
    table = notebook_10[1]
    assert {"loss", "noise", "seed", "accuracy", "knn_accuracy", "triplet_accuracy", "silhouette",
            "recall_at_1"} <= set(table.columns)
    assert {0.0, 0.1, 0.2} <= set(table["noise"])
    for noise in (0.1, 0.2):
        rows = table[table["noise"] == noise]
        assert set(rows["loss"]) == set(STRATEGIES) and (rows.groupby("loss")["seed"].nunique() >= 2).all()
    clean = table[table["noise"] == 0.0].set_index(["loss", "seed"])["accuracy"]
    online = runs[runs["kind"] == "online"].set_index(["loss", "seed"])["accuracy"]
    clean = clean.sort_index()
    assert np.allclose(clean, online.loc[clean.index])  # 0% is notebook 07's runs


def test_intervals_of_notebook_10(notebook_10):
    open_set, noise, table = notebook_10
    assert {"study", "loss", "noise", "metric", "diff", "ci_low", "ci_high", "beyond_noise"} <= set(table.columns)
    assert_intervals_consistent(table)
    unseen = table[table["study"] == "unseen_labels"].set_index("loss")
    assert set(unseen.index) == set(STRATEGIES) and (unseen["metric"] == "recall_at_1").all()
    by_loss = open_set.groupby("loss")
    gains = by_loss["recall_at_1_after"].mean() - by_loss["recall_at_1_before"].mean()
    assert np.allclose(unseen["diff"], gains.loc[unseen.index])  # the interval is around the table's gain
    accuracy = noise.pivot_table(index="loss", columns="noise", values="accuracy", aggfunc="mean")
    noisy = table[table["study"] == "label_noise"].set_index(["loss", "noise"])
    for (loss, level), row in noisy.iterrows():
        assert row["metric"] == "accuracy"
        assert np.isclose(row["diff"], accuracy.loc[loss, level] - accuracy.loc[loss, 0.0])
    assert {(s, n) for s in STRATEGIES for n in (0.1, 0.2)} <= set(noisy.index)


def test_collapse_controls():
    table = results.load_table("collapse_controls.csv", FOLDER)
    assert {"loss", "learning_rate", "seed", "steps", "batch_size", "margin", "start_mean_distance",
            "end_mean_distance", "knn_accuracy"} <= set(table.columns)
    ratio = table.set_index(["loss", "learning_rate"]).eval("end_mean_distance / start_mean_distance")
    rates = sorted(table["learning_rate"].unique())
    assert {"batch_hard", "batch_semi_hard", "batch_all"} <= set(table["loss"]) and len(rates) >= 2
    # a rate where BatchHard collapses and BatchSemiHard trains; a rate where all three collapse
    assert any(ratio["batch_hard", r] < 0.3 and ratio["batch_semi_hard", r] > 0.5 for r in rates)
    assert any(all(ratio[s, r] < 0.3 for s in ("batch_hard", "batch_semi_hard", "batch_all")) for r in rates
               if all((s, r) in ratio.index for s in ("batch_hard", "batch_semi_hard", "batch_all")))


def test_the_results_files_are_small():
    sizes = {p.name: p.stat().st_size for p in FOLDER.glob("*.csv")}
    assert sum(sizes.values()) < 400_000, sizes


def test_the_claims_of_notebooks_07_and_10_follow_pairwise(committed, runs):
    """07's summary and checkpoints, 10's section 1: every strategy ahead of the probe beyond noise (accuracy and
    Recall@1); no two strategies distinguishable on accuracy; every MNRL run less compact than every strategy run."""
    pairs = committed.pairwise
    for strategy in STRATEGIES:
        assert results.better(pairs, strategy, "linear_probe")
        assert results.better(pairs, strategy, "linear_probe", "recall_at_1")
    for a, b in itertools.combinations(STRATEGIES, 2):
        assert not results.better(pairs, a, b) and not results.better(pairs, b, a), (a, b)
    silhouette = runs.set_index("loss")["silhouette"]
    assert silhouette.loc["mnrl"].max() < silhouette.loc[STRATEGIES].min()
