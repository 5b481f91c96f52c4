import random

import pytest

from avatar.cost import parameter_count, size_bytes
from avatar.modeling import build_student
from avatar.student import ACTIVATIONS, POSITION_EMBEDDINGS, TOKENIZERS, StudentConfig
from avatar.tasks import get_task


def _random_config(rng: random.Random) -> StudentConfig:
    heads = rng.randint(1, 6)
    return StudentConfig(
        tokenizer=rng.choice(TOKENIZERS),
        vocab_size=rng.randint(300, 3000),
        num_hidden_layers=rng.randint(1, 3),
        hidden_size=heads * rng.randint(1, 12),
        hidden_act=rng.choice(ACTIVATIONS),
        intermediate_size=rng.randint(1, 128),
        num_attention_heads=heads,
        max_sequence_length=rng.randint(8, 600),
        position_embedding_type=rng.choice(POSITION_EMBEDDINGS),
    )


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("task_name", ["defect", "clone"])
def test_parameter_count_equals_built_model(seed, task_name):
    cfg = _random_config(random.Random(seed * 7 + len(task_name)))
    task = get_task(task_name)
    model = build_student(task, cfg)
    assert parameter_count(cfg, task.num_inputs) == sum(p.numel() for p in model.parameters())


def test_clone_head_is_wider_and_bytes_follow_params():
    cfg = StudentConfig()
    assert parameter_count(cfg, 2) - parameter_count(cfg, 1) == 2 * cfg.hidden_size**2  # the pair head reads 3H, not H
    assert size_bytes(cfg, 1) == 4 * parameter_count(cfg, 1)
    assert size_bytes(cfg, 1, bytes_per_param=1) == parameter_count(cfg, 1)
