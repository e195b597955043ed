"""Prose from documentation and dictionary formats, for scripts/build_corpus.py.

Each function turns one file's text (already decoded, in memory) into paragraphs of plain prose:
HTML pages, GNU info nodes, Perl POD, man pages (groff), dictd dictionaries (GCIDE and the
plain ones) and fortune files. Code, tables, navigation and markup are dropped; what is left
still goes through `corpus_clean.looks_like_prose` sentence by sentence in build_corpus.py.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

from corpus_clean import collapse_whitespace

_SENTENCE_END = re.compile(r"[.!?:;)\"'”’]$")


def _prose(paragraphs: list[str], min_words: int = 4) -> list[str]:
    """Paragraphs of at least `min_words` words that end like a sentence, whitespace collapsed."""
    kept = []
    for paragraph in paragraphs:
        paragraph = collapse_whitespace(paragraph)
        if len(paragraph.split()) >= min_words and _SENTENCE_END.search(paragraph):
            kept.append(paragraph)
    return kept


# --------------------------------------------------------------------------- HTML

_BLOCKS = {"p", "li", "dd", "blockquote", "td"}
_SKIPPED = {"pre", "script", "style", "head", "nav", "code-block", "table", "samp"}
_SKIPPED_CLASSES = re.compile(r"\b(sphinxsidebar|related|footer|navheader|navfooter|toc|highlight|headerlink|"
                              r"literallayout|programlisting|screen|synopsis)\b")


class _ParagraphParser(HTMLParser):
    """Collects the text of block elements (paragraphs, list items, definitions) outside skipped ones."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.current: list[str] | None = None
        self.depth_in_block = 0
        self.skipping: list[str] = []  # open skipped tags
        self.block_tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = " ".join(value or "" for name, value in attrs if name == "class")
        if self.skipping or tag in _SKIPPED or _SKIPPED_CLASSES.search(classes):
            if tag not in ("br", "img", "hr", "meta", "link", "input"):
                self.skipping.append(tag)
            return
        if tag in _BLOCKS or (tag == "div" and re.search(r"\bpara\b", classes)):  # Publican's <div class="para">
            self._flush()
            self.current = []
            self.block_tag = tag
        elif tag == "br" and self.current is not None:
            self.current.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            return
        if tag in _BLOCKS or (tag == "div" and self.current is not None and self.block_tag == "div"):
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.skipping and self.current is not None:
            self.current.append(data)

    def _flush(self) -> None:
        if self.current:
            self.paragraphs.append("".join(self.current))
        self.current = None


def html_paragraphs(text: str) -> list[str]:
    """Prose paragraphs of an HTML page: the text of `<p>`, `<li>`, `<dd>`, ... outside code and navigation."""
    parser = _ParagraphParser()
    parser.feed(text)
    parser.close()
    parser._flush()
    return _prose(parser.paragraphs)


# --------------------------------------------------------------------------- GNU info

_INFO_MENU = re.compile(r"^\* [^:]+::")


def info_nodes(text: str) -> list[tuple[str, list[str]]]:
    """(node name, prose paragraphs) of each node of an info file (nodes are separated by ^_)."""
    nodes = []
    for chunk in text.split("\x1f"):
        lines = chunk.strip("\n").splitlines()
        if not lines or not lines[0].startswith("File:"):
            continue
        name = re.search(r"Node: ([^,]+)", lines[0])
        paragraphs = []
        for block in _blocks(lines[1:]):
            if any(_INFO_MENU.match(line) for line in block) or all(line.startswith("     ") for line in block):
                continue  # menus and examples (indented five or more spaces)
            if len(block) == 2 and re.fullmatch(r"[=*\-.]+", block[1].strip()):
                continue  # a heading and its underline
            paragraphs.append(" ".join(line.strip() for line in block))
        nodes.append((name.group(1) if name else str(len(nodes)), _prose(paragraphs)))
    return nodes


