from exposure_cli.tokenizers import SPECIALS, CharTokenizer, normalize


def test_round_trip_of_lowercased_text_without_whitespace(shared_data):
    lines = (shared_data / "raw/clge/csl/test.tsv").read_text(encoding="utf-8").splitlines()[:300]
    texts = [field for line in lines for field in line.split("\t")]
    tok = CharTokenizer.build(texts)
    for t in texts:
        assert tok.decode(tok.encode(t)) == "".join(normalize(t))
        assert "".join(normalize(t)) == t.lower().replace(" ", "").replace("\t", "").replace("\u3000", "")


def test_unknown_characters_and_specials(tmp_path):
    tok = CharTokenizer.build(["abca"], min_freq=2)  # only 'a' is seen twice
    assert tok.tokens == SPECIALS + ["a"]
    assert tok.encode("A b") == [tok.index["a"], tok.unk_id]
    assert tok.decode([tok.cls_id, tok.index["a"], tok.sep_id, tok.index["a"]]) == "a"  # stops at [SEP]
    tok.save(tmp_path)
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8") == "\n".join(SPECIALS + ["a"]) + "\n"
    assert CharTokenizer.load(tmp_path).tokens == tok.tokens


def test_encode_pair_layout_and_truncation():
    tok = CharTokenizer.build(["abcdefxyz"])
    ids, seg = tok.encode_pair("abcdef", "xyz", max_source=4, max_target=3)
    # [CLS] a b c d [SEP] x y [SEP]: the target keeps max_target - 1 characters and its [SEP].
    assert tok.decode(ids[1:5]) == "abcd"
    assert ids[0] == tok.cls_id and ids[5] == tok.sep_id and ids[-1] == tok.sep_id
    assert tok.decode(ids[6:]) == "xy"
    assert seg == [0] * 6 + [1] * 3
