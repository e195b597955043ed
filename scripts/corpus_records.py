"""Prose from record collections, for scripts/build_corpus.py: SWORD modules, mail, World Factbook, OVOS data.

Each function turns files already read into memory into paragraphs of plain prose (or documents of them):

- SWORD Bible and commentary modules (zText/zCom and their '4' variants): zlib-compressed blocks
  found through a block index (*.bzs/*.czs), entries found through a verse index (*.bzv/*.czv),
  OSIS markup stripped, notes dropped.
- Mail messages (RFC 822): the text/plain body without headers, quoted lines, attributions,
  signatures and mailing-list footers.
- World Factbook country profiles (JSON): the free-text fields of at least a few words.
- Data files of OVOS voice-assistant skills: a cookbook's recipe steps (JSON), 'on this day' events.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import struct
import zlib
from html import unescape

from corpus_clean import collapse_whitespace

# --------------------------------------------------------------------------- SWORD modules


class SwordFormatError(ValueError):
    """A SWORD module whose index or blocks cannot be read."""


def sword_blocks(block_index: bytes, compressed: bytes) -> list[bytes]:
    """The decompressed blocks of a zText/zCom data file: the index holds (offset, size, raw size), 3 x u32 LE each."""
    blocks = []
    for start in range(0, len(block_index) - 11, 12):
        offset, size, _ = struct.unpack_from("<III", block_index, start)
        if size == 0:
            blocks.append(b"")
            continue
        try:
            blocks.append(zlib.decompress(compressed[offset : offset + size]))
        except zlib.error as error:
            raise SwordFormatError(f"block {len(blocks)}: {error}") from None
    return blocks


def _records(verse_index: bytes, width: int) -> list[tuple[int, int, int]]:
    """(block, offset, size) of each verse-index record: u32, u32 and a u16 (width 10) or u32 (width 12) size."""
    size_format = "<H" if width == 10 else "<I"
    return [
        struct.unpack_from("<II", verse_index, start) + struct.unpack_from(size_format, verse_index, start + 8)
        for start in range(0, len(verse_index) - width + 1, width)
    ]


def _misses(records: list[tuple[int, int, int]], blocks: list[bytes]) -> int:
    """How many non-empty records point outside their block."""
    return sum(1 for block, offset, size in records
               if size and (block >= len(blocks) or offset + size > len(blocks[block])))


def sword_record_width(verse_index: bytes, blocks: list[bytes]) -> int:
    """10 or 12: the verse-index record width that fits the blocks.

    The '4' drivers are documented with 32-bit sizes, but module files labelled zCom4 are seen with
    10-byte records, so the width is read off the data: of the widths that divide the file, the one
    whose records miss their blocks least (ties: 10).
    """
    widths = [w for w in (10, 12) if len(verse_index) % w == 0] or [10, 12]
    return min(widths, key=lambda w: (_misses(_records(verse_index, w), blocks), w))


def sword_entries(verse_index: bytes, blocks: list[bytes]) -> list[tuple[int, str]]:
    """(block number, text) of each distinct entry, in index order.

    Entries that several verses share (a comment on 'Verses 16-42') are kept once; records that point
    outside their block (seen for module and testament headings) are skipped.
    """
    entries, seen = [], set()
    for block, offset, size in _records(verse_index, sword_record_width(verse_index, blocks)):
        if size == 0 or (block, offset) in seen:
            continue
        if block >= len(blocks) or offset + size > len(blocks[block]):
            continue
        seen.add((block, offset))
        entries.append((block, blocks[block][offset : offset + size].decode("utf-8", errors="replace")))
    return entries


_OSIS_NOTE = re.compile(r"<note\b[^>]*?(?<!/)>.*?</note>", re.DOTALL)
_OSIS_BREAK = re.compile(r"<(?:/?(?:p|div|title|lg|list|item|chapter|head)\b|lb\b)[^>]*>|¶", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def osis_paragraphs(text: str) -> list[str]:
    """Plain paragraphs of OSIS (or ThML-like) markup: notes dropped, block tags as breaks, other tags stripped."""
    text = _OSIS_NOTE.sub(" ", text)
    paragraphs = []
    for piece in _OSIS_BREAK.split(text):
        piece = collapse_whitespace(unescape(_TAG.sub(" ", piece)))
        if piece:
            paragraphs.append(re.sub(r" ([,.;:!?’”)])", r"\1", piece))
    return paragraphs


def sword_documents(entries: list[tuple[int, str]]) -> list[tuple[int, list[str]]]:
    """(block number, paragraphs) per block: a block's entries joined in order, then cut into paragraphs.

    Entries are joined with a space, so a verse that runs on into the next stays one paragraph
    unless the markup breaks it.
    """
    by_block: dict[int, list[str]] = {}
    for block, text in entries:
        by_block.setdefault(block, []).append(text)
    return [(block, osis_paragraphs(" ".join(texts))) for block, texts in sorted(by_block.items())]


# --------------------------------------------------------------------------- mail


_ATTRIBUTION = re.compile(r"^(on .{0,200}wrote:?|.{0,100} (wrote|writes|said):)\s*$", re.IGNORECASE)
_FOOTER = re.compile(r"^(_{5,}|-{5,}|={5,}|\*{5,})\s*$")
_URL_LINE = re.compile(r"^\s*(<?https?://|www\.)\S+>?\s*$")
_FORWARD = re.compile(r"^-+\s*(original message|forwarded message|begin pgp signature)", re.IGNORECASE)
_PGP_HEADER = re.compile(r"^(-----BEGIN PGP SIGNED MESSAGE-----|Hash: \S+)$")


def mail_body(raw: bytes) -> str:
    """The first text/plain part of a message (decoded), or '' when it has none."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            charset = part.get_content_charset() or "latin-1"
            try:
                return payload.decode(charset, errors="replace")
            except LookupError:
                return payload.decode("latin-1")
    return ""


