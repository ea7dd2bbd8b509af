"""PII and secret redaction before storage: mask personal data in every string of an event.

``Redactor`` masks emails, phone numbers (validated by ``phonenumbers``), card numbers
(Luhn and issuer checked, with spaces, dashes or dots, also after another digit group),
IBANs (any case, country length and mod-97 checked), SSNs, IP addresses, secrets (API keys
such as ``sk-``/``sk-ant-``/``AKIA``/``ghp_``, AWS secret keys, private keys, JWTs,
``password=…`` values), names from a configured list, names found by Presidio NER (the
``ner`` extra) and custom patterns from ``improver.yaml``'s ``redaction:`` section.

Every string is covered: the case's values *and keys*, the session id, config version,
reviewer, reasoning, precedent, conditions and citations, and quarantined raw lines;
integers that look like cards or phones are masked too. Free text gets ``[KIND]``;
identifiers and keys get ``[KIND:token]``, a keyed hash of the value (the key lives in
``.improver/redaction.key``), so ids stay stable across ingests and distinct from each other.

Speed: an event's strings are serialised together by one orjson call and checked once by a
screen built from C-speed byte operations (``bytes.translate`` maps digits and phone separators
to ``0``, then substring tests look for 10-long digit runs, grouped digits, ``@``, dotted quads
and secret keywords). An event the screen passes has nothing to mask and is returned as it is,
with no copy; only the rest goes through the compiled detectors string by string. Native JSON
lines are screened before that, as they were read (``Redactor.lines``): a line the screen passes
needs no look at its event's fields at all, which is most lines; with google-re2 (the ``fast``
extra) one RE2 search of a batch of lines (``PREFILTERS``) passes every line none of its matches touches. ``find`` reports
what a text holds without changing it: the final leak scan (``improver.leakscan``) uses it.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import hmac
import ipaddress
import itertools
import os
import re
import secrets
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from improver.errors import ProjectError, require
from improver.models import DecisionEvent, Event, Quarantined, ReviewEvent

BUILTIN_KINDS = ("email", "iban", "card", "ip", "phone", "ssn", "secret")
KEY_FILE = "redaction.key"
LETTERS = str.maketrans("0123456789", "ghijklmnop")  # tokens hold no digits, so no detector finds a number in them


class RedactionConfig(BaseModel):
    """The ``redaction:`` section of improver.yaml."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    kinds: list[str] = Field(default_factory=lambda: list(BUILTIN_KINDS), description="built-in detectors to run")
    names: list[str] = Field(default_factory=list, description="people's names to mask wherever they appear")
    patterns: dict[str, str] = Field(default_factory=dict, description="kind -> regular expression")
    phone_regions: list[str] = Field(default_factory=lambda: ["US"],
                                     description="regions whose national phone formats are recognised (ISO codes)")
    ner: bool = Field(False, description="also mask person names found by Presidio (pip install 'agent-improver[ner]')")
    leak_scan: bool = Field(True, description="refuse to write experiments, PRs, exports and MCP answers that "
                                              "still hold what these detectors find")

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        unknown = set(kinds) - set(BUILTIN_KINDS)
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)}; choose from {', '.join(BUILTIN_KINDS)}")
        return kinds

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: dict[str, str]) -> dict[str, str]:
        for kind, pattern in patterns.items():
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"pattern {kind!r} is not a valid regular expression: {error}") from None
        return patterns

    @field_validator("phone_regions")
    @classmethod
    def _regions(cls, regions: list[str]) -> list[str]:
        if [r.upper() for r in regions] == ["US"]:
            return ["US"]
        import phonenumbers

        unknown = [r for r in regions if r.upper() not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown phone regions {unknown}; use ISO 3166 codes such as US, GB, DE")
        return [r.upper() for r in regions]


# --- checks ------------------------------------------------------------------------
def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# IBAN length by country (ISO 13616 registry).
IBAN_LENGTHS = dict(
    AD=24, AE=23, AL=28, AT=20, AZ=28, BA=20, BE=16, BG=22, BH=22, BR=29, BY=28, CH=21, CR=22, CY=28, CZ=24,
    DE=22, DK=18, DO=28, EE=20, EG=29, ES=24, FI=18, FO=18, FR=27, GB=22, GE=22, GI=23, GL=18, GR=27, GT=28,
    HR=21, HU=28, IE=22, IL=23, IQ=23, IS=26, IT=27, JO=30, KW=30, KZ=20, LB=28, LC=32, LI=21, LT=20, LU=20,
    LV=21, MC=27, MD=24, ME=22, MK=19, MR=27, MT=31, MU=30, NL=18, NO=15, PK=24, PL=28, PS=29, PT=25, QA=29,
    RO=24, RS=22, SA=24, SC=31, SE=24, SI=19, SK=24, SM=27, ST=25, SV=28, TL=23, TN=24, TR=26, UA=29, VA=22,
    VG=24, XK=20)


def iban_valid(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def card_valid(digits: str) -> bool:
    """13–19 digits from a card issuer's range (2–6: Mastercard, Amex, Visa, Discover …), Luhn-valid."""
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


DECIMAL = re.compile(r"\d\.\d{5,}")


def decimal_edge(text: str, start: int, end: int) -> bool:
    """True when text[start:end] sits right after or before the point of a decimal number (12.4111…)."""
    return (start >= 2 and text[start - 1] == "." and text[start - 2].isdigit()) or \
           (end + 1 < len(text) and text[end] == "." and text[end + 1].isdigit())


def decimal_part(text: str, start: int, end: int) -> bool:
    """True when text[start:end] is cut from a decimal number (472.988281, a chart coordinate), not a phone."""
    return decimal_edge(text, start, end) or DECIMAL.search(text, max(0, start - 1), min(len(text), end + 1)) is not None


def ssn_valid(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


# Card layouts by digit-group lengths: 4-4-4-4(-1..3), Amex 4-6-5, Diners 4-6-4, or one unbroken group.
CARD_SHAPES = {(4, 4, 4, 4), (4, 4, 4, 4, 1), (4, 4, 4, 4, 2), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4)}
DAY, MONTH = r"(?:0?[1-9]|[12]\d|3[01])", r"(?:0?[1-9]|1[0-2])"
DATE = re.compile(rf"(?<!\d)(?:(?:19|20)\d\d[-/.]{MONTH}[-/.]{DAY}|{DAY}[-/.]{DAY}[-/.](?:19|20)\d\d)(?!\d)")
SSN = re.compile(r"(?<!\d)(\d{3})([- ])(\d{2})\2(\d{4})(?!\d)")
GROUP = re.compile(r"\d+")
EXTENSION = re.compile(r"(?i)x\d|ext")  # what may follow a phone's digits directly: x12, ext. 3
# A national number with its trunk prefix (030 1234 5678, 020 7946 0958) from a region not configured.
TRUNK_PHONE = re.compile(r"(?<![\d.])0\d{1,4}(?:[ /-]\d{2,5}){1,3}(?![\d.])")

# One pattern for every built-in kind: each alternative is a named group, checked by a function below.
SECRET_KEYWORDS = (r"password|passwd|passphrase|pwd|pass|secret|client[_-]?secret|api[_-]?key|apikey|access[_-]?key"
                   r"|secret[_-]?key|auth[_-]?token|access[_-]?token|private[_-]?key")
TOKENS = (r"sk-ant-[A-Za-z0-9_-]{16,}|sk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}"
          r"|(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}|gh[pousr]_[A-Za-z0-9_]{30,}|github_pat_[A-Za-z0-9_]{22,}"
          r"|xox[abprs]-[A-Za-z0-9-]{10,}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|glpat-[A-Za-z0-9_-]{20,}"
          r"|AIza[0-9A-Za-z_-]{35}|-----BEGIN[A-Z ]*PRIVATE KEY-----"
          r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}|(?i:bearer)\s+[A-Za-z0-9._~+/-]{20,}=*")
PARTS = {
    "email": r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    "keyword": rf"(?i:(?<![A-Za-z\[])(?:{SECRET_KEYWORDS})(?![A-Za-z])[\"']?\s*[:=]\s*)"
               r"(?:\"[^\"\n]*\"|'[^'\n]*'|[^\s,;\"'}\]]+)",
    "token": rf"(?<![\w-])(?:{TOKENS})",
    "awssecret": r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
    "iban": r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}",
    "ip": r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)|(?<![\w.:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w.:])",
    "digits": r"(?<!\d)(?:\+\d(?:[ ().-]{0,2}\d){7,}|\(?\d(?:[ ().-]{0,2}\d){8,})",
}
KIND_OF = {"email": "email", "keyword": "secret", "token": "secret", "awssecret": "secret", "iban": "iban",
           "ip": "ip", "digits": "digits"}


