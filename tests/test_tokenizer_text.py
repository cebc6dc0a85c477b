"""SentencePiece training and text encoding against the sentencepiece package itself."""

import pytest
import sentencepiece as spm

from mmtok.tokenizer.text import TextTokenizer, train_sentencepiece


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_train_matches_sentencepiece(model_type, caption_file, tmp_path):
    path = train_sentencepiece([caption_file], tmp_path / "m.model", 400, model_type)
    sp = spm.SentencePieceProcessor(model_file=str(path))
    assert sp.get_piece_size() <= 400
    assert sp.id_to_piece(0) == "<unk>" and sp.bos_id() == -1 and sp.eos_id() == -1 and sp.pad_id() == -1
    tok = TextTokenizer(path)
    for s in ["A solemn slow chorale played on cello in D minor.", "ümlaut ♪ 🎻 漢字", "  spaced  out "]:
        assert tok.encode(s) == sp.encode(s)
        assert tok.decode(tok.encode(s)) == s  # identity normalisation + byte fallback: lossless
    assert "<soa>" not in [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def test_empty_or_bad_text_files_are_named(tmp_path, caption_file):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="empty.txt: text file is empty"):
        train_sentencepiece([caption_file, empty], tmp_path / "m.model", 400)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_sentencepiece([tmp_path / "missing.txt"], tmp_path / "m.model", 400)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt: not valid UTF-8"):
        train_sentencepiece([latin1], tmp_path / "m.model", 400)
    with pytest.raises(ValueError, match="too small"):
        train_sentencepiece([caption_file], tmp_path / "m.model", 100)
    assert not (tmp_path / "m.model").exists()
