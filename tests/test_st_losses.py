"""tutorial_lib.st_losses: drop-in modules for SentenceTransformerTrainer, equal to sentence-transformers' own."""

from __future__ import annotations

import pytest
import torch

from tutorial_lib import losses, st_losses
from tutorial_lib.reference import value_and_grad

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
    with pytest.raises(ValueError, match="strategy must be one of"):
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


# ------------------------------------------------------------------------------------------------------------------
# Label shapes and dtypes, as sentence-transformers' own loss tests check them
# ------------------------------------------------------------------------------------------------------------------

LABELS_8 = [0, 0, 1, 1, 2, 2, 3, 3]


def _trainer_losses():
    """Every trainer-facing module, on the identity 'model' (compute_loss_from_embeddings needs none)."""
    from torch import nn

    from tutorial_lib.scaling import CachedBatchTripletLoss

    modules = {f"st_losses.{s}": st_losses.make_loss(s, nn.Identity(), margin=0.5) for s in st_losses.LOSSES}
    for s in st_losses.LOSSES:
        modules[f"cached.{s}"] = CachedBatchTripletLoss(nn.Identity(), s, margin=0.5)
    return modules


def _value(module, embeddings, labels):
    if hasattr(module, "calculate_loss"):  # the gradient-cached loss: its whole-batch loss, as the mixin calls it
        return module.calculate_loss([[embeddings]], labels)
    return module.compute_loss_from_embeddings([embeddings], labels)


@pytest.mark.parametrize("name", list(_trainer_losses()))
def test_labels_of_shape_n_by_1_give_the_same_loss_and_gradients(name):
    """A label column of one-element lists is collated to (B, 1): accepted and flattened, as sentence-transformers
    does, with the (B,) result exactly."""
    module = _trainer_losses()[name]
    e = torch.randn(8, 4, generator=torch.Generator().manual_seed(5))
    flat, column = torch.tensor(LABELS_8), torch.tensor(LABELS_8).unsqueeze(1)
    v1, g1 = value_and_grad(lambda x: _value(module, x, flat), e)
    v2, g2 = value_and_grad(lambda x: _value(module, x, column), e)
    assert v1 > 0 and torch.equal(v1, v2) and torch.equal(g1, g2)


@pytest.mark.parametrize("strategy", list(st_losses.LOSSES))
def test_n_by_1_labels_match_sentence_transformers(strategy):
    from torch import nn

    e = torch.randn(8, 4, generator=torch.Generator().manual_seed(6))
    column = torch.tensor(LABELS_8).unsqueeze(1)
    ours = st_losses.make_loss(strategy, nn.Identity(), margin=0.5).compute_loss_from_embeddings([e], column)
    theirs = st_losses.sentence_transformers_loss(strategy, nn.Identity(), margin=0.5).compute_loss_from_embeddings(
        [e], column)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(_trainer_losses()))
@pytest.mark.parametrize("labels", [torch.tensor([[0, 0]] * 8), torch.tensor(LABELS_8[:7]), torch.tensor(LABELS_8 * 2)],
                         ids=["two_per_row", "one_too_few", "twice_as_many"])
def test_a_wrong_label_count_raises_a_clear_error(name, labels):
    module = _trainer_losses()[name]
    with pytest.raises(ValueError, match=r"expects 8 labels \(one per example\), but got"):
        _value(module, torch.randn(8, 4), labels)


@pytest.mark.parametrize("strategy", list(st_losses.LOSSES))
def test_sentence_transformers_rejects_the_same_counts(strategy):
    """The error cases above are sentence-transformers' own (so accepting them would not be drop-in either)."""
    from torch import nn

    module = st_losses.sentence_transformers_loss(strategy, nn.Identity(), margin=0.5)
    with pytest.raises(ValueError, match="labels"):
        module.compute_loss_from_embeddings([torch.randn(8, 4)], torch.tensor(LABELS_8[:7]))


LARGE_ROWS = [[200.0, 200.0], [201.0, 200.0], [200.0, 202.0], [201.0, 202.0],
              [-200.0, 200.0], [-201.0, 200.0], [-200.0, 202.0], [-201.0, 202.0]]


@pytest.mark.parametrize("strategy", list(st_losses.LOSSES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("autocast", [False, True], ids=["plain", "cpu_autocast"])
def test_large_norms_in_half_precision_give_the_float64_loss(strategy, dtype, autocast):
    """Squared norms of ~80,000 overflow float16 (max 65,504): distances are computed in float32, so the loss and
    its gradient are finite and equal those of a float64 computation on the same (rounded) inputs."""
    from torch import nn

    module = st_losses.make_loss(strategy, nn.Identity(), margin=0.5)
    e = torch.tensor(LARGE_ROWS).to(dtype)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]).unsqueeze(1)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
    with context:
        value, grad = value_and_grad(lambda x: module.compute_loss_from_embeddings([x], y), e)
    v64, g64 = value_and_grad(
        lambda x: losses.loss_function(strategy)(x, y.view(-1), 0.5), e.double())
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert value.dtype == torch.float32 and grad.dtype == dtype
    assert torch.allclose(value.double(), v64, rtol=1e-5, atol=1e-5), (value.item(), v64.item())
    assert torch.allclose(grad.double(), g64, rtol=1e-2, atol=1e-3)