# The screen: text that shows none of these marks cannot hold a built-in kind. It works on
# bytes, whose translate and substring tests run at memory speed.
DIGIT_MARKS = bytes.maketrans(b"0123456789 ()/+\tE", b"0" * 16 + b"e")  # E as e: for EXPONENT in a line
ALNUM = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
TOKEN_MARKS = bytes.maketrans(ALNUM, b"a" * len(ALNUM))
DIGIT_RUNS = (b"0000000000", b"0-000", b"0.0000", b".0.", b".00.", b".000.")  # long and grouped digits, IPv4
TOKEN_RUN = b"a" * 20  # API keys, JWTs, bearer and AWS secret keys hold a long run of letters and digits
EXPONENT = b"0e0"  # 1e10, 2.5E+12: a number that has more digits once parsed than its JSON text shows


FAMILIES = {"email": ("email",), "secret": ("keyword", "token", "awssecret"), "digits": ("iban", "ip", "digits")}


def screen(text: str) -> tuple[bool, bool, bool]:
    """(may hold an email, a secret, a number-like kind), decided by byte translations and
    substring tests only (no regex over the text). False surely holds none of that kind."""
    if len(text) <= SHORT:
        return _screen_short(text)
    return screen_bytes(text.encode("utf-8", "surrogatepass"))


