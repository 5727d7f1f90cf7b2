"""Notebook 07's committed results: complete, from a full run, in sync with the README, and saying what notebooks 07
and 09 claim (recomputed here from the CSV files with plain pandas, independently of tutorial_lib.results); plus the
helpers of tutorial_lib.results on small synthetic runs."""

from __future__ import annotations

import base64
import statistics
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from tutorial_lib import results

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "notebooks" / "results"
STRATEGIES = ["batch_all", "batch_hard", "batch_semi_hard", "batch_hard_soft_margin"]
METRICS = ["knn_accuracy", "triplet_accuracy", "silhouette", "recall_at_1"]
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def committed():
    return results.load_results(FOLDER)


@pytest.fixture(scope="module")
def runs(committed):
    return committed.runs


# ----------------------------------------------------------------------------------------------------------------
# What the files hold
# ----------------------------------------------------------------------------------------------------------------


def test_every_strategy_and_seed_and_both_baselines_are_there(runs):
    assert set(runs["mode"]) == {"full"}
    assert runs["run"].is_unique
    seeds = runs[runs["group"] == "seeds"]
    for loss in [*STRATEGIES, "offline_triplet"]:
        assert sorted(seeds.loc[seeds["loss"] == loss, "seed"].astype(int)) == SEEDS, loss
    assert len(seeds[seeds["loss"] == "untrained"]) == 1
    sweep = runs[runs["group"] == "margin"]
    for loss in STRATEGIES[:3]:
        assert sorted(sweep.loc[sweep["loss"] == loss, "margin"]) == [0.2, 1.0]
    assert set(sweep["seed"]) == {0}
    assert len(runs) == 4 * 3 + 3 + 1 + 3 * 2


def test_identical_conditions(runs):
    trained = runs[runs["kind"] != "untrained"]
    for column in ("steps", "batch_size", "learning_rate"):
        assert trained[column].nunique() == 1, column
    margins = runs[(runs["group"] == "seeds") & runs["margin"].notna()]["margin"]
    assert set(margins) == {0.5}
    assert runs.loc[runs["loss"] == "batch_hard_soft_margin", "margin"].isna().all()  # it has no margin


def test_histories_and_projections_cover_the_runs(committed, runs):
    steps = int(runs.loc[runs["kind"] != "untrained", "steps"].iloc[0])
    per_run = committed.histories.groupby("run")["step"].agg(["count", "max"])
    trained = runs.loc[runs["kind"] != "untrained", "run"]
    assert set(per_run.index) == set(trained)
    assert (per_run["count"] == steps).all() and (per_run["max"] == steps).all()
    projected = committed.projections.groupby("run").size()
    seed0 = runs[(runs["group"] == "seeds") & (runs["seed"] == 0) & (runs["kind"] == "online")]["run"]
    assert set(projected.index) == set(seed0) and (projected == 210).all()
    assert set(committed.projections["method"]) == {"umap"}


def test_readme_results_section_is_generated_from_the_committed_csv(runs):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split(results.RESULTS_START)[1].split(results.RESULTS_END)[0].strip("\n")
    image = results.IMAGE_PATH if (ROOT / results.IMAGE_PATH).is_file() else None
    assert block == results.results_block(runs, image), "run: python -m tutorial_lib.results readme"


# ----------------------------------------------------------------------------------------------------------------
# The conclusions of notebooks 07 and 09, recomputed from the CSV with plain pandas and statistics
# ----------------------------------------------------------------------------------------------------------------


def values(runs, loss, metric):
    chosen = runs[(runs["group"] == "seeds") & (runs["loss"] == loss)]
    return chosen[metric].tolist()


def compare(runs, a, b, metric):
    """(delta, beyond noise) with the rule |mean_a - mean_b| > 2 * max(std_a, std_b), std over seeds (ddof=1)."""
    va, vb = values(runs, a, metric), values(runs, b, metric)
    std = max(statistics.stdev(v) if len(v) > 1 else 0.0 for v in (va, vb))
    delta = statistics.fmean(va) - statistics.fmean(vb)
    return delta, abs(delta) > 2 * std


