"""Pure text extraction and cleaning for scripts/build_corpus.py.

Everything here works on bytes or strings already in memory: no network, no files. Each
source format has its own cleaner that turns raw package content into documents made of
paragraphs of plain prose; build_corpus.py then splits the paragraphs into sentences,
tokenizes them, deduplicates and assigns each document to train/valid/test.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

# --------------------------------------------------------------------------- documents


@dataclass
class Document:
    """One unit of the split: a Wikipedia article, a play, a chapter, a synset chunk, a page."""

    doc_id: str
    paragraphs: list[str] = field(default_factory=list)


def collapse_whitespace(text: str) -> str:
    """Replace every run of whitespace (including newlines and NBSP) with one space and trim."""
    return " ".join(text.split())


def blocks(text: str) -> list[list[str]]:
    """Split text into blocks of consecutive non-blank lines (right-stripped)."""
    result: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip():
            current.append(line.rstrip())
        elif current:
            result.append(current)
            current = []
    if current:
        result.append(current)
    return result


# --------------------------------------------------------------------------- splitting


SPLITS = ("train", "valid", "test")


def assign_split(doc_key: str, seed: int, valid_fraction: float = 0.01, test_fraction: float = 0.01) -> str:
    """Deterministically map a document key to 'train', 'valid' or 'test' by hashing it with the seed."""
    digest = hashlib.sha256(f"{seed}\x00{doc_key}".encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < valid_fraction:
        return "valid"
    if u < valid_fraction + test_fraction:
        return "test"
    return "train"


def deduplicate(sentences: Iterable[str], seen: set[bytes]) -> Iterator[str]:
    """Yield the sentences whose text was not seen before, recording each in `seen` (by digest)."""
    for sentence in sentences:
        key = hashlib.blake2b(sentence.encode("utf-8"), digest_size=16).digest()
        if key not in seen:
            seen.add(key)
            yield sentence


_LETTER = re.compile(r"[^\W\d_]")


def looks_like_prose(tokens: list[str], min_tokens: int = 1, min_letter_share: float = 0.5) -> bool:
    """True if a tokenized sentence has enough tokens and mostly alphabetic tokens."""
    if len(tokens) < min_tokens:
        return False
    wordy = sum(1 for token in tokens if _LETTER.search(token))
    return wordy > 0 and wordy / len(tokens) >= min_letter_share


# --------------------------------------------------------------------------- Wikipedia


def wiki_documents(raw_json: bytes) -> list[Document]:
    """Turn the wiki summaries JSON (title -> {title, extract, ...}) into one document per article."""
    data = json.loads(raw_json)
    documents = []
    for key in sorted(data):
        entry = data[key]
        extract = entry.get("extract", "") if isinstance(entry, dict) else ""
        paragraphs = [collapse_whitespace(" ".join(block)) for block in blocks(extract)]
        paragraphs = [p for p in paragraphs if p]
        if paragraphs:
            documents.append(Document(doc_id=key, paragraphs=paragraphs))
    return documents


# --------------------------------------------------------------------------- Gutenberg texts

_GUTENBERG_START = re.compile(
    r"^\s*\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG|^\s*\*END\*THE SMALL PRINT", re.IGNORECASE
)
_GUTENBERG_END = re.compile(
    r"^\s*\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG|^\s*End of (the )?Project Gutenberg", re.IGNORECASE
)


def strip_gutenberg_boilerplate(text: str) -> str:
    """Drop the Project Gutenberg header (up to its START marker) and footer (from its END marker)."""
    lines = text.splitlines()
    start = 0
    for i, line in enumerate(lines):
        if _GUTENBERG_START.search(line):
            start = i + 1
            break
    end = len(lines)
    for i in range(start, len(lines)):
        if _GUTENBERG_END.search(lines[i]):
            end = i
            break
    return "\n".join(lines[start:end])


_SPEAKER_TAG = re.compile(r"^\s*(\d+ )?[A-Z][\w'\-]*(?: [\w'\-]+){0,3}\.\s*$")
_LINE_NUMBER = re.compile(r"\s{2,}\d{1,5}\s*$")
_DOT_LEADER = re.compile(r"^\s*\.{3,}")
_ITALICS = re.compile(r"[_~]+")  # Gutenberg marks italics with _ or ~
_ROMAN_NUMERAL = re.compile(r"^\s*[IVXLCDM]+\.?\s*$")


def _is_heading(line: str) -> bool:
    """A title-like line: two or more letters and none of them lower-case (ACT I., CONTENTS, SONNET XII)."""
    if _ROMAN_NUMERAL.match(line):
        return True
    letters = [ch for ch in line if ch.isalpha()]
    return len(letters) >= 2 and not any(ch.islower() for ch in letters)


def _is_index_line(line: str) -> bool:
    """A line of an index or table of contents: mostly page numbers."""
    digits = sum(ch.isdigit() for ch in line)
    letters = sum(ch.isalpha() for ch in line)
    return digits >= 3 and digits >= letters / 2


def clean_gutenberg_text(text: str, speaker_tags: bool = False) -> list[str]:
    """Clean a plain Gutenberg play, poem or prose text into paragraphs of running text.

    Drops the boilerplate, all-capital headings, verse line numbers, dot leaders, index lines
    and the underscores that mark italics; joins the lines of each paragraph. With
    `speaker_tags`, a short capitalised first line ending in a period ('Ham.', 'First Lord.')
    is taken for a speaker's name and dropped. Stage directions in brackets stay.
    """
    paragraphs = []
    for block in blocks(strip_gutenberg_boilerplate(text)):
        if speaker_tags and len(block) > 1 and len(block[0].split()) <= 4 and _SPEAKER_TAG.match(block[0]):
            block = block[1:]
        kept = [
            _DOT_LEADER.sub("", _LINE_NUMBER.sub("", line))
            for line in block
            if not _is_heading(line) and not _is_index_line(line)
        ]
        paragraph = collapse_whitespace(_ITALICS.sub("", " ".join(kept)))
        if paragraph:
            paragraphs.append(paragraph)
    return paragraphs


# --------------------------------------------------------------------------- Austen (R data)


class RFormatError(ValueError):
    """The bytes are not an R serialization this reader understands."""


_NILVALUE, _REFSXP, _ALTREP = 254, 255, 238
_SPECIAL_NO_DATA = {242, 241, 253, 252, 251, 250}  # empty/base/global env, unbound, missing, base ns
_PAIRLIST_TYPES = {2, 3, 5, 6, 17}  # LISTSXP CLOSXP PROMSXP LANGSXP DOTSXP


class _RReader:
    """A minimal reader of R's XDR serialization: enough for vectors, lists and pairlists."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.refs: list[Any] = []

    def read_int(self) -> int:
        """Read one big-endian signed 32-bit integer."""
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def read_bytes(self, n: int) -> bytes:
        """Read n raw bytes."""
        chunk = self.data[self.pos : self.pos + n]
        if len(chunk) != n:
            raise RFormatError("truncated R serialization")
        self.pos += n
        return chunk

    def read_header(self) -> None:
        """Check the 'X\\n' XDR header and skip the version fields."""
        if self.read_bytes(2) != b"X\n":
            raise RFormatError("not an XDR R serialization (expected 'X\\n')")
        version = self.read_int()
        self.read_int()  # writer R version
        self.read_int()  # minimal reader R version
        if version == 3:
            self.read_bytes(self.read_int())  # native encoding name
        elif version != 2:
            raise RFormatError(f"unsupported R serialization version {version}")

    def read_length(self) -> int:
        """Read a vector length (long vectors use -1 then two ints)."""
        n = self.read_int()
        if n == -1:
            upper, lower = self.read_int(), self.read_int()
            n = (upper << 32) + (lower & 0xFFFFFFFF)
        return n

    def read_charsxp(self, flags: int) -> str | None:
        """Read one string (None for NA); latin-1 when flagged so, UTF-8 otherwise."""
        n = self.read_int()
        if n == -1:
            return None
        raw = self.read_bytes(n)
        latin1 = bool((flags >> 12) & 4)
        return raw.decode("latin-1" if latin1 else "utf-8", errors="replace")

    def read_item(self) -> Any:
        """Read one serialized object and return it as plain Python values."""
        flags = self.read_int()
        sxp_type = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        if sxp_type == _NILVALUE or sxp_type in _SPECIAL_NO_DATA:
            return None
        if sxp_type == _REFSXP:
            index = flags >> 8 or self.read_int()
            return self.refs[index - 1]
        if sxp_type == 1:  # SYMSXP
            name = self.read_item()
            self.refs.append(name)
            return name
        if sxp_type in _PAIRLIST_TYPES:
            return self.read_pairlist(has_attr, has_tag)
        if sxp_type == 9:  # CHARSXP
            return self.read_charsxp(flags)
        value = self.read_vector(sxp_type)
        if has_attr:
            attributes = self.read_item()
            names = attributes.get("names") if isinstance(attributes, dict) else None
            if isinstance(value, list) and names and len(names) == len(value):
                return dict(zip(names, value))
        return value

    def read_pairlist(self, has_attr: bool, has_tag: bool) -> dict[str, Any]:
        """Read a pairlist (tag/value cells chained through CDR) into a dict."""
        result: dict[str, Any] = {}
        while True:
            if has_attr:
                self.read_item()
            tag = self.read_item() if has_tag else None
            result[str(tag) if tag is not None else str(len(result))] = self.read_item()
            flags = self.read_int()
            if flags & 0xFF == _NILVALUE:
                return result
            if flags & 0xFF not in _PAIRLIST_TYPES:
                raise RFormatError("unexpected object inside a pairlist")
            has_attr = bool(flags & (1 << 9))
            has_tag = bool(flags & (1 << 10))

    def read_vector(self, sxp_type: int) -> Any:
        """Read the body of a vector type: logical, integer, double, string, list or raw."""
        if sxp_type in (10, 13):  # LGLSXP, INTSXP
            n = self.read_length()
            return list(struct.unpack_from(f">{n}i", self.read_bytes(4 * n)))
        if sxp_type == 14:  # REALSXP
            n = self.read_length()
            return list(struct.unpack_from(f">{n}d", self.read_bytes(8 * n)))
        if sxp_type == 16:  # STRSXP
            n = self.read_length()
            strings = []
            for _ in range(n):
                flags = self.read_int()
                strings.append(self.read_charsxp(flags))
            return strings
        if sxp_type in (19, 20):  # VECSXP, EXPRSXP
            n = self.read_length()
            return [self.read_item() for _ in range(n)]
        if sxp_type == 24:  # RAWSXP
            return self.read_bytes(self.read_length())
        raise RFormatError(f"unsupported R object type {sxp_type}")