SHORT = 64


@functools.lru_cache(maxsize=1 << 14)
def _screen_short(text: str) -> tuple[bool, bool, bool]:
    """``screen`` of a short text, remembered: case keys, labels and citations repeat from event to event."""
    return screen_bytes(text.encode("utf-8", "surrogatepass"))


def screen_bytes(data: bytes) -> tuple[bool, bool, bool]:
    """``screen`` of UTF-8 bytes."""
    email = b"@" in data
    digits = data.translate(DIGIT_MARKS)
    numbers = b"::" in data or any(run in digits for run in DIGIT_RUNS)
    words = (b" " + data).translate(WORD_MARKS)  # a space before: a token prefix may open the text
    secret = (TOKEN_RUN in data.translate(TOKEN_MARKS) or AWS_RUN in data.translate(AWS_MARKS)
              or any(word in words for word in SECRET_WORDS))
    return email, secret, numbers


# Secret keywords, in the text with letters lowered and every other byte a space. A keyword the
# detector masks after ends its run of letters (password, api_key, apikey, secret_key, ...): so
# "key " but not "keys" or "keyboard", which would send an event to the detectors for nothing.
LETTERS_LOWERED = bytes(range(65, 91)) + bytes(range(97, 123))
WORD_MARKS = bytes.maketrans(bytes(range(256)), bytes(c | 32 if c in LETTERS_LOWERED else 32 for c in range(256)))
# Token prefixes there too, for tokens whose bodies may break every 20 characters with - _ or .
# (so no TOKEN_RUN): sk-/sk_live_/sk-ant-, rk_, gh?_ and github_pat_, xox?-, glpat-, AIza, JWTs, bearer.
TOKEN_PREFIXES = (b" sk ", b" rk ", b" gh", b" xox", b" glpat ", b" aiza", b" eyj", b" bearer ")
SECRET_WORDS = (b"pass", b"pwd ", b"secret ", b"key ", b"token ") + TOKEN_PREFIXES
AWS_MARKS = bytes.maketrans(ALNUM + b"/+", b"a" * (len(ALNUM) + 2))  # an AWS secret key: 40 of these
AWS_RUN = b"a" * 40