@pytest.mark.parametrize("metric", METRICS)
def test_online_mining_beats_both_baselines_beyond_noise(runs, metric):
    for loss in STRATEGIES:
        for baseline in ("untrained", "offline_triplet"):
            delta, beyond = compare(runs, loss, baseline, metric)
            assert delta > 0 and beyond, (loss, baseline, metric, delta)


@pytest.mark.parametrize("metric", METRICS)
def test_two_tiers_among_the_strategies(runs, metric):
    for top in ("batch_all", "batch_semi_hard"):
        for bottom in ("batch_hard", "batch_hard_soft_margin"):
            delta, beyond = compare(runs, top, bottom, metric)
            assert delta > 0 and beyond, (top, bottom, metric, delta)
    assert not compare(runs, "batch_hard", "batch_hard_soft_margin", metric)[1]


def test_within_the_top_tier(runs):
    assert not compare(runs, "batch_all", "batch_semi_hard", "knn_accuracy")[1]
    assert not compare(runs, "batch_all", "batch_semi_hard", "silhouette")[1]
    for metric in ("triplet_accuracy", "recall_at_1"):
        delta, beyond = compare(runs, "batch_all", "batch_semi_hard", metric)
        assert beyond and 0.01 <= delta <= 0.025, (metric, delta)  # "by 0.01–0.02"


def test_the_numbers_quoted_in_the_text(runs):
    mean = {loss: statistics.fmean(values(runs, loss, "knn_accuracy")) for loss in [*STRATEGIES, "offline_triplet"]}
    assert round(values(runs, "untrained", "knn_accuracy")[0], 2) == 0.58 and round(mean["offline_triplet"], 2) == 0.83
    assert round(min(mean[s] for s in STRATEGIES), 2) == 0.92 and round(max(mean[s] for s in STRATEGIES), 2) == 0.95
    offline_std = statistics.stdev(values(runs, "offline_triplet", "knn_accuracy"))
    online_std = max(statistics.stdev(values(runs, s, "knn_accuracy")) for s in STRATEGIES)
    assert 6.5 < offline_std / online_std < 7.5  # "about seven times"


def test_batch_all_is_the_choice_of_notebook_09(runs):
    for metric in METRICS:
        best = max(STRATEGIES, key=lambda loss: statistics.fmean(values(runs, loss, metric)))
        assert best == "batch_all", metric


def test_margin_sweep(committed, runs):
    sweep = runs[(runs["kind"] == "online") & (runs["seed"] == 0) & runs["margin"].notna()]
    by_step = committed.histories.pivot(index="step", columns="run", values="loss")
    for loss, low, high in [("batch_hard", 0.2, 0.5), ("batch_hard", 0.5, 1.0), ("batch_semi_hard", 0.5, 1.0)]:
        shift = by_step[f"{loss}/m{high}/s0"] - by_step[f"{loss}/m{low}/s0"]
        assert np.allclose(shift, high - low, atol=1e-4)
        rows = sweep[(sweep["loss"] == loss) & sweep["margin"].isin([low, high])]
        assert (rows[METRICS].nunique() == 1).all()
    semi = sweep[sweep["loss"] == "batch_semi_hard"].set_index("margin")
    assert semi.loc[0.2, "silhouette"] != semi.loc[0.5, "silhouette"]  # "differs slightly"
    assert semi.loc[0.2, "knn_accuracy"] == semi.loc[0.5, "knn_accuracy"]  # "though not in kNN accuracy"
    for loss in STRATEGIES[:3]:
        knn = sweep.loc[sweep["loss"] == loss, "knn_accuracy"]
        assert knn.max() - knn.min() < 2 * statistics.stdev(values(runs, loss, "knn_accuracy"))


def test_curves(committed, runs):
    seeds = runs[(runs["group"] == "seeds") & (runs["kind"] == "online")][["run", "loss"]]
    curves = committed.histories.merge(seeds.rename(columns={"loss": "strategy"}), on="run")
    curves = curves.groupby(["strategy", "step"])[["hard_fraction", "mean_distance"]].mean()
    for loss in STRATEGIES:
        hard, distance = curves.loc[loss, "hard_fraction"], curves.loc[loss, "mean_distance"]
        assert 0.2 < hard.iloc[0] < 0.3 and 0.08 < hard.iloc[-1] < 0.15  # "about a quarter ... 10–13%"
        assert abs(distance.iloc[-1] - distance.iloc[0]) < 0.05 * distance.iloc[0]
    gap = (curves.loc["batch_hard", "hard_fraction"] - curves.loc["batch_hard_soft_margin", "hard_fraction"]).abs()
    assert gap.max() < 0.01


