import json
from dataclasses import asdict

import numpy as np
import pytest

from avatar.errors import AvatarError
from avatar.space import NAMES, CatDim, FloatDim, IntDim, Space
from avatar.student import StudentConfig


def test_paper_space_has_the_papers_ranges():
    d = Space.paper().dims
    assert set(d) == set(NAMES) and len(NAMES) == 13
    assert (d["vocab_size"].low, d["vocab_size"].high) == (1000, 50265)
    assert (d["num_hidden_layers"].low, d["num_hidden_layers"].high) == (1, 12)
    assert (d["hidden_size"].low, d["hidden_size"].high) == (16, 768)
    assert (d["intermediate_size"].low, d["intermediate_size"].high) == (16, 3072)
    assert (d["num_attention_heads"].low, d["num_attention_heads"].high) == (1, 12)
    assert (d["max_sequence_length"].low, d["max_sequence_length"].high) == (256, 512)
    assert list(d["hidden_dropout_prob"].values())[0] == 0.1 and list(d["hidden_dropout_prob"].values())[-1] == 0.5
    assert d["learning_rate"].choices == (1e-3, 1e-4, 5e-5) and d["batch_size"].choices == (16, 32, 64)
    assert Space.paper().total() == np.prod([len(x) for x in d.values()], dtype=object)


def test_genes_roundtrip_on_the_grid():
    space = Space.paper()
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = space.decode(rng.random(13))
        genes = space.encode(values)
        assert ((genes >= 0) & (genes <= 1)).all()
        assert space.decode(genes) == values
    cfg = asdict(StudentConfig(vocab_size=1000, num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=16, max_sequence_length=256))
    genes = space.encode(cfg)
    assert genes[NAMES.index("vocab_size")] == 0.0 and genes[NAMES.index("num_hidden_layers")] == 1.0


def test_overrides_from_toml_and_json(tmp_path):
    (tmp_path / "s.toml").write_text('[space]\nvocab_size = {low = 2000, high = 8000}\ntokenizer = ["BPE", "Unigram"]\n')
    space = Space.load(tmp_path / "s.toml")
    assert space.dims["vocab_size"] == IntDim(2000, 8000, 1)
    assert space.dims["tokenizer"] == CatDim(("BPE", "Unigram"))
    (tmp_path / "s.json").write_text(json.dumps({"hidden_dropout_prob": {"low": 0.0, "high": 0.2, "step": 0.1}}))
    assert Space.load(tmp_path / "s.json").dims["hidden_dropout_prob"] == FloatDim(0.0, 0.2, 0.1)


@pytest.mark.parametrize(
    "text,message",
    [
        ('vocab = {low = 1}', "unknown dimension 'vocab'"),
        ('tokenizer = ["SentencePiece"]', "tokenizer must be one of"),
        ('hidden_size = {low = 64, high = 32}', "needs low <= high"),
        ('hidden_size = {low = 16, high = 40, step = 16}', "must lie on the grid"),
        ('num_hidden_layers = {low = 0, high = 3}', "num_hidden_layers must be at least 1"),
        ('vocab_size = 5', "takes a table with low, high"),
        ('vocab_size = {low = "a"}', "bounds must be numbers"),
        ('this is not toml', "malformed TOML"),
        ('hidden_dropout_prob = {low = 0.1, high = 0.5, step = 0.3}', "must lie on the grid"),
        ('tokenizer = ["BPE", "BPE"]', "each once"),
    ],
)
def test_bad_space_files(tmp_path, text, message):
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(AvatarError) as err:
        Space.load(tmp_path / "s.toml")
    assert message in str(err.value) and str(tmp_path / "s.toml") in str(err.value)


def test_overrides_from_flags():
    space = Space.paper().override_flags(["vocab_size=2000:9000:1000", "num_hidden_layers=1:4"], ["tokenizer=BPE,Unigram", "batch_size=16,32"])
    assert space.dims["vocab_size"] == IntDim(2000, 9000, 1000) and space.dims["num_hidden_layers"] == IntDim(1, 4, 1)
    assert space.dims["tokenizer"].choices == ("BPE", "Unigram") and space.dims["batch_size"].choices == (16, 32)
    with pytest.raises(AvatarError, match="--range takes NAME=LOW:HIGH"):
        Space.paper().override_flags(["vocab_size=2000"], [])
    with pytest.raises(AvatarError, match="--choices batch_size takes int values"):
        Space.paper().override_flags([], ["batch_size=big"])


TORCH_FREE = """
import sys
from importlib.abc import MetaPathFinder

class Block(MetaPathFinder):  # an install with z3 and pymoo but no torch, transformers or scikit-learn
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "sklearn"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)

sys.meta_path.insert(0, Block())
"""


def test_the_core_imports_without_torch():
    import subprocess
    import sys

    code = TORCH_FREE + "import avatar.space, avatar.cost, avatar.smt, avatar.sampling, avatar.search, avatar.student, avatar.settings\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_avatar_space_runs_without_torch():
    import json
    import subprocess
    import sys

    code = TORCH_FREE + "from avatar.cli import main\nsys.argv = ['avatar', 'space', '--task', 'defect', '--budget-mb', '3', '--json']\nmain()\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["task"] == "defect" and result["configurations"]["feasible"] > 0


def test_a_space_cut_to_the_smt_bounds_keeps_every_feasible_configuration():
    from avatar.cost import MB
    from avatar.sampling import sample
    from avatar.smt import Constraints, Feasibility, analyse

    space = Space.paper().override({"position_embedding_type": ["absolute"]})
    c = Constraints(int(1.0 * MB), 1)
    result = analyse(space, c)
    cut = space.within(result.bounds)
    assert cut.total() < space.total()
    for name in NAMES:
        d = cut.dims[name]
        if isinstance(d, CatDim):
            assert set(d.choices) == set(result.bounds[name])
        else:
            assert [d.value(0), d.value(len(d) - 1)] == list(result.bounds[name])
            assert d.step == space.dims[name].step  # the same grid
    feas = Feasibility(space, c)
    drawn = sample(space, feas, 30, seed=3)  # from the whole grid: all of them lie inside the cut
    for cfg in drawn:
        for name in NAMES:
            d = cut.dims[name]
            assert cfg[name] in d.choices if isinstance(d, CatDim) else d.value(0) <= cfg[name] <= d.value(len(d) - 1)
    assert all(Feasibility(cut, c).is_feasible(cfg) for cfg in sample(cut, Feasibility(cut, c), 30, seed=3))