def flagged_pieces(lines: list[bytes], json: bool = True) -> set[int]:
    """``flagged_lines``, found by screening each distinct piece between double quotes once:
    what lines of JSON hold repeats itself (keys, labels, citations, notes).

    No screen mark holds a double quote, and a quote is a space to the keyword marks: a mark
    in a line lies in one piece with the quote after it (a keyword ends in the space the quote
    becomes), so a line is flagged exactly when one of its pieces is.

    With google-re2 installed (``pip install 'agent-improver[fast]'``), one search of the batch for
    every mark at once (``PREFILTERS``) comes first: only the lines its matches touch are screened
    (a line no match touches holds no mark), so a batch of clean lines costs that one search."""
    prefilter = PREFILTERS.get(json)
    if prefilter is not None:
        touched = _touched(prefilter, lines)
        return {touched[i] for i in _flagged_pieces([lines[i] for i in touched], json)} if touched else set()
    return _flagged_pieces(lines, json)


def _flagged_pieces(lines: list[bytes], json: bool) -> set[int]:
    split = [line.split(b'"') for line in lines]
    quoted = list({piece for pieces in split for piece in pieces[:-1]})  # each followed by a quote
    ends = list({pieces[-1] for pieces in split})
    marked = {quoted[i] for i in flagged_lines([piece + b'"' for piece in quoted], json)}
    marked_ends = {ends[i] for i in flagged_lines(ends, json)}
    return {index for index, pieces in enumerate(split) if pieces[-1] in marked_ends or not marked.isdisjoint(pieces[:-1])}


def _touched(prefilter, lines: list[bytes]) -> list[int]:
    """The indexes, in order, of the lines that a match of ``prefilter`` over them all (joined by
    newlines) overlaps. A line holding a mark is one of them: the search finds the leftmost match
    at or after the previous one's end, so a match overlaps the mark's line before passing it (a
    match that ends in a line's newline leaves the next line whole: the marks that want a letter
    not before them also match at a line's start)."""
    ends = list(itertools.accumulate(len(line) + 1 for line in lines))  # just past each line's newline
    touched: list[int] = []
    for match in prefilter.finditer(b"\n".join(lines)):
        first = bisect.bisect_right(ends, match.start())
        if touched and touched[-1] >= first:
            first = touched[-1] + 1
        touched += range(first, min(bisect.bisect_right(ends, max(match.end() - 1, match.start())), len(lines) - 1) + 1)
    return touched


def _prefilter(json: bool):
    """Every screen mark (``SCREEN_MARKS``, and ``JSON_MARKS`` with ``json``) as one RE2 pattern over
    the bytes as they are, each translation written as the classes of bytes it maps onto a mark's
    bytes: a text it finds nothing in holds no mark. RE2 runs it in one linear pass (a DFA), where
    ``re`` tries every alternative at every byte. Found across two lines, or a keyword before the
    newline that ends a line, it finds a little more than the marks: those lines are screened as
    before. None without google-re2."""
    try:
        import re2
    except ImportError:
        return None
    digit, other = r"[0-9 ()/+\t]", "[^A-Za-z]"  # DIGIT_MARKS' "0"; WORD_MARKS' space (a line starts after one)
    marks = [r"@", r"::", digit + "{10}", digit + "-" + digit + "{3}", digit + r"\." + digit + "{4}",
             r"\." + digit + r"{1,3}\.", "(?i:pass)", "(?i:pwd|secret|key|token)" + other,
             f"(?:(?m:^)|{other})(?i:sk|rk|glpat|bearer){other}", f"(?:(?m:^)|{other})(?i:gh|xox|aiza|eyj)",
             "[A-Za-z0-9]{20}", "[A-Za-z0-9/+]{40}"]
    if json:
        marks += [r"\\", digit + "[eE]" + digit]  # a backslash, a number in exponent form
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1  # a byte is a character: any bytes, ASCII case folding
    return re2.compile("|".join(marks).encode(), options)


PREFILTERS = {json: _prefilter(json) for json in (True, False)}


def line_passes(raw: bytes) -> bool:
    """True when a native JSON line (UTF-8) surely holds nothing to mask (``flagged_lines``)."""
    return not flagged_lines([raw])


