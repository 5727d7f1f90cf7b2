"""tutorial_lib.st_losses: drop-in modules for SentenceTransformerTrainer, equal to sentence-transformers' own."""

from __future__ import annotations

import pytest
import torch

from tutorial_lib import losses, st_losses

pytestmark = pytest.mark.usefixtures("single_thread")

SENTENCES = ["the cat sat", "a dog ran", "the bird sang", "a cat slept", "the dog barked", "a bird flew",
             "cats purr", "dogs bark", "birds fly", "the cat ate", "the dog ate", "the bird ate"]
LABELS = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]


def _features(model, sentences):
    return [model.preprocess(sentences)]


@pytest.mark.parametrize("strategy", list(st_losses.LOSSES))
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_module_equals_sentence_transformers_module(strategy, distance, tiny_st_model):
    """Same batch through the same model: equal loss and equal parameter gradients."""
    model = tiny_st_model
    labels = torch.tensor(LABELS)
    ours = st_losses.make_loss(strategy, model, margin=0.3, distance=distance)
    theirs = st_losses.sentence_transformers_loss(strategy, model, margin=0.3, distance=distance)
    results = []
    for module in (ours, theirs):
        model.zero_grad()
        value = module(_features(model, SENTENCES), labels)
        value.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((value.detach(), grads))
    (v, g), (v_st, g_st) = results
    assert torch.allclose(v, v_st, rtol=1e-4, atol=1e-5)
    assert (g - g_st).norm() <= 1e-4 * g_st.norm() + 1e-6


def test_last_stats_are_the_batch_statistics_and_detached(tiny_st_model):
    loss = st_losses.BatchSemiHardTripletLoss(tiny_st_model, margin=0.3)
    labels = torch.tensor(LABELS)
    loss(_features(tiny_st_model, SENTENCES), labels)
    with torch.no_grad():
        embeddings = tiny_st_model(_features(tiny_st_model, SENTENCES)[0])["sentence_embedding"]
    expected = losses.triplet_stats(embeddings, labels, 0.3)
    assert set(loss.last_stats) == set(expected)
    for key, value in loss.last_stats.items():
        assert not value.requires_grad and value.dim() == 0
        assert torch.allclose(value.double(), expected[key].double())
    quiet = st_losses.BatchAllTripletLoss(tiny_st_model, margin=0.3, track_stats=False)
    quiet(_features(tiny_st_model, SENTENCES), labels)
    assert quiet.last_stats is None


def test_config_citation_and_repr(tiny_st_model):
    hard = st_losses.BatchHardTripletLoss(tiny_st_model, distance="cosine", margin=0.2)
    assert hard.get_config_dict() == {"distance": "cosine", "margin": 0.2}
    assert "Hermans" in hard.citation and "FaceNet" in st_losses.BatchSemiHardTripletLoss(tiny_st_model).citation
    assert st_losses.BatchHardSoftMarginTripletLoss(tiny_st_model).get_config_dict() == {"distance": "euclidean"}
    assert "margin=0.2" in repr(hard)


def test_bad_arguments_are_named(tiny_st_model):
    with pytest.raises(ValueError, match="distance must be one of"):
        st_losses.BatchAllTripletLoss(tiny_st_model, distance="manhattan")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        st_losses.BatchHardTripletLoss(tiny_st_model, margin=-1)
    with pytest.raises(ValueError, match="unknown strategy"):
        st_losses.make_loss("batch_random", tiny_st_model)
    loss = st_losses.BatchHardTripletLoss(tiny_st_model)
    features = _features(tiny_st_model, SENTENCES)
    with pytest.raises(ValueError, match="one text column"):
        loss(features * 2, torch.tensor(LABELS))


@pytest.mark.parametrize("strategy", list(st_losses.LOSSES))
def test_a_real_trainer_step(strategy, tiny_st_model, tmp_path):
    """Each module drives SentenceTransformerTrainer with GROUP_BY_LABEL and moves the weights."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    model = tiny_st_model
    dataset = Dataset.from_dict({"sentence": SENTENCES * 2, "label": LABELS * 2})
    loss = st_losses.make_loss(strategy, model, margin=0.5)
    before = [p.detach().clone() for p in model.parameters()]
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, learning_rate=1e-2,
        batch_sampler=BatchSamplers.GROUP_BY_LABEL, report_to="none", save_strategy="no", logging_steps=1,
        use_cpu=True, seed=0,
    )
    SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss).train()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert loss.last_stats is not None and loss.last_stats["valid_triplets"] > 0
