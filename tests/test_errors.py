from avatar.errors import AvatarError


def test_message_names_file_and_line():
    assert str(AvatarError("bad label", "data/train.jsonl", 7)) == "data/train.jsonl:7: bad label"
    assert str(AvatarError("missing file", "data/valid.jsonl")) == "data/valid.jsonl: missing file"
    assert str(AvatarError("no path")) == "no path"