# What the screen looks for: (translation or None for the bytes as they are, marks in it).
SCREEN_MARKS = ((None, (b"@", b"::")), (DIGIT_MARKS, DIGIT_RUNS), (WORD_MARKS, SECRET_WORDS), (TOKEN_MARKS, (TOKEN_RUN,)),
                (AWS_MARKS, (AWS_RUN,)))
JSON_MARKS = ((None, (b"\\",)), (DIGIT_MARKS, (EXPONENT,)))  # what a JSON line may hide from it


def flagged_lines(lines: list[bytes], json: bool = True) -> set[int]:
    """The indexes of the lines (UTF-8, no newline inside) that ``screen_bytes`` does not pass;
    with ``json`` (native JSON lines), also those with a backslash (``\\u0040`` is an ``@``,
    ``\\/`` a slash) or a number in exponent form (``1e10`` is ten digits once parsed).

    Every string, key and number of the event parsed from a JSON line that passes is written
    out in it as it is, and the screen of a longer text flags whatever the screen of a part of
    it flags (what the line holds beside the event, JSON keys and punctuation, can only flag it
    too): so the event screen would pass that event and each of its strings, and ``event``
    would return it as it is. The lines are
    screened together, one translation and one search a mark over them all, joined by newlines:
    a hit flags its line (unless it ends in the newline after it, as a keyword's space may) and
    the search goes on after that line."""
    starts = [0, *itertools.accumulate(len(line) + 1 for line in lines)]  # where each line's newline is
    text = b"\n" + b"\n".join(lines)  # each line after a newline, as screen_bytes puts a space before a text
    flagged: set[int] = set()
    translated: dict = {None: text}  # each translation made once (the JSON marks reuse the digit one)
    for table, marks in SCREEN_MARKS + (JSON_MARKS if json else ()):
        if table not in translated:
            translated[table] = text.translate(table)
        haystack = translated[table]
        for mark in marks:
            at = haystack.find(mark)
            while at != -1:
                line = bisect.bisect_right(starts, at) - 1
                if at + len(mark) > starts[line + 1]:  # ends in the next line's newline (a keyword's space)
                    at = haystack.find(mark, at + 1)
                    continue
                flagged.add(line)
                at = haystack.find(mark, starts[line + 1]) if line + 1 < len(lines) else -1
    return flagged


def might_hold(text: str) -> bool:
    """False when ``text`` surely holds nothing a built-in detector finds; True means: look closer."""
    return any(screen(text))


def compile_detectors(kinds: set[str]) -> list[re.Pattern | None]:
    """One compiled pattern per family (email, secret, numbers), None for a family not asked for."""
    out = []
    for names in FAMILIES.values():
        parts = [f"(?P<{name}>{PARTS[name]})" for name in names
                 if KIND_OF[name] in kinds or (name == "digits" and kinds & {"card", "phone", "ssn"})]
        out.append(re.compile("|".join(parts)) if parts else None)
    return out


