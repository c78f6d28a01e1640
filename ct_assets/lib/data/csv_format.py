"""How a CSV landing file is written: its separator and text encoding, declared and found.

A spec declares `source.delimiter` (default `,`) and `source.encoding` (`utf-8`, `latin-1` or
`utf-16`). Before a CSV is read, its first bytes are looked at: a file whose encoding or separator
is not the declared one is refused with one message naming the file, what it looks like and what
the spec expects, instead of surfacing later as missing columns or undecodable text.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

DELIMITERS = (",", ";", "\t", "|")
_SAMPLE_BYTES = 64 * 1024


class CsvFormatError(ValueError):
    """A CSV file whose separator or encoding is not the one its spec declares; names both."""


@dataclass(frozen=True)
class CsvFormat:
    delimiter: str = ","
    encoding: str = "utf-8"


DEFAULT_CSV = CsvFormat()


def describe(delimiter: str) -> str:
    return {"\t": "tab", ",": "','", ";": "';'", "|": "'|'"}.get(delimiter, repr(delimiter))


def sniff_encoding(head: bytes) -> str:
    """'utf-16' for a UTF-16 byte-order mark, 'utf-8' when the sample decodes as UTF-8, else 'latin-1'."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        # A multi-byte character may be cut at the end of the sample: the incremental decoder waits for it.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def sniff_delimiter(header: str) -> str | None:
    """The separator the header line uses most, or None for a header with none of them."""
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else None


def _header_line(head: bytes, encoding: str) -> str:
    text = head.decode(encoding, errors="replace")
    return text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""


def check(path: Path, expected: CsvFormat, columns: int) -> None:
    """Refuse a CSV whose encoding or separator differs from `expected` (a `CsvFormatError`)."""
    with path.open("rb") as handle:
        head = handle.read(_SAMPLE_BYTES)
    found_encoding = sniff_encoding(head)
    header = _header_line(head, found_encoding)
    found_delimiter = sniff_delimiter(header)
    problems = []
    # ASCII text is valid UTF-8 and Latin-1 alike; UTF-8 with other characters read as Latin-1 is garbled.
    if found_encoding != expected.encoding and not (found_encoding == "utf-8" and head.isascii()):
        problems.append(f"its encoding looks like {found_encoding}, the spec expects {expected.encoding}")
    fields = len(header.split(expected.delimiter))
    if columns > 1 and fields == 1 and found_delimiter and found_delimiter != expected.delimiter:
        problems.append(
            f"its header is separated by {describe(found_delimiter)}, "
            f"the spec expects {describe(expected.delimiter)}"
        )
    if problems:
        raise CsvFormatError(
            f"{path}: "
            + " and ".join(problems)
            + " (set source.delimiter / source.encoding in the spec, or rewrite the file)"
        )
