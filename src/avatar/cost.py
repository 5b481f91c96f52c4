"""The cost model: parameters, bytes and inference FLOPs of a student configuration, computed analytically.

Parameters equal ``sum(p.numel())`` of the model ``avatar.modeling.build_student`` builds (tested). The same
formulas serve plain numbers, numpy arrays (brute-force checks) and z3 terms (the SMT stage, where every
argument but vocabulary, intermediate size and sequence length is fixed by the split, so the terms are linear).
Every other module asks here for sizes.
"""

from __future__ import annotations

from avatar.student import POSITION_OFFSET, StudentConfig

MB = 1024 * 1024  # bytes in the "MB" of budgets and reports (as the paper's 3 MB / 160x figures use)
FP32_BYTES = 4  # bytes per parameter of the weights budgets and sizes count (fp32)
INT8_BYTES = 1  # bytes per parameter after int8 quantisation (scales aside)
PAIR_HEAD = "symmetric"  # a pair model's head reads a + b, a * b and |a - b| of its functions' first-token vectors a, b
PAIR_HEAD_FEATURES = {"concat": 2, "symmetric": 3}  # vectors of width H the head's dense layer reads, by head kind


def head_width(num_inputs: int, pair_head: str = PAIR_HEAD) -> int:
    """How many H-wide vectors the head's dense layer reads: the first-token vector, or a pair head's features."""
    return 1 if num_inputs == 1 else PAIR_HEAD_FEATURES[pair_head]


def params_of(V, L, H, I, heads, S, relative, num_inputs):  # noqa: E741 (I: intermediate size, as in the paper)
    """Parameters of a RoBERTa student and its head.

    V vocab, L layers, H hidden, I intermediate, S max sequence length, ``relative`` 1 for relative position
    embeddings (either kind) else 0, ``num_inputs`` functions per example (1 defect, 2 clone).
    """
    P = S + POSITION_OFFSET  # position rows
    embeddings = V * H + P * H + H + 2 * H  # words, positions, one token type, LayerNorm
    attention = 4 * (H * H + H) + 2 * H + relative * (2 * P - 1) * (H // heads)  # q, k, v, out; LN; distances
    feed_forward = H * I + I + I * H + H + 2 * H  # up, down; LayerNorm
    head = head_width(num_inputs) * H * H + H + H * 2 + 2  # dense over the first-token vector (a pair: its features), then two logits
    return embeddings + L * (attention + feed_forward) + head


def flops_of(L, H, I, T, relative_terms, num_inputs):  # noqa: E741
    """Inference FLOPs (2 per multiply-add) of one example at T tokens per function.

    The embedding is a lookup (no arithmetic), unlike the paper's formula, which counted it as a vocab x hidden
    matrix product and so let vocabulary size dominate. ``relative_terms``: 0 absolute, 1 relative_key,
    2 relative_key_query (extra T x T x H products per layer).
    """
    per_layer = 4 * T * H * H + (2 + relative_terms) * T * T * H + 2 * T * H * I  # projections, attention, FFN
    head = head_width(num_inputs) * H * H + 2 * H
    return 2 * (num_inputs * L * per_layer + head)


RELATIVE_TERMS = {"absolute": 0, "relative_key": 1, "relative_key_query": 2}


def parameter_count(cfg: StudentConfig, num_inputs: int) -> int:
    """Parameters of the student for a task whose examples hold ``num_inputs`` functions (1 defect, 2 clone)."""
    return params_of(
        cfg.vocab_size, cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads,
        cfg.max_sequence_length, int(cfg.position_embedding_type != "absolute"), num_inputs,
    )


def size_bytes(cfg: StudentConfig, num_inputs: int, bytes_per_param: int = FP32_BYTES) -> int:
    """Weight bytes: FP32_BYTES per parameter, or INT8_BYTES after quantisation (scales aside)."""
    return parameter_count(cfg, num_inputs) * bytes_per_param


def weights_mb(parameters: int) -> float:
    """MB of fp32 weights of a model with this many parameters."""
    return FP32_BYTES * parameters / MB


def flops(cfg: StudentConfig, num_inputs: int, tokens: int | None = None) -> int:
    """Inference FLOPs of one example, at ``tokens`` per function (default: the configured maximum)."""
    T = cfg.max_sequence_length if tokens is None else tokens
    return flops_of(cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, T,
                    RELATIVE_TERMS[cfg.position_embedding_type], num_inputs)



def training_bytes_per_example(cfg: StudentConfig, num_inputs: int) -> int:
    """Rough activation memory one example holds for the backward pass (fp32), at full sequence length.

    Per layer: the attention's (heads, T, T) tensors (scores, probabilities, dropout: about 4 copies, 2 more per
    relative-position term) and about 10 hidden-sized plus 3 intermediate-sized (T, .) tensors. Only used to
    split large batches so that training fits in memory; it errs on the large side.
    """
    T, H, I = cfg.max_sequence_length, cfg.hidden_size, cfg.intermediate_size  # noqa: E741
    copies = 4 + 2 * RELATIVE_TERMS[cfg.position_embedding_type]
    per_layer = copies * cfg.num_attention_heads * T * T + T * (10 * H + 3 * I)
    return 4 * num_inputs * cfg.num_hidden_layers * per_layer
