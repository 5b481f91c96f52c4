"""GraphCodeBERT mode of the classifiers: graph inputs through a tiny random RoBERTa, trained end to end."""

from __future__ import annotations

import numpy as np
import torch

from avatar.modeling import load_pretrained
from avatar.tasks import Example, get_task
from avatar.trainer import Trainer, TrainConfig, encode, encode_graphs, predict_logits


def test_without_variables_the_graph_path_is_the_token_path(tiny_encoder):
    """No nodes, full code attention: the graph input must give exactly the plain model's logits."""
    torch.manual_seed(0)
    model, tokenizer = load_pretrained(get_task("defect"), str(tiny_encoder))
    examples = [Example("a", ("void f ( ) { }",), 0), Example("b", ("void f ( ) { return }",), 1)]
    graph = encode_graphs(tokenizer, examples, "c", 40, 8)
    assert all(len(g.node_tokens) == 0 for funcs in graph.graphs for g in funcs)
    np.testing.assert_allclose(predict_logits(model, graph), predict_logits(model, encode(tokenizer, examples, 64)), atol=1e-5)


def test_nodes_change_what_the_model_computes(tiny_encoder):
    torch.manual_seed(0)
    model, tokenizer = load_pretrained(get_task("defect"), str(tiny_encoder))
    ex = [Example("a", ("void f ( ) { v1 = v2 + v3 ; return v1 ; }",), 0)]
    with_flow, without = encode_graphs(tokenizer, ex, "c", 17, 4), encode_graphs(tokenizer, ex, "c", 17, 0)  # 17: the code's length
    assert len(with_flow.graphs[0][0].node_tokens) == 4 and len(without.graphs[0][0].node_tokens) == 0
    assert not np.allclose(predict_logits(model, with_flow), predict_logits(model, without), rtol=0, atol=1e-7)


def test_graph_mode_fine_tunes_end_to_end(tiny_encoder, defect_data, clone_data):
    for task_name, data_dir in (("defect", defect_data), ("clone", clone_data)):
        task = get_task(task_name)
        data = task.load(data_dir)
        torch.manual_seed(0)
        model, tokenizer = load_pretrained(task, str(tiny_encoder))
        train = encode_graphs(tokenizer, data.labelled[:32], "c", 24, 8)
        valid = encode_graphs(tokenizer, data.valid[:16], "c", 24, 8)
        before = [p.detach().clone() for p in model.parameters()]
        Trainer(model, task, TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3), train, valid).train()
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
        logits = predict_logits(model, valid)
        assert logits.shape == (16, 2) and np.isfinite(logits).all()