def _blocks(lines: list[str]) -> list[list[str]]:
    result: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            result[-1].append(line.rstrip())
        elif result[-1]:
            result.append([])
    return [block for block in result if block]


# --------------------------------------------------------------------------- Perl POD

_POD_CODE = re.compile(r"[IBCLEFSXZ](<{2,}) (.*?) \1>|[IBCLEFSXZ]<([^<>]*)>", re.DOTALL)
_POD_ESCAPES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/"}


def _pod_inline(text: str) -> str:
    """Formatting codes replaced by their text (L<text|link> -> text, E<gt> -> >, X<...> dropped)."""
    for _ in range(4):  # nested codes, innermost first
        def replace(match: re.Match[str]) -> str:
            code = match.group(0)[0]
            inner = match.group(2) if match.group(2) is not None else match.group(3)
            if code in "XZ":
                return ""
            if code == "E":
                return _POD_ESCAPES.get(inner, "")
            if code == "L":
                inner = inner.split("|", 1)[0] if "|" in inner else inner.split("/")[-1].strip('"')
            return inner

        updated = _POD_CODE.sub(replace, text)
        if updated == text:
            break
        text = updated
    return text


def pod_paragraphs(text: str) -> list[str]:
    """Prose paragraphs of a POD page: ordinary paragraphs only (no commands, no verbatim code)."""
    paragraphs, in_pod, skipping = [], True, False
    for block in _blocks(text.splitlines()):
        first = block[0]
        if first.startswith("=cut"):
            in_pod = False
            continue
        if first.startswith("="):
            in_pod = True
            skipping = first.startswith(("=begin", "=for"))
            if first.startswith("=end"):
                skipping = False
            continue
        if not in_pod or skipping or first[:1].isspace():
            continue
        paragraphs.append(_pod_inline(" ".join(block)))
    return _prose(paragraphs)


# --------------------------------------------------------------------------- man pages

_GROFF_SPECIALS = {"em": "—", "en": "–", "aq": "'", "dq": '"', "lq": "“", "rq": "”", "oq": "‘", "cq": "’",
                   "bu": "•", "co": "©", "rg": "®", "mu": "×", "ti": "~", "ha": "^", "rs": "\\"}
_GROFF_ESCAPE = re.compile(r"\\(\((..)|\[([^\]]*)\]|f(\(..|\[[^\]]*\]|.)|[s][-+]?\d+|\*(\(..|.)|[&|^%:]|e|-|.)")
_FONT_MACROS = {"B", "I", "BR", "RB", "IR", "RI", "BI", "IB", "SM", "SB"}
_BREAKS = {"PP", "P", "LP", "TP", "IP", "SH", "SS", "HP", "TQ", "RS", "RE", "sp", "br", "in", "ti", "TH", "UR", "UE",
           "MT", "ME", "SY", "YS", "OP", "ad", "na", "hy", "nh", "ne", "bp", "\\\""}


