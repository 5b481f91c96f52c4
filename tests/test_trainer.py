from dataclasses import replace

import pytest
import torch

from avatar.modeling import load_pretrained
from avatar.tasks import get_task
from avatar.settings import TrainConfig
from avatar.trainer import Trainer, batch_rows, collate, encode, param_groups, predict_logits, score

from conftest import write_clone_data, write_defect_data

FAST = TrainConfig(epochs=6, learning_rate=3e-3, batch_size=16, warmup_ratio=0.0, evals_per_epoch=1, seed=0)


def _setup(name, tmp_path, encoder, seed=0):
    task = get_task(name)
    writer = write_defect_data if name == "defect" else write_clone_data
    data = task.load(writer(tmp_path / name, sizes=(320, 60, 60)))
    torch.manual_seed(seed)
    model, tokenizer = load_pretrained(task, str(encoder))
    enc = {s: encode(tokenizer, data.split(s), 64) for s in ("labelled", "valid", "test")}
    return task, model, enc


@pytest.mark.parametrize("name,epochs", [("defect", 6), ("clone", 20)])  # comparing two functions takes longer
def test_tiny_teacher_learns_easy_task_well_above_chance(tmp_path, tiny_encoder, name, epochs):
    task, model, enc = _setup(name, tmp_path, tiny_encoder)
    before = score(task, model, enc["test"])["accuracy"]
    result = Trainer(model, task, replace(FAST, epochs=epochs), enc["labelled"], enc["valid"]).train()
    after = score(task, model, enc["test"])["accuracy"]
    assert after >= 0.85, (before, after, result.history)
    assert result.best_score == max(h[task.main_metric] for h in result.history)


def test_same_seed_same_result_and_kept_weights_are_the_best(tmp_path, tiny_encoder):
    runs = []
    for _ in range(2):
        task, model, enc = _setup("defect", tmp_path, tiny_encoder)
        cfg = TrainConfig(epochs=2, learning_rate=1e-3, batch_size=16, evals_per_epoch=2, seed=5)
        result = Trainer(model, task, cfg, enc["labelled"], enc["valid"]).train()
        runs.append((result.history, predict_logits(model, enc["valid"])))
        assert score(task, model, enc["valid"])[task.main_metric] == result.best_score
    assert runs[0][0] == runs[1][0]
    assert (runs[0][1] == runs[1][1]).all()


def test_biases_and_layernorm_are_trained_without_decay(tmp_path, tiny_encoder):
    task, model, enc = _setup("defect", tmp_path, tiny_encoder)
    groups = param_groups(model, 0.01)
    no_decay = {id(p) for p in groups[1]["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in no_decay}
    assert names and all(n.endswith("bias") or "LayerNorm" in n for n in names)
    assert any("LayerNorm.weight" in n for n in names)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n in names}
    Trainer(model, task, TrainConfig(epochs=1, learning_rate=1e-3, seed=0), enc["labelled"], enc["valid"]).train()
    changed = {n for n, p in model.named_parameters() if n in names and not torch.equal(p, before[n])}
    assert any("LayerNorm.weight" in n for n in changed) and any(n.endswith("bias") for n in changed)
    # only parameters with no gradient path (e.g. the unused pooler) may stay as they were
    assert all("pooler" in n for n in names - changed), names - changed


def test_early_stopping_stops(tmp_path, tiny_encoder):
    task, model, enc = _setup("defect", tmp_path, tiny_encoder)
    cfg = TrainConfig(epochs=20, learning_rate=0.0 + 1e-12, evals_per_epoch=1, patience=2, seed=0)
    result = Trainer(model, task, cfg, enc["labelled"], enc["valid"]).train()
    assert len(result.history) == 3  # a first score, then two without improvement
    assert result.steps == 3 * 10


def test_collate_pads_to_longest_and_masks(tmp_path, tiny_encoder):
    task, model, enc = _setup("clone", tmp_path, tiny_encoder)
    ids, mask = collate(enc["test"], [0, 1, 2])
    lengths = [len(t) for r in (0, 1, 2) for t in enc["test"].tokens[r]]
    assert ids.shape == (3, 2, max(lengths))
    assert mask.sum().item() == sum(lengths)
    assert (ids[mask == 0] == enc["test"].pad_id).all()


def test_micro_batches_give_the_same_gradient_as_whole_batches(tmp_path, tiny_encoder):
    grads, losses = [], []
    rows = list(range(16))
    for micro in (None, 3):  # 16 = 3 + 3 + 3 + 3 + 3 + 1: unequal pieces must still weigh as one batch mean
        task, model, enc = _setup("defect", tmp_path, tiny_encoder)
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0  # the pieces would draw other dropout masks
        cfg = TrainConfig(batch_size=16, micro_batch_size=micro, seed=0)
        losses.append(Trainer(model, task, cfg, enc["labelled"], enc["valid"])._step_loss(rows))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-4) for n in grads[0])
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


