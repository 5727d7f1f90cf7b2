"""tutorial_lib.data: bundled data, CSV and Hub loaders, and their error messages. No network, no model."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, DatasetDict

from tutorial_lib import data
from tutorial_lib.data import DataError


def test_load_bundled_has_train_and_test_with_exactly_sentence_and_label():
    ds = data.load_bundled()
    assert isinstance(ds, DatasetDict) and set(ds) == {"train", "test"}
    for split in ds.values():
        assert split.column_names == ["sentence", "label"]
        assert isinstance(split.features["label"], ClassLabel)
        assert all(isinstance(s, str) and s.strip() for s in split["sentence"])
    names = data.label_names(ds)
    assert names == ds["train"].features["label"].names == ds["test"].features["label"].names
    assert names == sorted(names) and len(names) >= 2
    assert set(ds["test"]["label"]) <= set(range(len(names)))


def test_load_bundled_reads_the_repository_csvs_in_an_editable_install():
    repo_data = Path(data.__file__).resolve().parent.parent / "data"
    assert data._bundled_files(None) == repo_data
    assert len(data.load_bundled()["train"]) == sum(1 for _ in (repo_data / "train.csv").open()) - 1


def test_load_bundled_prefers_the_package_copy_of_a_wheel(tmp_path, monkeypatch, write_csv, toy_rows):
    package = tmp_path / "pkg"
    (package / "_bundled_data").mkdir(parents=True)
    for name in ("train.csv", "test.csv"):
        write_csv(toy_rows, name).rename(package / "_bundled_data" / name)
    monkeypatch.setattr(data.importlib.resources, "files", lambda _: package)
    assert data._bundled_files(None) == package / "_bundled_data"
    assert len(data.load_bundled()["train"]) == len(toy_rows)


def test_load_bundled_from_a_folder_maps_test_labels_with_the_training_names(tmp_path, write_csv):
    write_csv([("a b", "x"), ("c d", "x"), ("e f", "y"), ("g h", "y"), ("i j", "z"), ("k l", "z")], "train.csv")
    write_csv([("m n", "z"), ("o p", "y")], "test.csv")  # a subset of the labels, one example each
    ds = data.load_bundled(tmp_path)
    assert data.label_names(ds["test"]) == ["x", "y", "z"]
    assert ds["test"]["label"] == [2, 1]


def test_load_bundled_says_where_it_looked(tmp_path):
    with pytest.raises(DataError, match="bundled data not found"):
        data.load_bundled(tmp_path)


def test_load_csv_maps_string_labels_in_sorted_order(write_csv):
    path = write_csv([("one", "zebra"), ("two", "apple"), ("three", "zebra"), ("four", "apple")])
    ds = data.load_csv(path)
    assert isinstance(ds, Dataset)
    assert data.label_names(ds) == ["apple", "zebra"]
    assert ds["label"] == [1, 0, 1, 0]
    assert ds["sentence"] == ["one", "two", "three", "four"]


def test_integer_looking_labels_are_names_in_string_order_and_columns_are_renamed(write_csv):
    path = write_csv([("x", "3", "e"), ("y", "1000", "e"), ("z", "3", "e"), ("w", "1000", "e"), ("v", "7", "e"),
                      ("u", "7", "e")], header=("txt", "y", "o"))
    ds = data.load_csv(path, text_column="txt", label_column="y")
    assert ds.column_names == ["sentence", "label"]
    assert data.label_names(ds) == ["1000", "3", "7"]  # 3 labels, not ids 0..1000; sorted as strings
    assert ds["label"] == [1, 0, 1, 0, 2, 2]


def test_labels_that_differ_as_text_stay_apart_and_negative_labels_are_fine(write_csv):
    rows = [("a", "01"), ("b", "1"), ("c", "01"), ("d", "1"), ("e", "-1"), ("f", " -1 "), ("g", "10"), ("h", "9"),
            ("i", "10"), ("j", "9")]
    ds = data.load_csv(write_csv(rows))
    assert data.label_names(ds) == ["-1", "01", "1", "10", "9"]  # "01" != "1"; whitespace stripped; "10" < "9"
    assert ds["label"] == [1, 2, 1, 2, 0, 0, 3, 4, 3, 4]


def test_huge_integer_labels_cost_nothing(write_csv):
    ds = data.load_csv(write_csv([(f"s{i}", label) for i, label in enumerate(["1", "300000"] * 2)]))
    # checked first: reading labels as ids made 300,001 labels here, and the next load would exhaust the memory
    assert data.label_names(ds) == ["1", "300000"]
    rows = [(f"s{i}", label) for i, label in enumerate(["1", "2000000000", "5000000"] * 2)]
    start = time.perf_counter()
    ds = data.load_csv(write_csv(rows, "huge.csv"))
    assert time.perf_counter() - start < 5.0
    assert data.label_names(ds) == ["1", "2000000000", "5000000"]


def test_to_dataset_reads_ints_as_names():
    ds = data.to_dataset(["a", "b", "c", "d"], [3, 7, 3, 7])
    assert data.label_names(ds) == ["3", "7"] and ds["label"] == [0, 1, 0, 1]
    with pytest.raises(DataError, match=r"'0', '1' not among the known labels 'x', 'y'"):
        data.to_dataset(["a", "b"], [0, 1], label_names=["x", "y"], min_per_class=1)  # ints are never ids


def test_load_csv_holds_out_a_stratified_seeded_split(write_csv, toy_rows):
    path = write_csv(toy_rows)
    split = data.load_csv(path, test_size=0.25, seed=3)
    assert set(split) == {"train", "test"} and len(split["test"]) == 6
    assert Counter(split["test"]["label"]) == {0: 2, 1: 2, 2: 2}  # stratified: 2 of each 8
    again = data.load_csv(path, test_size=0.25, seed=3)
    assert again["test"]["sentence"] == split["test"]["sentence"]


def test_load_csv_with_given_label_names_rejects_an_unknown_label(write_csv):
    path = write_csv([("a", "x"), ("b", "w")])
    with pytest.raises(DataError, match=r"'w' not among the known labels 'x', 'y' \(data rows 2\)"):
        data.load_csv(path, label_names=["x", "y"], min_per_class=1)


def test_numeric_test_labels_unknown_to_training_are_refused(tmp_path, write_csv):
    write_csv([("a b", "1"), ("c d", "1"), ("e f", "2"), ("g h", "2")], "train.csv")
    write_csv([("m n", "2"), ("o p", "5"), ("q r", "01")], "test.csv")
    with pytest.raises(DataError, match=r"test.csv: label\(s\) '01', '5' not among the known labels '1', '2'"):
        data.load_bundled(tmp_path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="file not found: .*nope.csv"):
        data.load_csv(tmp_path / "nope.csv")


def test_missing_column_lists_the_available_columns(write_csv):
    path = write_csv([("a", "x")], header=("text", "label"))
    with pytest.raises(DataError, match=r"missing column\(s\) \['sentence'\]; available columns: \['text', 'label'\]"):
        data.load_csv(path)


def test_empty_text_names_the_rows(write_csv):
    path = write_csv([("a", "x"), ("  ", "x"), ("b", "y"), ("", "y")])
    with pytest.raises(DataError, match=r"empty text in 2 row\(s\): data rows 2, 4"):
        data.load_csv(path)


def test_empty_label_is_reported(write_csv):
    path = write_csv([("a", "x"), ("b", ""), ("c", "x")])
    with pytest.raises(DataError, match="empty label"):
        data.load_csv(path)


def test_singleton_classes_are_named(write_csv):
    path = write_csv([("a", "x"), ("b", "x"), ("c", "lonely"), ("d", "alone")])
    with pytest.raises(DataError, match=r"at least 2 examples.*'alone' \(1\), 'lonely' \(1\)"):
        data.load_csv(path)


def test_a_single_class_is_refused(write_csv):
    with pytest.raises(DataError, match="at least 2 classes"):
        data.load_csv(write_csv([("a", "x"), ("b", "x")]))


@pytest.mark.parametrize(
    "content, problem",
    [
        ("", "the file is empty"),
        ('sentence,label\n"an unclosed quote,x\nb,y\n', "malformed CSV: EOF inside string"),
        ("sentence,label\na,x\nb,y,surplus\n", "malformed CSV: Expected 2 fields in line 3, saw 3"),
    ],
)
def test_malformed_csv_gives_one_line_error(tmp_path, content, problem):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=problem) as info:
        data.load_csv(path)
    assert "\n" not in str(info.value)


def test_non_utf8_file_is_reported(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("sentence,label\ncaf\xe9,x\nthe,x\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8 text"):
        data.load_csv(path)


def test_a_bad_byte_deep_in_a_big_file_is_reported_at_its_real_offset_and_line(tmp_path):
    head = "sentence,label\n" + "".join(f"sentence number {i:05d} here,{'ab'[i % 2]}\n" for i in range(2500))
    path = tmp_path / "big.csv"
    path.write_bytes(head.encode() + "caf\xe9,a\n".encode("latin-1"))  # pandas would name an offset in a chunk
    offset = len(head.encode()) + 3
    with pytest.raises(DataError, match=rf"byte 0xe9 at byte offset {offset}, line 2502\); save it as UTF-8"):
        data.load_csv(path)


def test_a_utf8_byte_order_mark_is_not_part_of_the_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfsentence,label\na,x\nb,x\nc,y\nd,y\n")
    assert data.load_csv(path).column_names == ["sentence", "label"]


def test_a_split_that_cannot_be_stratified_is_a_split_error(write_csv):
    rows = [(f"s{i}-{j}", f"class{i}") for i in range(30) for j in range(2)]  # 60 rows: 12 test rows < 30 classes
    with pytest.raises(data.SplitError, match="cannot hold out a stratified test split of size 0.2.*separate test"):
        data.load_csv(write_csv(rows), test_size=0.2)
    assert issubclass(data.SplitError, DataError)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_load_hub_offline_fails_at_once_and_points_to_load_bundled(monkeypatch, variable):
    import datasets

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv(variable, "1")

    def no_network(*args, **kwargs):
        raise AssertionError("load_dataset must not be called offline")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"offline.*load_bundled\(\)"):
        data.load_hub("CogComp/trec", text_column="text", label_column="coarse_label")
    assert time.perf_counter() - start < 1.0


def _fake_hub(monkeypatch, splits: dict[str, Dataset]):
    import datasets

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    calls = []

    def load_dataset(name, config=None, revision=None):
        calls.append((name, config, revision))
        return DatasetDict(splits)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_load_hub_maps_columns_and_keeps_classlabel_names(monkeypatch):
    from datasets import Features, Value

    features = Features({"text": Value("string"), "coarse_label": ClassLabel(names=["ABBR", "DESC", "ENTY"]),
                         "fine_label": Value("int64")})
    rows = {"text": [f"q{i}" for i in range(6)], "coarse_label": [0, 1, 2, 0, 1, 2], "fine_label": [9] * 6}
    test = {"text": ["t0", "t1"], "coarse_label": [2, 0], "fine_label": [9, 9]}
    calls = _fake_hub(monkeypatch, {"train": Dataset.from_dict(rows, features=features),
                                    "test": Dataset.from_dict(test, features=features)})
    ds = data.load_hub("CogComp/trec", text_column="text", label_column="coarse_label")
    assert calls == [("CogComp/trec", None, None)]
    assert ds["train"].column_names == ["sentence", "label"]
    assert data.label_names(ds) == ["ABBR", "DESC", "ENTY"]
    assert ds["test"]["label"] == [2, 0] and ds["test"]["sentence"] == ["t0", "t1"]


def test_load_hub_reads_an_integer_column_as_names_and_classlabel_ids_by_name(monkeypatch):
    from datasets import Features, Value

    train = Dataset.from_dict({"text": [f"q{i}" for i in range(6)], "topic": [1000, 3, 7, 3, 7, 1000]},
                              features=Features({"text": Value("string"), "topic": Value("int64")}))
    _fake_hub(monkeypatch, {"train": train, "test": train.select([0, 1])})
    ds = data.load_hub("someone/ints", text_column="text", label_column="topic")
    assert data.label_names(ds) == ["1000", "3", "7"] and ds["train"]["label"] == [0, 1, 2, 1, 2, 0]
    # a test split whose ClassLabel lists the names in another order: mapped by name, not by id
    names = Features({"text": Value("string"), "topic": ClassLabel(names=["b", "a"])})
    order = Features({"text": Value("string"), "topic": ClassLabel(names=["a", "b"])})
    _fake_hub(monkeypatch, {"train": Dataset.from_dict({"text": list("wxyz"), "topic": [0, 1, 0, 1]}, features=order),
                            "test": Dataset.from_dict({"text": ["t", "u"], "topic": [0, 1]}, features=names)})
    ds = data.load_hub("someone/classes", text_column="text", label_column="topic")
    assert data.label_names(ds) == ["a", "b"] and ds["test"]["label"] == [1, 0]


def test_load_hub_without_a_test_split_holds_one_out_and_checks_columns(monkeypatch):
    rows = {"body": [f"s{i}" for i in range(10)], "topic": ["a", "b"] * 5}
    _fake_hub(monkeypatch, {"train": Dataset.from_dict(rows)})
    ds = data.load_hub("someone/topics", text_column="body", label_column="topic", test_size=4)
    assert len(ds["train"]) == 6 and Counter(ds["test"]["label"]) == {0: 2, 1: 2}
    with pytest.raises(DataError, match=r"missing column\(s\) \['text'\]; available columns: \['body', 'topic'\]"):
        data.load_hub("someone/topics", text_column="text", label_column="topic")


def test_to_dataset_builds_the_canonical_columns():
    ds = data.to_dataset(["a", "b", "c", "d"], ["y", "x", "y", "x"])
    assert ds.column_names == ["sentence", "label"] and ds["label"] == [1, 0, 1, 0]
    with pytest.raises(DataError, match="4 sentences but 3 labels"):
        data.to_dataset(["a", "b", "c", "d"], ["y", "x", "y"])
