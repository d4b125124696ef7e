"""Banned terms: does a text use a term the brand kit or the server's policy list forbids?

Pure, no I/O. A term matches as whole words, wherever it appears in a text, however the text
dresses it up:

- case and Unicode forms do not matter: both sides are NFKC-normalised and case-folded, and
  accents are dropped (`ＣＨＥＡＰＥＳＴ`, `Cheapest`, `chéapest` are `cheapest`);
- invisible format characters (zero-width spaces and joiners, soft hyphens) are removed, so
  `chea\\u200bpest` is `cheapest`;
- words are runs of letters and digits; anything else between them (spaces, punctuation,
  underscores, line breaks, repeated) only separates them, so the phrase `best price` matches
  `best   price`, `best-price`, `BEST_PRICE` and `best. price`;
- a term never matches inside a longer word: `miracle` does not match `miracles` or
  `nonmiracle`, `cheap` does not match `cheapest`.

What it cannot see: words spelt out with letters apart (`c h e a p`), digits for letters
(`ch3ap`), look-alike letters of other scripts (a Cyrillic `а` in `cheаp`). A banned-terms
list is a brand rule, not a content filter.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> tuple[str, ...]:
    """The words of `text` as matching compares them: NFKC, case-folded, accents and
    invisible format characters dropped, split on anything that is not a letter or digit."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFKD", folded)
    kept = "".join(c for c in decomposed if unicodedata.category(c) not in ("Mn", "Cf"))
    return tuple(_WORD.findall(unicodedata.normalize("NFC", kept)))


@dataclass(frozen=True)
class BannedTerms:
    """A compiled list of banned terms, each kept as written (for messages) and as its words."""

    terms: tuple[tuple[str, tuple[str, ...]], ...]

    @classmethod
    def of(cls, terms: Iterable[str]) -> BannedTerms:
        """Compile `terms`; a term with no letter or digit can match nothing and is left out."""
        return _compiled(tuple(terms))

    def first_in(self, text: str) -> str | None:
        """The first term of the list (as written) that `text` uses, or None."""
        if not self.terms or not text:
            return None
        found = words(text)
        joined = " " + " ".join(found) + " "
        for written, term_words in self.terms:
            if " " + " ".join(term_words) + " " in joined:
                return written
        return None

    def __bool__(self) -> bool:
        return bool(self.terms)


@lru_cache(maxsize=64)
def _compiled(terms: tuple[str, ...]) -> BannedTerms:
    compiled = [(term, words(term)) for term in terms]
    return BannedTerms(tuple((term, w) for term, w in compiled if w))


@dataclass(frozen=True)
class Violation:
    """A banned term found: which `term` (as written in its list), in which `field` of the
    request, and whose list (`source`: "the brand kit of <brand>" or "the server's policy")."""

    term: str
    field: str
    source: str

    @property
    def message(self) -> str:
        return (
            f"{self.field} uses the banned term {self.term!r} ({self.source}); "
            "rephrase it without that term"
        )


def first_violation(
    texts: Mapping[str, str | None], lists: Mapping[str, BannedTerms]
) -> Violation | None:
    """The first banned term in `texts` (field → text), checking each field against each list
    (source → terms) in the order given, or None when every text is clean."""
    for field, text in texts.items():
        if not text:
            continue
        for source, banned in lists.items():
            term = banned.first_in(text)
            if term is not None:
                return Violation(term=term, field=field, source=source)
    return None