def test_training_time(runs):
    losses = [*STRATEGIES, "offline_triplet"]
    for i, a in enumerate(losses):
        for b in losses[i + 1:]:
            assert not compare(runs, a, b, "train_seconds")[1], (a, b)
    assert runs.loc[runs["kind"] != "untrained", "train_seconds"].max() < 60


# ----------------------------------------------------------------------------------------------------------------
# The helpers, on synthetic runs
# ----------------------------------------------------------------------------------------------------------------


def row(run, loss, seed, knn, kind="online", group="seeds", seconds=10.0, mode="full"):
    return {"run": run, "kind": kind, "loss": loss, "margin": 0.5, "seed": seed, "group": group, "steps": 4,
            "batch_size": 8, "learning_rate": 5e-5, "train_seconds": seconds, "knn_accuracy": knn,
            "triplet_accuracy": knn, "silhouette": knn / 10, "recall_at_1": knn, "mode": mode}


@pytest.fixture
def synthetic(tmp_path):
    folder = tmp_path / "runs"
    results.append_run(folder, {**row("untrained", "untrained", None, 0.5, kind="untrained", seconds=0.0),
                                "margin": None, "steps": 0, "batch_size": None, "learning_rate": None})
    for seed, (a, b) in enumerate([(0.90, 0.80), (0.91, 0.85), (0.92, 0.75)]):
        history = pd.DataFrame({"step": [1, 2, 3, 4], "loss": [0.5, 0.4, 0.3, 0.2], "hard_fraction": 0.1})
        results.append_run(folder, row(f"batch_all/s{seed}", "batch_all", seed, a), history)
        results.append_run(folder, row(f"batch_hard/s{seed}", "batch_hard", seed, b),
                           pd.DataFrame({"step": [1, 2, 3, 4], "loss": [0.6, 0.5, 0.5, 0.4]}))
    return folder


def test_append_run_writes_rows_and_histories_and_refuses_duplicates(synthetic):
    runs = pd.read_csv(synthetic / results.RUNS_FILE)
    histories = pd.read_csv(synthetic / results.HISTORIES_FILE)
    assert len(runs) == 7 and list(runs.columns) == list(results.RUN_COLUMNS)
    assert len(histories) == 6 * 4 and set(histories.columns) == {"run", "step", "loss", "hard_fraction"}
    with pytest.raises(ValueError, match="already holds"):
        results.append_run(synthetic, row("batch_all/s0", "batch_all", 0, 0.9))
    with pytest.raises(ValueError, match="lacks"):
        results.append_run(synthetic, {"run": "x"})


def test_summary_and_separation(synthetic):
    runs = pd.read_csv(synthetic / results.RUNS_FILE)
    table = results.summary(runs, ["knn_accuracy"])
    assert list(table.index) == ["untrained", "batch_all", "batch_hard"]  # baselines first
    assert table.loc["batch_all", ("knn_accuracy", "mean")] == pytest.approx(0.91)
    assert table.loc["batch_all", ("knn_accuracy", "std")] == pytest.approx(0.01)
    assert int(table.loc["batch_all", results.N]) == 3 and np.isnan(table.loc["untrained", ("knn_accuracy", "std")])
    sep = results.separation(runs, "batch_all", "batch_hard")
    assert sep.delta == pytest.approx(0.11) and sep.noise == pytest.approx(0.1) and sep.exceeds
    silhouette = results.separation(runs, "batch_all", "batch_hard", "silhouette")  # 0.011 against 2 * 0.005
    assert silhouette.delta == pytest.approx(0.011) and silhouette.noise == pytest.approx(0.01) and silhouette.exceeds
    assert not results.separation(runs, "batch_all", "batch_hard", "train_seconds").exceeds  # equal times
    assert results.separation(runs, "batch_all", "untrained").exceeds  # a single run has no spread of its own
    with pytest.raises(ValueError, match="no runs"):
        results.separation(runs, "batch_all", "batch_semi_hard")


