"""python -m tools.bench (over tutorial_lib.bench): runs, writes JSON, prints a table, and skips what cannot fit."""

from __future__ import annotations

import json

from tools import bench as bench_cli
from tutorial_lib import bench


def test_small_cpu_run_writes_json_and_table(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_cli.main(["--device", "cpu", "--sizes", "16", "--layouts", "pk", "few", "--dim", "8",
                       "--repeats", "20", "--warmup", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["environment"]["sentence_transformers"].startswith("6.")
    rows = data["results"]
    assert {(r["impl"], r["strategy"]) for r in rows} >= {("ours", "batch_all"), ("st", "batch_all"), ("floor", "floor")}
    assert all(r["ms"] > 0 for r in rows)
    text = capsys.readouterr().out
    assert "Device: CPU" in text and "| 16 |" in text and "Layout `few`" in text


def test_configurations_that_cannot_fit_are_skipped(monkeypatch):
    monkeypatch.setattr(bench, "free_bytes", lambda device: 10**9)  # pretend 1 GB is free
    import torch

    results = bench.run(torch.device("cpu"), [4096], ["few"], ["batch_all"], 8, 0, 20, impls=("st",), log=lambda _: None)
    assert results[0].skipped.startswith("skipped: needs ~") and results[0].ms is None


def test_predictions_follow_the_formulations():
    # ST's BatchAll grows as B * (K - 1) * B; ours stays O(B^2)
    st_few = bench.predicted_bytes("st", "batch_all", "few", 2048, 768)
    st_pk = bench.predicted_bytes("st", "batch_all", "pk", 2048, 768)
    ours = bench.predicted_bytes("ours", "batch_all", "few", 2048, 768)
    assert st_few > 100 * st_pk and ours < st_few / 100