def unserialize_r(data: bytes) -> Any:
    """Parse one XDR-serialized R object (as written by saveRDS or a lazy-load database)."""
    reader = _RReader(data)
    reader.read_header()
    return reader.read_item()


def decompress_r_chunk(chunk: bytes) -> bytes:
    """Decompress one lazy-load database chunk: 4-byte length, then zlib or a typed (Z/2/X/0) body."""
    if len(chunk) < 5:
        raise RFormatError("lazy-load chunk too short")
    (expected,) = struct.unpack(">I", chunk[:4])
    kind, body = chunk[4:5], chunk[5:]
    if kind == b"Z":
        out = zlib.decompress(body)
    elif kind == b"2":
        out = bz2.decompress(body)
    elif kind == b"X":
        out = lzma.decompress(body)
    elif kind == b"0":
        out = body
    else:
        out = zlib.decompress(chunk[4:])
    if len(out) != expected:
        raise RFormatError("lazy-load chunk has the wrong decompressed length")
    return out


def read_r_lazyload(rdx: bytes, rdb: bytes) -> dict[str, Any]:
    """Read every variable of an R lazy-load database (.rdx index, gzip or not, plus .rdb chunks)."""
    index = unserialize_r(gzip.decompress(rdx) if rdx[:2] == b"\x1f\x8b" else rdx)
    if not isinstance(index, dict) or not isinstance(index.get("variables"), dict):
        raise RFormatError("lazy-load index has no 'variables' list")
    variables = {}
    for name, (offset, length) in index["variables"].items():
        variables[name] = unserialize_r(decompress_r_chunk(rdb[offset : offset + length]))
    return variables