class Redactor:
    """Masks PII in strings and, recursively, in events; ``counts`` says what it masked by kind."""

    def __init__(self, config: RedactionConfig | None = None, key: bytes | None = None):
        self.config = config or RedactionConfig()
        self.key = key or secrets.token_bytes(32)
        self.counts: Counter = Counter()
        self.kinds = set(self.config.kinds)
        self.detectors = compile_detectors(self.kinds)
        self.extra: list[tuple[str, re.Pattern]] = [(kind, re.compile(p)) for kind, p in self.config.patterns.items()]
        names = sorted({n.strip() for n in self.config.names if n.strip()}, key=len, reverse=True)
        if names:
            alternatives = "|".join(r"[\s._-]+".join(map(re.escape, name.split())) for name in names)
            self.extra.append(("name", re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)))
        self.ner = require("presidio_analyzer", "redaction.ner (person names found by NER)", "ner").AnalyzerEngine() \
            if self.config.ner else None
        self.regions = self.config.phone_regions
        self._keyed = False
        self._found: list | None = None

    @classmethod
    def from_project(cls, project) -> "Redactor | None":
        """The project's redactor (keyed by its ``.improver/redaction.key``), or None when disabled."""
        config = redaction_config(project)
        return cls(config, project_key(project)) if config.enabled else None

    # --- strings -----------------------------------------------------------------------
    def text(self, value: str, keyed: bool = False) -> str:
        """``value`` with everything found masked: ``[KIND]``, or ``[KIND:token]`` when ``keyed``."""
        self._keyed = keyed
        for wanted, detector in zip(screen(value), self.detectors):
            if wanted and detector is not None:
                value = detector.sub(self._replace, value)
        for kind, pattern in self.extra:
            value = pattern.sub(lambda m, kind=kind: self._mask(kind, m.group()), value)
        if self.ner is not None and any(c.isupper() for c in value):
            value = self._names(value)
        return value

    def find(self, value: str) -> Counter:
        """What ``value`` holds, by kind, without masking it (for the leak scan)."""
        self._found = []
        try:
            self.text(value)
            return Counter(self._found)
        finally:
            self._found = None

    def _mask(self, kind: str, original: str) -> str:
        if self._found is not None:
            self._found.append(kind)
            return original
        self.counts[kind] += 1
        if not self._keyed:
            return f"[{kind.upper()}]"
        token = hmac.new(self.key, original.encode(), hashlib.sha256).hexdigest()[:12].translate(LETTERS)
        return f"[{kind.upper()}:{token}]"

    def _replace(self, match: re.Match) -> str:
        name, text = match.lastgroup, match.group()
        if name == "digits":
            end = match.end()
            return self._digits(text, match.string[match.start() - 1] if match.start() else " ",
                                match.string[end:end + 3] or " ")
        if name == "email":
            return self._mask("email", text)
        if name == "keyword":
            head = re.match(rf"(?i)(?:{SECRET_KEYWORDS})[\"']?\s*[:=]\s*", text).group()
            value = text[len(head):]
            if value.strip("\"'").startswith("[") or not value.strip("\"'"):
                return text  # already masked, or empty
            return head + self._mask("secret", value)
        if name == "token":
            return self._mask("secret", text)
        if name == "awssecret":
            classes = (any(c.isupper() for c in text), any(c.islower() for c in text), any(c.isdigit() for c in text))
            return self._mask("secret", text) if all(classes) else text
        if name == "iban":
            return self._iban(text)
        if name == "ip":
            try:
                ipaddress.ip_address(text)
            except ValueError:
                return text
            return self._mask("ip", text)
        return text

    def _iban(self, text: str) -> str:
        length = IBAN_LENGTHS.get(text[:2].upper())
        if "iban" not in self.kinds or length is None:
            return text
        taken, end = 0, 0
        for end, char in enumerate(text, start=1):
            taken += char != " "
            if taken == length:
                break
        if taken == length and iban_valid(text[:end]):
            return self._mask("iban", text[:end]) + text[end:]
        return text

    def _digits(self, run: str, before: str, after: str = " ") -> str:
        """Mask the SSNs, cards and phones in a run of digit groups (dates inside it are kept).
        A run glued to a letter on either side is part of an identifier (a hash such as
        6805765515dca7cf, 3603274439ed0a6c or 7e21974492706693, a key), not a phone nor a card;
        an extension (x12, ext. 3) may follow a phone. ``after``: the few characters after the run."""
        spans: list[tuple[int, int, str]] = []
        taken = [False] * len(run)

        def claim(start: int, end: int, kind: str) -> None:
            spans.append((start, end, kind))
            taken[start:end] = [True] * (end - start)

        for date in DATE.finditer(run):
            taken[date.start():date.end()] = [True] * (date.end() - date.start())
        if "ssn" in self.kinds:
            for m in SSN.finditer(run):
                if not any(taken[m.start():m.end()]) and ssn_valid(m.group(1), m.group(3), m.group(4)):
                    claim(m.start(), m.end(), "ssn")
        if "card" in self.kinds and not (before.isalpha() or after[:1].isalpha()):  # not inside a word (7e21974492706693, a hash)
            groups = [g for g in GROUP.finditer(run) if not any(taken[g.start():g.end()])]
            for i in range(len(groups)):
                for j in range(min(len(groups), i + 5), i, -1):
                    window = groups[i:j]
                    if any(taken[g.start()] for g in window):
                        continue
                    shape = tuple(len(g.group()) for g in window)
                    digits = "".join(g.group() for g in window)
                    unbroken = len(window) == 1 and 13 <= shape[0] <= 19
                    if unbroken and decimal_edge(run, window[0].start(), window[0].end()):
                        continue  # the fraction (or whole part) of a decimal number, e.g. a float in a manifest
                    if (shape in CARD_SHAPES or unbroken) and card_valid(digits):
                        claim(window[0].start(), window[-1].end(), "card")
                        break
        glued = before.isalnum() or before in "_-." or after[:1] == "_" or (after[:1].isalpha() and not EXTENSION.match(after))
        if "phone" in self.kinds and not glued and not all(taken):
            import phonenumbers

            free = "".join(" " if t else c for c, t in zip(run, taken))
            for region in self.regions:
                for m in phonenumbers.PhoneNumberMatcher(free, region, leniency=phonenumbers.Leniency.VALID):
                    if not any(taken[m.start:m.end]) and not decimal_part(free, m.start, m.end):
                        claim(m.start, m.end, "phone")
            for m in TRUNK_PHONE.finditer(free):
                if not any(taken[m.start():m.end()]) and 9 <= sum(c.isdigit() for c in m.group()) <= 12:
                    claim(m.start(), m.end(), "phone")
        if not spans:
            return run
        out, last = [], 0
        for start, end, kind in sorted(spans):
            out += [run[last:start], self._mask(kind, run[start:end])]
            last = end
        return "".join(out) + run[last:]

    def _names(self, value: str) -> str:
        found = self.ner.analyze(text=value, entities=["PERSON"], language="en")
        for hit in sorted(found, key=lambda r: r.start, reverse=True):
            value = value[:hit.start] + self._mask("name", value[hit.start:hit.end]) + value[hit.end:]
        return value

    def number(self, value: int | float) -> Any:
        """An integer that reads as a card or a phone becomes its mask; other numbers stay."""
        if isinstance(value, bool) or (isinstance(value, float) and not (value.is_integer() and abs(value) >= 1e8)):
            return value
        digits = str(abs(int(value)))
        if len(digits) < 9:
            return value
        masked = self.text(digits)
        return masked if masked != digits else value

    # --- events ------------------------------------------------------------------------
    def value(self, value: Any, keyed: bool = False) -> Any:
        """A JSON value with every string (dict keys too, keyed) masked; the same object when nothing changed."""
        if isinstance(value, str):
            return self.text(value, keyed)
        if isinstance(value, dict):
            changed, out = False, {}
            for key, item in value.items():
                new_key = self.text(key, True) if isinstance(key, str) else key
                new_item = self.value(item, keyed)
                changed = changed or new_key is not key and new_key != key or new_item is not item
                out[new_key] = new_item
            return out if changed else value
        if isinstance(value, list):
            items = [self.value(item, keyed) for item in value]
            return items if any(a is not b for a, b in zip(items, value)) else value
        if isinstance(value, (int, float)):
            return self.number(value)
        return value

    def _same(self, old: Any, new: Any) -> bool:
        return old is new or old == new

    def _passes(self, value: Any) -> bool:
        """True when the screen shows ``value`` (an item's fields, a case, a list) holds nothing to
        mask: the common case, decided fast."""
        if self.extra or self.ner is not None:
            return False
        try:
            text = _screen_text(value)
        except TypeError:  # not JSON-serialisable (orjson.JSONEncodeError is a TypeError): look closer
            return False
        return b"\\" not in text and not any(screen_bytes(text))

    def _nested(self, value: Any, keyed: bool = False) -> Any:
        """``value`` of a case or a list, skipping the walk through it when its screen passes."""
        return value if self._passes(value) else self.value(value, keyed)

    def event(self, item: Event | Quarantined) -> Event | Quarantined:
        """The item with every string masked; the item itself when nothing needed masking."""
        if self._passes(_fields(item)):
            return item
        if isinstance(item, Quarantined):
            fields = {"raw": self.text(item.raw), "reason": self.text(item.reason), "source": self.text(item.source)}
        elif isinstance(item, DecisionEvent):
            fields = {"session_id": self.text(item.session_id, True), "case": self._nested(item.case),
                      "decision": self.text(item.decision, True), "confidence": self.value(item.confidence, True),
                      "reasoning": self.text(item.reasoning), "cited": self._nested(item.cited, True),
                      "config_version": self.value(item.config_version, True), "ts": self.value(item.ts)}
        else:
            assert isinstance(item, ReviewEvent)
            fields = {"session_id": self.text(item.session_id, True), "reviewer": self.text(item.reviewer, True),
                      "decision": self.text(item.decision, True), "reasoning": self.text(item.reasoning),
                      "precedent": self.value(item.precedent, True), "conditions": self._nested(item.conditions),
                      "ts": self.value(item.ts), "confidence": self.value(item.confidence, True)}
        update = {name: new for name, new in fields.items() if not self._same(getattr(item, name), new)}
        return item.model_copy(update=update) if update else item

    def events(self, items: Iterable[Event | Quarantined]) -> Iterator[Event | Quarantined]:
        for item in items:
            yield self.event(item)

    def lines(self, pairs: Iterable[tuple[Event | Quarantined, bytes | None]]) -> Iterator[Event | Quarantined]:
        """``events`` of (item, the JSON line it was parsed from, or None) pairs: an item whose line
        passes ``line_passes`` is returned as it is without looking at its fields (the same item
        ``event`` returns); the rest go through ``event``."""
        if self.extra or self.ner is not None:
            yield from self.events(item for item, _ in pairs)
            return
        for batch in _batches(pairs):
            flagged = flagged_pieces([raw or b"\\" for _, raw in batch])
            for index, (item, _) in enumerate(batch):
                yield self.event(item) if index in flagged else item