def _groff_text(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        whole = match.group(1)
        if match.group(2) or match.group(3):
            return _GROFF_SPECIALS.get(match.group(2) or match.group(3), "")
        if whole == "e":
            return "\\"
        if whole == "-":
            return "-"
        return ""

    return _GROFF_ESCAPE.sub(replace, text)


def man_paragraphs(text: str) -> list[str]:
    """Prose paragraphs of a man page: running text between paragraph macros, outside .nf/.EX blocks,
    with font macros' words kept and escapes resolved; the SYNOPSIS section is dropped."""
    paragraphs: list[str] = []
    current: list[str] = []
    fill, section, tagged = True, "", False

    def flush() -> None:
        if current:
            paragraphs.append(" ".join(current))
            current.clear()

    for line in text.splitlines():
        if line.startswith((".", "'")):
            parts = line[1:].split(None, 1)
            macro = parts[0] if parts else ""
            rest = parts[1] if len(parts) > 1 else ""
            if macro in ("nf", "EX"):
                flush()
                fill = False
            elif macro in ("fi", "EE"):
                fill = True
            elif macro == "SH":
                flush()
                section = rest.strip('"').upper()
            elif macro in _FONT_MACROS and fill and section not in ("SYNOPSIS", "NAME"):
                words = re.findall(r'"([^"]*)"|(\S+)', rest)
                joined = " ".join(a or b for a, b in words)
                (current if not tagged else []).append(_groff_text(joined))
                tagged = False
            elif macro in _BREAKS:
                flush()
                tagged = macro == "TP"  # the next line is the tag of a tagged paragraph
            continue
        if not fill or section in ("SYNOPSIS", "NAME"):
            continue
        if tagged:
            tagged = False
            continue
        if line.strip():
            current.append(_groff_text(line))
        else:
            flush()
    flush()
    return _prose(paragraphs)


# --------------------------------------------------------------------------- dictd dictionaries

_GCIDE_SOURCE = re.compile(r"^\s*\[(1913 Webster|Webster 1913[^\]]*|PJC|Century Dict[^\]]*|WordNet[^\]]*|[A-Z]{2,4})\]\s*$")
_BRACKETED = re.compile(r"\[[^\[\]]*\]")
_BRACES = re.compile(r"[{}]")
_HEADWORD = re.compile(r"^\S")


def _without_brackets(text: str) -> str:
    """Text with every bracketed segment removed, nested ones included (innermost first)."""
    while True:
        stripped = _BRACKETED.sub("", text)
        if stripped == text:
            return text
        text = stripped


_GCIDE_HEAD = re.compile(r"^[^\\]*\\[^\\]*\\\s*(\([^)]*\))?\s*,?\s*((?:[a-z]+\.\s*,?\s*)+)?")


def gcide_entries(text: str) -> list[list[str]]:
    """Definitions and quotations of GCIDE (1913 Webster and supplements), one paragraph list per entry.

    The headword (word, pronunciation, part of speech), bracketed etymologies and source tags are
    dropped; cross-reference braces are unwrapped.
    """
    entries: list[list[str]] = []
    for block in _blocks(text.splitlines()):
        lines = [line for line in block if not _GCIDE_SOURCE.match(line)]
        if not lines:
            continue
        paragraph = _without_brackets(" ".join(line.strip() for line in lines))
        if _HEADWORD.match(block[0]):
            entries.append([])
            paragraph = _GCIDE_HEAD.sub("", paragraph)
        if not entries:
            continue
        paragraph = _BRACES.sub("", paragraph)
        paragraph = re.sub(r"\s--\s*[A-Z][\w.' ]{0,40}\.?$", "", paragraph)  # a quotation's author
        entries[-1].extend(_prose([paragraph]))
    return [entry for entry in entries if entry]


def dictd_entries(text: str) -> list[list[str]]:
    """Entries of a plain dictd dictionary (FOLDOC, the Jargon File, the Devil's Dictionary): paragraphs
    of each entry (an entry starts at an unindented line), cross-reference braces unwrapped."""
    entries: list[list[str]] = []
    for block in _blocks(text.splitlines()):
        if _HEADWORD.match(block[0]) and len(block) == 1:
            entries.append([])
            continue
        if not entries:
            entries.append([])
        paragraph = _BRACES.sub("", " ".join(line.strip() for line in block))
        entries[-1].extend(_prose([paragraph]))
    return [entry for entry in entries if entry]


# --------------------------------------------------------------------------- fortunes


def fortunes(text: str) -> list[str]:
    """The fortunes of a fortune file (separated by lines holding '%'), attribution lines dropped."""
    items = []
    for item in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        lines = [line for line in item.splitlines() if not re.match(r"^\s*(--|—)\s*\S", line)]
        items.append(unescape(" ".join(line.strip() for line in lines)))
    return _prose(items, min_words=3)