_CHAPTER = re.compile(r"^\s*(CHAPTER|Chapter)\s+([IVXLC]+|\d+)\b\.?")


def austen_chapters(lines: list[str | None], book: str) -> list[Document]:
    """Split one novel (a vector of lines) into chapter documents of cleaned paragraphs.

    The text before the first chapter heading (title page, preface) is dropped.
    """
    chapters: list[list[str]] = []
    for line in lines:
        line = line or ""
        if _CHAPTER.match(line):
            chapters.append([])
        elif chapters:
            chapters[-1].append(line)
    documents = []
    for number, chapter in enumerate(chapters, start=1):
        paragraphs = clean_gutenberg_text("\n".join(chapter))
        if paragraphs:
            documents.append(Document(doc_id=f"{book}/{number:03d}", paragraphs=paragraphs))
    return documents


# --------------------------------------------------------------------------- WordNet


_WORDNET_QUOTE = re.compile(r'"([^"]*)"')


def wordnet_gloss(line: str) -> tuple[str, list[str]] | None:
    """Parse one data.* line into (synset offset, sentences): the definitions and the examples.

    Returns None for licence-header lines (which start with two spaces) and lines without a gloss.
    """
    if line.startswith("  ") or "|" not in line:
        return None
    offset = line.split(" ", 1)[0]
    gloss = line.split("|", 1)[1].strip()
    examples = [collapse_whitespace(m) for m in _WORDNET_QUOTE.findall(gloss)]
    definition = _WORDNET_QUOTE.sub("", gloss)
    parts = [collapse_whitespace(part) for part in re.split(r"[;]", definition)]
    # Attributions of quotations ('- Shakespeare') are not sentences.
    sentences = [p for p in parts + examples if p and not p.startswith("-")]
    return (offset, sentences) if sentences else None


