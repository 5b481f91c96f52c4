import json

import numpy as np
import pytest
import torch

from avatar.distill import DistillationTrainer, distill, teacher_view
from avatar.errors import AvatarError
from avatar.labels import SoftLabels, label, load_soft_labels
from avatar.modeling import load_classifier
from avatar.modeling import build_student
from avatar.student import StudentConfig
from avatar.tasks import get_task
from avatar.settings import DistillConfig, FinetuneConfig, TrainConfig
from avatar.teacher import finetune
from avatar.trainer import encode

from conftest import write_defect_data

TINY = StudentConfig(tokenizer="WordLevel", vocab_size=300, num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                     intermediate_size=48, max_sequence_length=48, learning_rate=3e-3, batch_size=16)


@pytest.fixture(scope="module")
def taught(tmp_path_factory, tiny_encoder):
    """A tiny teacher fine-tuned on the easy synthetic defect task, and its soft labels."""
    root = tmp_path_factory.mktemp("taught")
    task = get_task("defect")
    data = task.load(write_defect_data(root / "data", sizes=(400, 60, 60)))
    cfg = FinetuneConfig(model=str(tiny_encoder), max_length=48, epochs=6, learning_rate=3e-3, warmup_ratio=0.0, seed=0)
    metrics = finetune(task, data, root / "teacher", cfg)
    label(root / "teacher", task, data.unlabelled, root / "soft.json")
    return task, data, load_soft_labels(root / "soft.json"), metrics


def test_student_reaches_most_of_the_teacher_score(tmp_path, taught):
    task, data, soft, teacher_metrics = taught
    assert teacher_metrics["test"]["accuracy"] >= 0.85
    metrics = distill(task, data, soft, TINY, tmp_path / "student", DistillConfig(epochs=8, patience=None, seed=0))
    assert metrics["test"]["accuracy"] >= 0.9 * teacher_metrics["test"]["accuracy"], metrics["history"]
    assert metrics["agreement_with_teacher"] >= 0.9
    saved = json.loads((tmp_path / "student" / "metrics.json").read_text())
    assert saved["test"] == metrics["test"]
    assert StudentConfig.load(tmp_path / "student" / "student_config.json") == TINY
    model, _ = load_classifier(tmp_path / "student", task)
    assert model.config.avatar_max_length == TINY.max_sequence_length


def test_same_seed_same_metrics(tmp_path, taught):
    task, data, soft, _ = taught
    settings = DistillConfig(epochs=2, limit=80, eval_limit=30, seed=3)
    a = distill(task, data, soft, TINY, tmp_path / "a", settings)
    b = distill(task, data, soft, TINY, tmp_path / "b", settings)
    assert a["history"] == b["history"] and a["test"] == b["test"]
    assert a["examples"] == {"train": 80, "labelled": 80, "valid": 30, "test": 30}  # the short-budget mode, ground truth by default


def test_student_never_sees_ground_truth(taught):
    task, data, soft, _ = taught
    flipped = {k: [v[1], v[0]] for k, v in soft.logits.items()}  # a teacher that is always wrong
    view, logits = teacher_view(data.unlabelled, SoftLabels(soft.data, flipped))
    assert np.allclose(logits, [flipped[ex.id] for ex in data.unlabelled])
    assert all(ex.label == int(np.argmax(flipped[ex.id])) for ex in view)
    assert all(ex.label != truth.label for ex, truth in zip(view, data.unlabelled))


