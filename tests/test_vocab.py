import json

from transformers import AutoTokenizer

from uneed.tasks import SPECIAL_TOKENS
from uneed.vocab import build_char_tokenizer, gb2312_chars, unknown_rate


def _sample_texts(samples_dir):
    texts = []
    for path in list(samples_dir.glob("*.json")) + list(samples_dir.glob("*/*.json")):
        data = json.loads(path.read_text("utf-8"))
        texts.append(json.dumps(data, ensure_ascii=False))
    return texts


def test_no_unknown_for_99_percent_of_real_sample_characters(samples_dir):
    # built from no corpus text at all: the GB2312 base alone must cover the real samples
    tok = build_char_tokenizer([], SPECIAL_TOKENS)
    assert len(gb2312_chars()) > 3700
    assert unknown_rate(tok, _sample_texts(samples_dir)) < 0.01


def test_special_tokens_are_whole_and_round_trip(tmp_path):
    tok = build_char_tokenizer(["亲在的/:065"], SPECIAL_TOKENS)
    text = "[user]亲在的/:065\n[system]好的[LLM]品类：面膜"
    ids = tok(text, add_special_tokens=False).input_ids
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces[0] == "[user]" and "[system]" in pieces and "[LLM]" in pieces and "\n" in pieces
    assert tok.decode(ids) == text
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text, add_special_tokens=False).input_ids == ids
    assert again.truncation_side == "left"