def wordnet_documents(data_text: str, pos: str, chunk_size: int = 100) -> list[Document]:
    """Group the glosses of one data.<pos> file into documents of `chunk_size` consecutive synsets."""
    documents: list[Document] = []
    count = 0
    for line in data_text.splitlines():
        parsed = wordnet_gloss(line)
        if parsed is None:
            continue
        offset, sentences = parsed
        if count % chunk_size == 0:
            documents.append(Document(doc_id=f"{pos}/{offset}"))
        documents[-1].paragraphs.extend(sentences)
        count += 1
    return documents


# --------------------------------------------------------------------------- reStructuredText

# Directives whose body is prose worth keeping; every other directive's body is dropped
# (code, tables, indexes, toctrees, images, grammar productions, doctests...).
_PROSE_DIRECTIVES = {
    "note", "warning", "seealso", "versionadded", "versionchanged", "deprecated",
    "deprecated-removed", "impl-detail", "attention", "caution", "important", "tip", "hint",
    "danger", "error", "admonition", "topic", "sidebar", "glossary", "only", "container",
    "function", "class", "method", "attribute", "data", "exception", "decorator",
    "decoratormethod", "classmethod", "staticmethod", "abstractmethod", "coroutinefunction",
    "coroutinemethod", "awaitablefunction", "describe", "cmdoption", "option", "envvar",
    "macro", "member", "type", "var", "struct", "opcode", "pdbcommand", "2to3fixer",
    "audit-event", "availability", "module", "program", "epigraph",
}
# Directives whose argument on the directive line is itself prose (".. note:: Text...").
_PROSE_ARGUMENT_DIRECTIVES = {
    "note", "warning", "seealso", "impl-detail", "attention", "caution", "important", "tip",
    "hint", "danger", "error",
}