def test_markdown_table_and_readme_block(synthetic, tmp_path):
    (synthetic / results.PROJECTIONS_FILE).write_text("run,x,y,label,method\n")
    runs = results.load_results(synthetic).runs
    table = results.markdown_table(runs)
    lines = table.splitlines()
    assert lines[0].startswith("| model | kNN accuracy") and len(lines) == 2 + 3
    assert "| untrained model | 0.500 |" in table and "| — | 1 |" in table
    assert "| BatchAllTripletLoss | 0.910 ± 0.010 |" in table
    block = results.results_block(runs, image="docs/x.png")
    assert block.startswith("## Results") and table in block and block.endswith("(docs/x.png)")
    assert "4 steps × batch 8 sentences, learning rate 5e-5, margin 0.5" in " ".join(block.split())
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{results.RESULTS_START}\nold\n{results.RESULTS_END}\nrest\n")
    new = results.readme_with_results(readme.read_text(), block)
    assert new.startswith("intro\n") and new.endswith("rest\n") and "old" not in new and block in new
    with pytest.raises(ValueError, match="markers"):
        results.readme_with_results("no markers", block)
    fast = runs.assign(mode="fast")
    with pytest.raises(ValueError, match="full run"):
        results.results_block(fast)


def test_load_results_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebook 07"):
        results.load_results(tmp_path)


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
    out = results.extract_figure(notebook, tmp_path / "docs" / "before_after.png")
    assert out.read_bytes() == base64.b64decode(PNG)
    write_notebook(notebook, [("x = 1", None, None), ("viz.plot_before_after(a, b, y)", None, other)])
    assert results.extract_figure(notebook, tmp_path / "out.png").read_bytes() == base64.b64decode(other)
    write_notebook(notebook, [("x = 1", None, None)])
    with pytest.raises(ValueError, match="no code cell"):
        results.extract_figure(notebook, tmp_path / "none.png")


def test_the_command_line_rewrites_the_readme_of_a_copy(tmp_path, capsys):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "results").mkdir()
    for name in results.FILES:
        (tmp_path / "notebooks" / "results" / name).write_bytes((FOLDER / name).read_bytes())
    (tmp_path / "README.md").write_text(f"# x\n{results.RESULTS_START}\n{results.RESULTS_END}\n")
    assert results.main(["--root", str(tmp_path), "readme"]) == 0
    assert "rewritten" in capsys.readouterr().out
    assert "| BatchAllTripletLoss |" in (tmp_path / "README.md").read_text()
    assert results.main(["--root", str(tmp_path), "readme"]) == 0
    assert "already up to date" in capsys.readouterr().out
    notebook = tmp_path / "notebooks" / "03_batch_all.ipynb"
    write_notebook(notebook, [("viz.plot_before_after(a, b, y)", None, PNG)])
    assert results.main(["--root", str(tmp_path), "figure"]) == 0
    assert (tmp_path / results.IMAGE_PATH).read_bytes() == base64.b64decode(PNG)
    assert f"]({results.IMAGE_PATH})" in (tmp_path / "README.md").read_text()


def test_the_results_files_are_small():
    sizes = {name: (FOLDER / name).stat().st_size for name in results.FILES}
    assert sum(sizes.values()) < 200_000, sizes


def test_the_readme_picture_is_the_committed_output_of_notebook_03(tmp_path):
    committed_png = ROOT / results.IMAGE_PATH
    assert committed_png.is_file(), f"{results.IMAGE_PATH} is missing: run python -m tutorial_lib.results figure"
    fresh = results.extract_figure(ROOT / "notebooks" / "03_batch_all.ipynb", tmp_path / "before_after.png")
    assert fresh.read_bytes() == committed_png.read_bytes(), \
        "docs/before_after.png is not notebook 03's committed picture: run python -m tutorial_lib.results figure"
    assert f"]({results.IMAGE_PATH})" in (ROOT / "README.md").read_text(encoding="utf-8")
