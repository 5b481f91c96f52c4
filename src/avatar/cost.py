"""The cost model: parameters and bytes of a student configuration, computed analytically.

It must equal ``sum(p.numel())`` of the model ``avatar.student.build_student`` builds (tested), so that
budgets are checked without building anything. Every other module asks here for sizes.
"""

from __future__ import annotations

from avatar.student import StudentConfig


def parameter_count(cfg: StudentConfig, num_inputs: int) -> int:
    """Parameters of the student for a task whose examples hold ``num_inputs`` functions (1 defect, 2 clone)."""
    H, I, P = cfg.hidden_size, cfg.intermediate_size, cfg.max_position_embeddings
    head_size = H // cfg.num_attention_heads
    embeddings = cfg.vocab_size * H + P * H + 1 * H + 2 * H  # words, positions, one token type, LayerNorm
    attention = 4 * (H * H + H) + 2 * H  # query, key, value, output projections; LayerNorm
    if cfg.position_embedding_type != "absolute":
        attention += (2 * P - 1) * head_size  # one learnt vector per relative distance, per layer
    feed_forward = H * I + I + I * H + H + 2 * H  # up, down; LayerNorm
    head = (num_inputs * H) * H + H + H * 2 + 2  # dense over the first-token vector(s), then two logits
    return embeddings + cfg.num_hidden_layers * (attention + feed_forward) + head


def size_bytes(cfg: StudentConfig, num_inputs: int, bytes_per_param: int = 4) -> int:
    """Weight bytes (fp32 by default; 1 for int8), without file headers."""
    return parameter_count(cfg, num_inputs) * bytes_per_param
