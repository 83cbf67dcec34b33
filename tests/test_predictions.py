import pytest

from exposure_cli.errors import UserError
from exposure_cli.decode.predictions import read_columns, read_texts, write_predictions


def test_round_trip_keeps_three_columns_when_texts_hold_tabs_and_newlines(tmp_path):
    p = tmp_path / "predictions.beam1.tsv"
    write_predictions(p, ["源\t文", "b"], ["参考\n标题", "c"], ["", "预测"])
    assert read_columns(p) == {"source": ["源 文", "b"], "reference": ["参考 标题", "c"], "prediction": ["", "预测"]}
    assert read_texts(p, "prediction") == (["", "预测"], True)


def test_plain_text_files_and_errors(tmp_path):
    t = tmp_path / "refs.txt"
    t.write_text("一\r\n二\n", encoding="utf-8")
    assert read_texts(t, "reference") == (["一", "二"], False)
    bad = tmp_path / "x.tsv"
    bad.write_text("source\treference\tprediction\na\tb\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"x.tsv:2: expected 3 tab-separated fields, found 2"):
        read_columns(bad)
    (tmp_path / "y.tsv").write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(UserError, match="must start with the header"):
        read_texts(tmp_path / "y.tsv", "prediction")