def mail_paragraphs(body: str) -> list[str]:
    """The author's own paragraphs of a mail body: quoted text, attributions, signature and footers dropped."""
    kept: list[str] = []
    for line in body.replace("\r\n", "\n").split("\n"):
        stripped = line.strip()
        if line.rstrip() == "--" or _FOOTER.match(stripped) or _FORWARD.match(stripped):
            break  # signature, list footer or forwarded copy: the rest is not the author's text
        if (stripped.startswith((">", "|")) or _ATTRIBUTION.match(stripped) or _URL_LINE.match(stripped)
                or _PGP_HEADER.match(stripped)):
            kept.append("")
            continue
        kept.append(stripped)
    paragraphs, current = [], []
    for line in kept + [""]:
        if line:
            current.append(line)
        elif current:
            paragraphs.append(collapse_whitespace(" ".join(current)))
            current = []
    return paragraphs


# --------------------------------------------------------------------------- World Factbook


def factbook_paragraphs(raw_json: str, min_words: int = 8) -> list[str]:
    """The free-text fields ("text" values) of a country profile with at least `min_words` words.

    Lists joined with ' ++ ' are cut there; each field is one paragraph.
    """
    paragraphs: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "text" and isinstance(item, str):
                    for piece in item.split("++"):
                        piece = collapse_whitespace(piece)
                        if len(piece.split()) >= min_words:
                            paragraphs.append(piece)
                else:
                    walk(item)

    walk(json.loads(raw_json))
    return paragraphs


# --------------------------------------------------------------------------- OVOS skill data


def recipe_documents(raw_json: str) -> list[tuple[str, list[str]]]:
    """(title, steps) of each recipe of a {page: {"title", "steps", ...}} cookbook; ingredient lists are not prose."""
    recipes = []
    for page, recipe in json.loads(raw_json).items():
        if isinstance(recipe, dict):
            steps = [collapse_whitespace(s) for s in recipe.get("steps") or [] if isinstance(s, str)]
            steps = [s for s in steps if s]
            if steps:
                recipes.append((str(page), steps))
    return recipes


_YEAR_PREFIX = re.compile(r"^\s*\d{1,4}(\s*(BC|BCE|AD))?\s+[-–]\s+")


def history_events(text: str) -> list[str]:
    """The events of an 'on this day' dialog file ('1492 - The crew ... attempt a mutiny.'), without the year prefix."""
    events = []
    for line in text.splitlines():
        if _YEAR_PREFIX.match(line):
            event = collapse_whitespace(_YEAR_PREFIX.sub("", line))
            if event:
                events.append(event)
    return events