def screened(source, redactor: Redactor | None) -> Iterator[Event | Quarantined]:
    """A trace source's events with PII masked (as they are, without a redactor): a native JSONL
    source's lines are screened as read (``Redactor.lines``), other sources' events field by field."""
    if redactor is None:
        return source.events()
    if hasattr(source, "lines"):
        return redactor.lines(source.lines())
    return redactor.events(source.events())


LINE_BATCH = 1024  # lines screened together: the searches' set-up and repeated pieces are shared, few lines wait


def _batches(items: Iterable) -> Iterator[tuple]:
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, LINE_BATCH)):
        yield batch


def _fields(item: Event | Quarantined) -> tuple:
    """Every value of an item that redaction looks at."""
    if isinstance(item, Quarantined):
        return item.raw, item.reason, item.source
    if isinstance(item, DecisionEvent):
        return (item.session_id, item.decision, item.confidence, item.reasoning, item.config_version, item.ts,
                item.case, item.cited)
    return (item.session_id, item.reviewer, item.decision, item.reasoning, item.precedent, item.ts, item.confidence,
            item.conditions)


def _screen_text(value: Any) -> bytes:
    """Every string in ``value`` (keys and numbers too) in one UTF-8 text, by one orjson call, for the screen.

    Each string appears as it is, between quotes, unless JSON escapes a character of it (a quote,
    a backslash, a control character): the character an escape stands for may be a mark (a tab)
    or open one (a newline before ``sk-``), so a text with a backslash is not screened as one
    (``_passes``) and its strings are screened one by one. Numbers print as Python prints them
    (orjson writes floats the same shortest way)."""
    return orjson.dumps(value)


def redaction_config(project) -> RedactionConfig:
    try:
        return RedactionConfig.model_validate(project.config.redaction or {})
    except ValidationError as error:
        problems = "; ".join(f"redaction.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ProjectError(f"{project.root / 'improver.yaml'}: {problems}") from None


def project_key(project) -> bytes:
    """The project's redaction key (made once, readable by the owner only): keyed tokens stay stable."""
    path = Path(project.data_dir) / KEY_FILE
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(32))
    key = path.read_bytes()
    if len(key) < 16:
        raise ProjectError(f"{path} is damaged (too short); delete it only if you will re-ingest every trace, "
                           "since masked ids change with the key")
    return key
