"""GraphCodeBERT's input: a function's subword tokens, then its data-flow nodes, with graph-guided attention.

As in Guo et al. (ICLR 2021) and their fine-tuning code's layout:

- sequence: ``<s>`` code subwords ``</s>`` then one ``<unk>`` per data-flow node, padded to
  ``code_length + flow_length``; code that leaves part of the flow budget unused may take it;
- positions: code tokens count from ``pad_id + 1`` as RoBERTa's do; nodes have position 0 and padding
  ``pad_id``, so the model tells them apart (its embedding of a node is the mean of its tokens' embeddings);
- attention (L x L): code tokens see code tokens; ``<s>`` and ``</s>`` see everything; a node and the subword
  tokens of its variable see each other; a node sees the nodes its value comes from.

Only the teacher reads graphs; students stay token-only, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar.dataflow import DataFlow

MODEL_TYPE_KEY = "avatar_model_type"  # entry in a model folder's config.json: "graphcodebert" for graph teachers
FLOW_LENGTH_KEY = "avatar_flow_length"  # entry in config.json: data-flow nodes per function
CACHE_FORMAT = 1  # bump when extraction changes, so cached graphs are not reused


@dataclass(frozen=True)
class GraphInput:
    input_ids: tuple[int, ...]  # (L,) code subwords with <s>/</s>, one <unk> per node, padding
    position_ids: tuple[int, ...]  # (L,) pad_id+1.. for code, 0 for nodes, pad_id for padding
    node_tokens: tuple[tuple[int, int], ...]  # per kept node: [start, end) of its variable's subwords in the sequence
    node_sources: tuple[tuple[int, ...], ...]  # per kept node: the kept nodes its value comes from
    code_end: int  # index of the first node (= number of code positions incl. <s> and </s>)


def flows(texts: list[str], language: str) -> list[DataFlow]:
    """The data flow of each text, from the cache when this exact list was extracted before (labelling reads the
    same split as fine-tuning did, and every rerun reads it again)."""
    import json

    from avatar._io import cache_dir, sha256_json, write_text_atomic
    from avatar.dataflow import extract

    path = cache_dir() / "dataflow" / f"{sha256_json({'format': CACHE_FORMAT, 'language': language, 'texts': texts})}.json"
    cached = _read_flows(path)
    if cached is not None:
        return cached
    out = [extract(text, language) for text in texts]
    write_text_atomic(path, json.dumps([{"tokens": f.tokens, "nodes": [[v.name, v.token] for v in f.nodes],
                                         "edges": f.edges, "parsed": f.parsed} for f in out]))
    return out


def _read_flows(path) -> list[DataFlow] | None:
    """Cached graphs, or None when there are none (or the file is damaged: they are extracted again)."""
    import json

    from avatar.dataflow import Variable

    try:
        raw = json.loads(path.read_text())
        return [DataFlow(tuple(f["tokens"]), tuple(Variable(n, t) for n, t in f["nodes"]),
                         tuple((n, r, tuple(s)) for n, r, s in f["edges"]), f["parsed"]) for f in raw]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _subwords(tokenizer, tokens: tuple[str, ...]) -> list[list[str]]:
    """Each code token's subwords, the way RoBERTa-style tokenizers see a token after a space (as GraphCodeBERT does)."""
    out = []
    for i, tok in enumerate(tokens):
        out.append(tokenizer.tokenize(tok) if i == 0 else tokenizer.tokenize("@ " + tok)[1:])
    return out


def build(flow: DataFlow, tokenizer, code_length: int, flow_length: int) -> GraphInput:
    """The model input of one function from its data flow (``avatar.dataflow.extract``)."""
    pieces = _subwords(tokenizer, flow.tokens)
    spans, subwords = [], []
    for p in pieces:
        spans.append((len(subwords), len(subwords) + len(p)))
        subwords += p
    total = code_length + flow_length
    subwords = subwords[: total - 2 - min(len(flow.nodes), flow_length)]
    ids = [tokenizer.cls_token_id, *tokenizer.convert_tokens_to_ids(subwords), tokenizer.sep_token_id]
    pad = tokenizer.pad_token_id
    positions = [pad + 1 + i for i in range(len(ids))]
    code_end = len(ids)
    kept = list(range(min(len(flow.nodes), total - code_end)))
    kept_set = set(kept)
    node_tokens = []
    for n in kept:
        start, end = spans[flow.nodes[n].token]
        start, end = start + 1, end + 1  # after <s>
        node_tokens.append((start, end) if end <= code_end - 1 else (0, 0))  # its token was cut: no token to see
    sources = {n: srcs for n, _, srcs in flow.edges}
    node_sources = tuple(tuple(s for s in sources.get(n, ()) if s in kept_set) for n in kept)
    ids += [tokenizer.unk_token_id] * len(kept)
    positions += [0] * len(kept)
    ids += [pad] * (total - len(ids))
    positions += [pad] * (total - len(positions))
    return GraphInput(tuple(ids), tuple(positions), tuple(node_tokens), node_sources, code_end)


def attention_mask(g: GraphInput) -> np.ndarray:
    """Who may attend to whom (L, L), True where allowed. Every node sees itself, so no row is all masked."""
    L = len(g.input_ids)
    mask = np.zeros((L, L), dtype=bool)
    mask[: g.code_end, : g.code_end] = True  # code sees code
    used = g.code_end + len(g.node_tokens)
    mask[[0, g.code_end - 1], :used] = True  # <s> and </s> see the whole graph
    for k, (start, end) in enumerate(g.node_tokens):
        node = g.code_end + k
        mask[node, node] = True
        if end > start:
            mask[node, start:end] = True
            mask[start:end, node] = True
        for s in g.node_sources[k]:
            mask[node, g.code_end + s] = True
    return mask


def graph_encode(encoder, input_ids, attention_mask, position_ids, pad_id: int):
    """Run a RoBERTa encoder on graph inputs: ids and positions (N, L), attention (N, L, L); hidden states (N, L, H).
    A node's input embedding is the mean of the embeddings of the code tokens it may attend to (its variable's)."""
    import torch

    nodes = position_ids.eq(0)  # (N, L)
    tokens = position_ids.gt(pad_id)  # (N, L): code positions count from pad_id + 1
    embeddings = encoder.embeddings.word_embeddings(input_ids)  # (N, L, H)
    node_to_token = nodes[:, :, None] & tokens[:, None, :] & attention_mask.bool()  # (N, L, L)
    weights = node_to_token.float() / node_to_token.sum(-1, keepdim=True).clamp(min=1)
    averaged = torch.einsum("nij,njh->nih", weights, embeddings)  # (N, L, H)
    embeddings = torch.where(nodes[:, :, None], averaged, embeddings)
    out = encoder(inputs_embeds=embeddings, attention_mask=attention_mask.long(), position_ids=position_ids)
    return out.last_hidden_state