class _Killed(Exception):
    pass


def test_a_run_killed_mid_epoch_resumes_from_its_checkpoint_to_the_uninterrupted_result(tmp_path, tiny_encoder):
    from avatar.trainer import TRAINER_STATE, Checkpoint

    cfg = TrainConfig(epochs=3, learning_rate=1e-3, batch_size=16, evals_per_epoch=2, seed=3)
    task, model, enc = _setup("defect", tmp_path, tiny_encoder)
    whole = Trainer(model, task, cfg, enc["labelled"], enc["valid"]).train()
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    assert whole.steps // cfg.epochs < 15 < 2 * whole.steps // cfg.epochs  # the kill below falls in epoch 2

    class Dies(Trainer):  # killed in the middle of the second epoch
        def _step_loss(self, rows, *args):
            if self.steps_done == 15:
                raise _Killed
            self.steps_done += 1
            return super()._step_loss(rows, *args)

    checkpoint = Checkpoint(tmp_path / "ckpt", key="run-a")
    task, model, enc = _setup("defect", tmp_path, tiny_encoder)
    dying = Dies(model, task, cfg, enc["labelled"], enc["valid"], checkpoint=checkpoint)
    dying.steps_done = 0
    with pytest.raises(_Killed):
        dying.train()
    assert (tmp_path / "ckpt" / TRAINER_STATE).is_file()

    task, model, enc = _setup("defect", tmp_path, tiny_encoder)  # a fresh process: new model, same settings
    resumed = Trainer(model, task, cfg, enc["labelled"], enc["valid"], checkpoint=checkpoint).train()
    assert resumed.history == whole.history and resumed.steps == whole.steps and resumed.best_step == whole.best_step
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())

    # a checkpoint of other settings is not resumed
    task, model, enc = _setup("defect", tmp_path, tiny_encoder)
    other = Trainer(model, task, cfg, enc["labelled"], enc["valid"], checkpoint=Checkpoint(tmp_path / "ckpt", key="run-b")).train()
    assert other.history == whole.history


def test_length_buckets_cut_padding_and_still_see_every_example_once(tmp_path, tiny_encoder):
    task, model, enc = _setup("defect", tmp_path, tiny_encoder)
    data = enc["labelled"]
    rng = __import__("random").Random(0)
    data.tokens = [[[0] + [5] * rng.randint(1, 60) + [2]] for _ in data.tokens]  # lengths 3..62
    cfg = TrainConfig(batch_size=8, seed=1)

    def padded(buckets):
        batches = list(batch_rows(data, cfg.batch_size, torch.Generator().manual_seed(1), buckets))
        assert sorted(r for b in batches for r in b) == list(range(len(data)))  # each example once
        assert len(batches) == -(-len(data) // 8)
        return sum(len(b) * max(len(data.tokens[r][0]) for r in b) for b in batches), batches

    plain, _ = padded(1)
    bucketed, batches = padded(10)
    real = sum(len(t[0]) for t in data.tokens)
    assert bucketed - real < (plain - real) / 3  # most of the padding is gone
    assert list(batch_rows(data, 8, torch.Generator().manual_seed(1), 10)) == batches  # seeded


def test_a_step_budget_is_the_same_whatever_the_batch_size(tmp_path, tiny_encoder):
    task, model, enc = _setup("defect", tmp_path, tiny_encoder)
    n = len(enc["labelled"])
    for batch in (8, 32):
        task, model, enc = _setup("defect", tmp_path, tiny_encoder)
        cfg = TrainConfig(epochs=1, max_steps=13, batch_size=batch, learning_rate=1e-3, seed=0)
        result = Trainer(model, task, cfg, enc["labelled"], enc["valid"]).train()
        assert result.steps == 13 and result.history[-1]["step"] == 13  # it ends with a validation
        assert len(result.history) == (13 * batch) // n + 1  # one per finished epoch, and the last step's
