"""GraphCodeBERT mode of the classifiers: graph inputs through a tiny random RoBERTa, trained end to end."""

from __future__ import annotations

import numpy as np
import torch

from avatar.modeling import load_pretrained
from avatar.tasks import Example, get_task
from avatar.settings import TrainConfig
from avatar.trainer import Trainer, encode, encode_graphs, predict_logits


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


def test_graphcodebert_teacher_fine_tunes_and_labels_through_the_cli(tmp_path, tiny_encoder, defect_data):
    import json

    from typer.testing import CliRunner

    from avatar.cli import app

    runner = CliRunner()
    out = tmp_path / "teacher"
    r = runner.invoke(app, ["finetune", "--model", str(tiny_encoder), "--data", str(defect_data), "--out", str(out),
                            "--model-type", "graphcodebert", "--max-length", "32", "--flow-length", "8", "--epochs", "1",
                            "--limit", "40", "--eval-limit", "20"])
    assert r.exit_code == 0, r.output
    config = json.loads((out / "config.json").read_text())
    assert config["avatar_model_type"] == "graphcodebert" and config["avatar_flow_length"] == 8 and config["avatar_max_length"] == 32
    r = runner.invoke(app, ["label", "--teacher", str(out), "--data", str(defect_data), "--out", str(tmp_path / "soft.json")])
    assert r.exit_code == 0, r.output
    labels = json.loads((tmp_path / "soft.json").read_text())["labels"]
    assert len(labels) == 60 and all(np.isfinite(x["logits"]).all() for x in labels)
    # the labeller read graphs: its logits are the graph model's, not the token-only ones
    from avatar.modeling import load_classifier
    from avatar.trainer import encode

    task = get_task("defect")
    data = task.load(defect_data)
    model, tokenizer = load_classifier(out, task)
    by_id = {x["id"]: x["logits"] for x in labels}
    graph_logits = predict_logits(model, encode_graphs(tokenizer, data.unlabelled, "c", 32, 8))
    np.testing.assert_allclose([by_id[ex.id] for ex in data.unlabelled], graph_logits, rtol=0, atol=2e-6)
    token_logits = predict_logits(model, encode(tokenizer, data.unlabelled, 32))
    assert np.abs(graph_logits - token_logits).max() > 1e-5  # far above the 6-decimal rounding of the label file
    # the runtime reads tokens only: exporting the graph model would silently drop its data flow, so it is refused
    r = runner.invoke(app, ["export", "--model", str(out), "--out", str(tmp_path / "onnx"), "--data", str(defect_data)])
    assert r.exit_code != 0 and "GraphCodeBERT model cannot be exported" in str(r.exception)
    assert not (tmp_path / "onnx").exists()


def test_graphs_are_extracted_once_per_data_set(tiny_encoder, monkeypatch):
    import avatar.dataflow as dataflow

    calls = []
    real = dataflow.extract
    monkeypatch.setattr(dataflow, "extract", lambda code, language: calls.append(code) or real(code, language))
    _, tokenizer = load_pretrained(get_task("defect"), str(tiny_encoder))
    examples = [Example(str(i), (f"void f ( ) {{ v{i} = v{i + 1} ; }}",), 0) for i in range(5)]
    first = encode_graphs(tokenizer, examples, "c", 24, 8)
    again = encode_graphs(tokenizer, examples, "c", 24, 8)
    assert len(calls) == 5 and first.graphs == again.graphs  # the second read came from the cache


def test_graphcodebert_mode_needs_a_roberta_model(tmp_path, defect_data):
    from typer.testing import CliRunner

    from avatar.cli import app
    from avatar.errors import AvatarError

    r = CliRunner().invoke(app, ["finetune", "--model", "minilm", "--data", str(defect_data), "--out", str(tmp_path / "t"),
                                 "--model-type", "graphcodebert", "--epochs", "1", "--limit", "8", "--max-length", "32"])
    assert isinstance(r.exception, AvatarError) and "needs a RoBERTa encoder" in str(r.exception)
    assert not (tmp_path / "t").exists()