def test_missing_soft_labels_is_a_clear_error(tmp_path, taught):
    task, data, soft, _ = taught
    partial = SoftLabels(soft.data, dict(list(soft.logits.items())[:-1]))
    with pytest.raises(AvatarError, match="soft labels lack 1 unlabelled example"):
        distill(task, data, partial, TINY, tmp_path / "s")
    other_data = SoftLabels("0" * 64, soft.logits)  # e.g. labels of another data folder with the same ids
    with pytest.raises(AvatarError, match="made for other data"):
        distill(task, data, other_data, TINY, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_refuses_to_overwrite_a_folder_it_did_not_write(tmp_path, taught):
    task, data, soft, _ = taught
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(AvatarError, match="not empty and was not written by Avatar"):
        distill(task, data, soft, TINY, tmp_path / "mine", DistillConfig(epochs=1, limit=20))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_kl_loss_is_zero_when_student_matches_teacher_and_trains_biases_and_layernorm(taught):
    task, data, soft, _ = taught
    view, logits = teacher_view(data.unlabelled, soft)
    from avatar.vocab import distinct_texts, train_tokenizer

    tok = train_tokenizer(TINY.tokenizer, TINY.vocab_size, distinct_texts(view))
    train, valid = encode(tok, view, 48), encode(tok, data.valid, 48)
    torch.manual_seed(0)
    model = build_student(task, TINY)
    trainer = DistillationTrainer(model, task, TrainConfig(epochs=1, learning_rate=3e-3, seed=0), train, valid,
                                  teacher_logits=logits, temperature=2.0, alpha=0.0)
    rows = [0, 1, 2, 3]
    assert trainer.loss(torch.as_tensor(logits[rows]), rows).item() == pytest.approx(0.0, abs=1e-6)
    assert trainer.loss(torch.zeros(4, 2), rows).item() > 0
    with_ce = DistillationTrainer(model, task, TrainConfig(), train, valid, teacher_logits=logits, temperature=2.0, alpha=0.5)
    assert with_ce.loss(torch.as_tensor(logits[rows]), rows).item() > 0  # the CE term is never zero
    watched = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n}
    trainer.train()
    changed = [n for n, p in model.named_parameters() if n in watched and not torch.equal(p, watched[n])]
    assert any("LayerNorm.weight" in n for n in changed) and any(n.endswith("bias") for n in changed)


def test_a_batch_too_large_for_the_memory_cap_is_split(tmp_path, taught):
    from avatar.cost import MB, training_bytes_per_example

    task, data, soft, _ = taught
    per_example = training_bytes_per_example(TINY, task.num_inputs)
    settings = DistillConfig(epochs=1, limit=40, eval_limit=20, memory_mb=1, seed=0)
    metrics = distill(task, data, soft, TINY, tmp_path / "s", settings)
    assert metrics["micro_batch_size"] == MB // per_example < TINY.batch_size
    roomy = distill(task, data, soft, TINY, tmp_path / "r", DistillConfig(epochs=1, limit=40, eval_limit=20, seed=0))
    assert roomy["micro_batch_size"] is None


def test_ground_truth_on_the_labelled_half_is_learned_beside_the_teacher(tmp_path, taught):
    task, data, soft, _ = taught
    useless = SoftLabels(soft.data, {ex.id: [2.0, -2.0] for ex in data.unlabelled})  # a teacher that always says 0
    runs = {}
    for weight in (0.0, 3.0):
        cfg = DistillConfig(epochs=8, patience=None, seed=0, ground_truth=weight)
        runs[weight] = distill(task, data, useless, TINY, tmp_path / f"w{weight}", cfg)
    assert runs[0.0]["examples"]["labelled"] == 0 and runs[3.0]["examples"]["labelled"] == len(data.labelled)
    assert "plus 3 x cross-entropy on the true labels" in runs[3.0]["loss"]
    assert runs[0.0]["test"]["accuracy"] <= 0.6 < 0.8 <= runs[3.0]["test"]["accuracy"], (runs[0.0]["test"], runs[3.0]["test"])
    assert runs[3.0]["agreement_with_teacher"] < 0.7  # measured on the teacher's rows only: it learned the truth instead


def test_a_mixed_batch_weighs_each_part_by_its_share():
    model = torch.nn.Identity()
    from avatar.trainer import Encoded

    train = Encoded(ids=list("abcd"), tokens=[[[0]]] * 4, labels=np.array([1, 0, 1, 1]), pad_id=0)
    teacher = np.array([[0.0, 3.0], [3.0, 0.0]], dtype=np.float32)  # rows 0-1 are the teacher's, 2-3 true labels
    t = DistillationTrainer(model, get_task("defect"), TrainConfig(), train, train, teacher_logits=teacher, temperature=1.0,
                            alpha=0.0, teacher_rows=2, ground_truth=2.0)
    logits = torch.tensor([[0.5, 0.1], [0.2, 0.3], [1.0, -1.0], [0.0, 0.4]])
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits[:2], -1), torch.log_softmax(torch.as_tensor(teacher), -1),
                                    log_target=True, reduction="batchmean")
    ce = torch.nn.functional.cross_entropy(logits[2:], torch.tensor([1, 1]))
    assert t.loss(logits, [0, 1, 2, 3]).item() == pytest.approx((kl * 0.5 + 2.0 * ce * 0.5).item(), rel=1e-6)
