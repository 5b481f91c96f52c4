"""GraphCodeBERT input: sequence layout, positions, and the graph-guided attention mask."""

from __future__ import annotations

import numpy as np

from avatar.dataflow import extract
from avatar.graphcodebert import attention_mask, build
from tests.conftest import make_tokenizer

CODE = "void f ( ) { v1 = v2 + v3 ; return v1 ; }"


def _layout(code_length=40, flow_length=10):
    tok = make_tokenizer()
    flow = extract(CODE, "c")
    return tok, flow, build(flow, tok, code_length, flow_length)


def test_sequence_and_positions():
    tok, flow, g = _layout()
    assert [v.name for v in flow.nodes] == ["v1", "v2", "v3", "v1"]
    code = ["void", "f", "(", ")", "{", "v1", "=", "v2", "+", "v3", ";", "return", "v1", ";", "}"]
    assert list(g.input_ids[: g.code_end]) == [tok.cls_token_id, *tok.convert_tokens_to_ids(code), tok.sep_token_id]
    assert list(g.input_ids[g.code_end : g.code_end + 4]) == [tok.unk_token_id] * 4
    assert len(g.input_ids) == 50 and set(g.input_ids[g.code_end + 4 :]) == {tok.pad_token_id}
    pad = tok.pad_token_id
    assert list(g.position_ids[: g.code_end]) == list(range(pad + 1, pad + 1 + g.code_end))
    assert list(g.position_ids[g.code_end : g.code_end + 4]) == [0] * 4 and set(g.position_ids[g.code_end + 4 :]) == {pad}
    assert g.node_tokens == ((6, 7), (8, 9), (10, 11), (13, 14))  # after <s>: the positions of v1, v2, v3, v1
    assert g.node_sources == ((1, 2), (), (), (0,))  # v1 = v2 + v3; return v1


def test_attention_mask_structure():
    tok, flow, g = _layout()
    m = attention_mask(g)
    c = g.code_end
    assert m[:c, :c].all()  # tokens see tokens
    assert m[0, : c + 4].all() and m[c - 1, : c + 4].all()  # <s> and </s> see the graph too
    first_v1 = c  # node 0
    assert m[first_v1, 6] and m[6, first_v1]  # a node and its token see each other
    assert not m[first_v1, 7] and not m[7, first_v1]  # and no other token
    assert m[first_v1, c + 1] and m[first_v1, c + 2] and not m[c + 1, first_v1]  # v1 sees v2 and v3 it comes from
    assert m[c + 3, c] and not m[c + 3, c + 1]  # the returned v1 sees the v1 it comes from only
    assert m[c : c + 4, c : c + 4].diagonal().all()  # every node sees itself: no row is all masked
    assert not m[c + 4 :].any() and not m[:, c + 4 :].any()  # padding is seen by nobody and sees nothing


def test_truncation_keeps_the_budget_and_cuts_nodes_whose_tokens_are_gone():
    tok, flow, g = _layout(code_length=8, flow_length=3)
    assert len(g.input_ids) == 11
    assert g.code_end == 11 - 3  # the code gives way to three nodes
    assert len(g.node_tokens) == 3
    assert g.node_tokens[0] == (6, 7) and g.node_tokens[1] == (0, 0)  # v2's token was cut
    m = attention_mask(g)
    assert m[g.code_end + 1].sum() == 1  # the cut node sees itself only
    unused = build(flow, tok, 30, 10)  # fewer nodes than the flow budget: the code may use the rest
    assert unused.code_end == 17 and len(unused.node_tokens) == 4


def test_a_function_without_variables():
    tok = make_tokenizer()
    g = build(extract("void f ( ) { }", "c"), tok, 16, 4)
    assert g.node_tokens == () and g.code_end == 8
    m = attention_mask(g)
    assert m[:8, :8].all() and not m[8:].any() and np.count_nonzero(m) == 64