_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:\-]+)::\s*(.*)$")
_COMMENT_OR_TARGET = re.compile(r"^\s*\.\.(\s|$)")
_ADORNMENT = re.compile(r"^\s*([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")
_TABLE_LINE = re.compile(r"^\s*(\+[-=+]+\+?|=+( +=+)+|\|.*\|)\s*$")
_BULLET = re.compile(r"^(\s*)([-*+•]|#\.|\d+\.|\(?[a-zA-Z0-9]\))\s+")
_FIELD = re.compile(r"^\s*:[^:\s`][^:`]*:(\s+|$)")


def _indent(line: str) -> int:
    """Number of leading spaces."""
    return len(line) - len(line.lstrip(" "))


def _skip_indented(lines: list[str], start: int, base_indent: int) -> int:
    """Index of the first line from `start` on that is non-blank and indented <= base_indent."""
    i = start
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base_indent):
        i += 1
    return i


def _paragraph_indent(lines: list[str], i: int) -> int:
    """The indentation of the first line of the paragraph that contains line i."""
    while i > 0 and lines[i - 1].strip():
        i -= 1
    return _indent(lines[i])


def _skip_literal_block(lines: list[str], i: int) -> int:
    """Index after the literal block that the '::' ending line i introduces (its more-indented lines)."""
    indent = _paragraph_indent(lines, i)
    j = i + 1
    while j < len(lines) and not lines[j].strip():
        j += 1
    if j < len(lines) and _indent(lines[j]) > indent:
        return _skip_indented(lines, j, indent)
    return i + 1


def _strip_literal_marker(line: str) -> str:
    """'Example::' -> 'Example:'; 'Example ::' -> 'Example'; '::' -> ''."""
    body = line.rstrip()[:-2]
    if not body.strip():
        return ""
    return body.rstrip() if body.endswith((" ", "\t")) else body + ":"


def _is_title(lines: list[str], i: int) -> bool:
    """True if line i is a section title: text underlined by an adornment line at least as long."""
    if i + 1 >= len(lines) or not _ADORNMENT.match(lines[i + 1]):
        return False
    return 0 < len(lines[i].strip()) <= len(lines[i + 1].strip())


def rest_prose_lines(text: str) -> list[str]:
    """Remove the non-prose constructs of a reST page, leaving prose lines and blank separators.

    Drops literal blocks (after '::'), doctest blocks, tables, section titles and their
    adornments, comments, link targets and non-prose directives with their bodies; keeps the
    body of prose directives (notes, function descriptions...) without the directive line.
    """
    lines = text.expandtabs(8).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        directive = _DIRECTIVE.match(line)
        if directive:
            name = directive.group(2).split(":")[-1]
            indent = _indent(line)
            out.append("")
            if name not in _PROSE_DIRECTIVES:
                i = _skip_indented(lines, i + 1, indent)
                continue
            if name in _PROSE_ARGUMENT_DIRECTIVES and directive.group(3):
                out.append(" " * (indent + 3) + directive.group(3))
            i += 1
            while i < len(lines) and _FIELD.match(lines[i]) and _indent(lines[i]) > indent:
                i += 1  # directive options such as :noindex:
        elif _COMMENT_OR_TARGET.match(line):
            out.append("")
            i = _skip_indented(lines, i + 1, _indent(line))
        elif _ADORNMENT.match(line) or _TABLE_LINE.match(line) or _is_title(lines, i):
            out.append("")
            i += 1
        elif stripped.startswith(">>>"):
            out.append("")
            while i < len(lines) and lines[i].strip():
                i += 1  # a doctest block runs to the next blank line
        elif stripped.endswith("::"):
            out.append(_strip_literal_marker(line))
            out.append("")
            i = _skip_literal_block(lines, i)
        else:
            out.append(line)
            i += 1
    return out


