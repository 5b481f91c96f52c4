import json

import pytest

from avatar.candidates import score_candidates
from avatar.cost import parameter_count
from avatar.settings import DistillConfig
from avatar.executor import LocalExecutor
from avatar.labels import label, load_soft_labels
from avatar.student import StudentConfig
from avatar.tasks import get_task
from avatar.teacher import data_fingerprints

CONFIGS = [
    {"tokenizer": "WordLevel", "vocab_size": 300, "num_hidden_layers": 1, "hidden_size": 16, "hidden_act": "gelu",
     "hidden_dropout_prob": 0.1, "intermediate_size": 32, "num_attention_heads": 1, "attention_probs_dropout_prob": 0.1,
     "max_sequence_length": 32, "position_embedding_type": "absolute", "learning_rate": 1e-3, "batch_size": 16},
    {"tokenizer": "BPE", "vocab_size": 400, "num_hidden_layers": 2, "hidden_size": 32, "hidden_act": "relu",
     "hidden_dropout_prob": 0.2, "intermediate_size": 64, "num_attention_heads": 2, "attention_probs_dropout_prob": 0.2,
     "max_sequence_length": 64, "position_embedding_type": "relative_key", "learning_rate": 1e-3, "batch_size": 16},
]


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_two_real_candidates_are_distilled_scored_and_resumed(tmp_path, defect_classifier, defect_data, backend, request):
    task = get_task("defect")
    data = task.load(defect_data)
    label(defect_classifier, task, data.unlabelled, tmp_path / "soft.json")
    soft = load_soft_labels(tmp_path / "soft.json")
    budget = DistillConfig(epochs=1, limit=30, eval_limit=20, patience=None)
    executor = request.getfixturevalue("ray_executor") if backend == "ray" else LocalExecutor(2)
    args = (task.name, str(defect_data), 42, tmp_path / "soft.json", soft.key, data_fingerprints(data), budget, tmp_path / "candidates")
    results = score_candidates(CONFIGS, *args, executor)
    assert [r["parameters"] for r in results] == [parameter_count(StudentConfig(**c), task.num_inputs) for c in CONFIGS]  # in order
    assert all(0 <= r["valid"]["accuracy"] <= 1 and 0 <= r["valid"]["roc_auc"] <= 1 for r in results)
    files = sorted((tmp_path / "candidates").glob("*.json"))
    assert len(files) == 2 and {json.loads(f.read_text())["job"]["config"]["tokenizer"] for f in files} == {"WordLevel", "BPE"}

    class Refuses:
        def run(self, fn, jobs):
            assert not jobs, "a finished candidate was sent to the executor again"
            return iter(())

    assert score_candidates(CONFIGS, *args, Refuses()) == results


def test_successive_halving_promotes_the_best_and_resumes_after_a_kill():
    import math

    from avatar.candidates import successive_halving

    quality = [0.3, 0.9, 0.5, 0.7, 0.1, 0.8, 0.6, 0.2, 0.4]  # the true ranking of nine samples
    store, calls = {}, []

    def run_rung(rung, chosen, die_at=None):
        out = []
        for i in chosen:
            if (i, rung) not in store:  # what run_jobs does: a finished candidate is read back
                if die_at is not None and len(calls) == die_at:
                    raise KeyboardInterrupt
                calls.append((i, rung))
                store[(i, rung)] = {"valid": {"roc_auc": quality[i] - 0.05 / (rung + 1)}}  # noisier at a small budget
            out.append(store[(i, rung)])
        return out

    score = lambda r: r["valid"]["roc_auc"]  # noqa: E731
    try:
        successive_halving(9, 3, 3, lambda rung, chosen: run_rung(rung, chosen, die_at=10), score)
    except KeyboardInterrupt:
        pass
    assert len(calls) == 10  # all nine at rung 0 and one at rung 1 were finished before the kill
    reached = successive_halving(9, 3, 3, run_rung, score)
    assert len(calls) == 9 + 3 + 1  # the rerun redid nothing
    by_rung = {r: sorted(i for i, (k, _) in reached.items() if k == r) for r in range(3)}
    assert by_rung[2] == [1] and by_rung[1] == [3, 5] and len(by_rung[0]) == 6  # top 3 of 9, then top 1 of 3
    assert sorted(i for i, rung in calls if rung == 1) == [1, 3, 5] and math.ceil(9 / 3) == 3


def test_samples_get_equal_step_budgets_growing_by_eta_per_rung():
    from avatar.settings import DistillConfig, SearchSettings

    s = SearchSettings(sample_steps=20, eta=3, sample_limit=500)
    full = DistillConfig(ground_truth=1.0, temperature=4.0)
    rung0, rung2 = s.short_budget(full), s.short_budget(full, rung=2)
    assert (rung0.max_steps, rung2.max_steps) == (20, 180) and rung0.limit == rung2.limit == 500
    assert rung0.ground_truth == 1.0 and rung0.temperature == 4.0 and rung0.patience is None  # the full loss, briefly
    assert SearchSettings().short_budget().max_steps is None  # by default: sample_epochs epochs
