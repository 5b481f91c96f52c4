import pytest

from avatar.student import SPECIAL_TOKENS, TOKENIZERS
from avatar.tasks import get_task
from avatar.vocab import distinct_texts, train_tokenizer

CODE = [
    "static int add(int a, int b) {\n    return a + b;\n}\n",
    "void copy(char *dst, const char *src) {\n    while ((*dst++ = *src++));\n}\n",
    "int main(void) {\n    int x = add(1, 2);\n    copy(buf, \"hi\");\n    return x;\n}\n",
] * 5


@pytest.mark.parametrize("kind", TOKENIZERS)
def test_each_kind_trains_and_round_trips(kind):
    tok = train_tokenizer(kind, 320, CODE)
    assert len(tok) <= 320
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    for text in CODE[:3]:
        ids = tok(text)["input_ids"]
        assert ids[0] == 0 and ids[-1] == 2  # <s> ... </s>, as RoBERTa
        assert tok.unk_token_id not in ids
        decoded = tok.decode(ids, skip_special_tokens=True)
        if kind == "BPE":
            assert decoded == text  # byte-level: exact
        else:
            assert "".join(decoded.split()) == "".join(text.split())  # word-based kinds drop whitespace
    assert len(tok(CODE[2], truncation=True, max_length=8)["input_ids"]) == 8


def test_cache_by_kind_vocab_and_data(tmp_path, monkeypatch):
    train_tokenizer("WordPiece", 330, CODE)
    files = list((tmp_path / "cache" / "tokenizers").iterdir())
    assert len(files) == 1
    import tokenizers

    def no_training(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(tokenizers.Tokenizer, "train_from_iterator", no_training)
    train_tokenizer("WordPiece", 330, CODE)  # served from the cache
    with pytest.raises(AssertionError, match="trained again"):
        train_tokenizer("WordPiece", 331, CODE)
    with pytest.raises(AssertionError, match="trained again"):
        train_tokenizer("WordPiece", 330, CODE[:-1])


def test_clone_pairs_contribute_both_functions_once(clone_data):
    data = get_task("clone").load(clone_data)
    texts = distinct_texts(data.unlabelled)
    both = {t for ex in data.unlabelled for t in ex.texts}
    assert set(texts) == both and len(texts) == len(both)