def _group_paragraphs(lines: list[str]) -> list[str]:
    """Group prose lines into paragraphs: a blank line, a list item, a field or an indentation change starts one."""
    paragraphs: list[list[str]] = []
    current: list[str] = []
    current_indent = -1
    for line in lines:
        if not line.strip():
            if current:
                paragraphs.append(current)
            current = []
            continue
        marker = _BULLET.match(line) or _FIELD.match(line)
        indent = marker.end() if marker else _indent(line)
        if current and (marker or indent != current_indent):
            paragraphs.append(current)
            current = []
        if not current:
            current_indent = indent
        current.append(line[marker.end():] if marker else line.strip())
    if current:
        paragraphs.append(current)
    return [collapse_whitespace(" ".join(p)) for p in paragraphs]


_ROLE = re.compile(r":([\w:.\-+]+):`([^`]*)`")
_NUMBERED_ROLES = {"pep": "PEP {}", "rfc": "RFC {}", "issue": "bpo-{}", "gh": "gh-{}"}
_LITERAL = re.compile(r"``(.+?)``")
_TITLE_TARGET = re.compile(r"^(.*?)\s*<[^<>]*>$", re.DOTALL)
_REFERENCE = re.compile(r"`([^`]+?)`__?")
_INTERPRETED = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*])\*(\S(?:[^*]*?\S)?)\*(?![\w*])")
_FOOTNOTE_REF = re.compile(r"\s*\[(#[\w-]*|\*|\d+)\]_")
_SUBSTITUTION = re.compile(r"\|(\w[\w\-]*)\|_{0,2}")
_ESCAPE = re.compile(r"\\(.)")
_TARGET_REF = re.compile(r"\b([A-Za-z]+)_(?=[\s.,;:!?)]|$)")


def _link_text(content: str) -> str:
    """The text shown for a role or link: 'title <target>' -> title, '~a.b.c' -> c, '!x' -> x."""
    titled = _TITLE_TARGET.match(content)
    if titled and titled.group(1):
        return titled.group(1)
    content = content.lstrip("!")
    if content.startswith("~"):
        content = content[1:].split(".")[-1]
    return content


def _role_text(match: re.Match[str]) -> str:
    """The text shown for a role: ':pep:`8`' -> 'PEP 8', ':func:`len`' -> 'len'."""
    role, content = match.group(1).split(":")[-1], match.group(2)
    if role in _NUMBERED_ROLES and content.strip().isdigit():
        return _NUMBERED_ROLES[role].format(content.strip())
    return _link_text(content)


def _strip_plain_markup(text: str) -> str:
    """Strip the markup of a stretch of text that holds no ``literal``."""
    text = _REFERENCE.sub(lambda m: _link_text(m.group(1)), text)
    text = _INTERPRETED.sub(r"\1", text)
    text = _STRONG.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    text = _FOOTNOTE_REF.sub("", text)
    text = _SUBSTITUTION.sub(r"\1", text)
    text = _TARGET_REF.sub(r"\1", text)
    return _ESCAPE.sub(lambda m: "" if m.group(1) == " " else m.group(1), text)


def strip_inline_markup(text: str) -> str:
    """Replace reST inline markup by its plain text (roles, literals, emphasis, links, footnotes).

    The content of ``literals`` is kept verbatim (it may hold '*' or '`').
    """
    text = _ROLE.sub(_role_text, text)
    pieces = _LITERAL.split(text)  # even indexes: plain text, odd: literal contents
    return "".join(piece if k % 2 else _strip_plain_markup(piece) for k, piece in enumerate(pieces))


_SENTENCE_END = re.compile(r"[.!?:;)\"'”’]$")


def rest_paragraphs(text: str) -> list[str]:
    """Clean one reST source page into prose paragraphs.

    Keeps only paragraphs that end like a sentence and have at least four words, which
    removes titles, definition-list terms, signatures and leftovers of tables.
    """
    paragraphs = []
    for paragraph in _group_paragraphs(rest_prose_lines(text)):
        paragraph = collapse_whitespace(strip_inline_markup(paragraph))
        if len(paragraph.split()) >= 4 and _SENTENCE_END.search(paragraph):
            paragraphs.append(paragraph)
    return paragraphs
