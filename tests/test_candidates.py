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
