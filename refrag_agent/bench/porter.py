"""The Porter stemmer, as LoCoMo's F1 applies it (NLTK's ``PorterStemmer()``, default mode).

Our own implementation, so the benchmark needs no NLTK: Porter's 1980 algorithm
(steps 1a to 5b), with the departures NLTK's default mode makes: words of one or two
letters are kept, a handful of irregular words map directly, ``ies``/``ied`` keep their
``e`` in four-letter words, ``y`` becomes ``i`` only after a consonant that is not the
first letter, and step 2 adds ``bli``, ``logi``, ``fulli``, ``lessli`` and the ``alli``
rewrite. Rules are checked longest suffix first; when the longest match's condition
fails, the step does nothing (Porter's rule, not "try the next suffix").
"""

from __future__ import annotations

from collections.abc import Callable

_IRREGULAR = {
    "skies": "sky",
    "sky": "sky",
    "dying": "die",
    "lying": "lie",
    "tying": "tie",
    "news": "news",
    "innings": "inning",
    "inning": "inning",
    "outings": "outing",
    "outing": "outing",
    "cannings": "canning",
    "canning": "canning",
    "howe": "howe",
    "proceed": "proceed",
    "exceed": "exceed",
    "succeed": "succeed",
}

_VOWELS = frozenset("aeiou")


def _consonant(word: str, i: int) -> bool:
    if word[i] in _VOWELS:
        return False
    if word[i] == "y":  # a y after a consonant is a vowel; at the start, a consonant
        return i == 0 or not _consonant(word, i - 1)
    return True


def _measure(stem: str) -> int:
    """m in [C](VC)^m[V]: how many vowel-consonant sequences the stem has."""
    forms = "".join("c" if _consonant(stem, i) else "v" for i in range(len(stem)))
    return forms.count("vc")


def _has_vowel(stem: str) -> bool:
    return any(not _consonant(stem, i) for i in range(len(stem)))


def _double_consonant(word: str) -> bool:
    return len(word) >= 2 and word[-1] == word[-2] and _consonant(word, len(word) - 1)


def _cvc(word: str) -> bool:
    """Ends consonant-vowel-consonant, the last not w, x or y (*o)."""
    return (
        len(word) >= 3
        and _consonant(word, len(word) - 3)
        and not _consonant(word, len(word) - 2)
        and _consonant(word, len(word) - 1)
        and word[-1] not in "wxy"
    )


Rule = tuple[str, str, Callable[[str], bool] | None]


def _apply(word: str, rules: list[Rule]) -> str:
    """The first (longest) suffix that matches decides; its condition is on the stem."""
    for suffix, replacement, condition in rules:
        if word.endswith(suffix):
            stem = word[: len(word) - len(suffix)]
            if condition is None or condition(stem):
                return stem + replacement
            return word
    return word


def _m_gt(n: int) -> Callable[[str], bool]:
    return lambda stem: _measure(stem) > n


def _step1a(word: str) -> str:
    if word.endswith("ies") and len(word) == 4:
        return word[:-3] + "ie"
    return _apply(
        word, [("sses", "ss", None), ("ies", "i", None), ("ss", "ss", None), ("s", "", None)]
    )


def _step1b(word: str) -> str:
    if word.endswith("ied"):
        return word[:-3] + ("ie" if len(word) == 4 else "i")
    if word.endswith("eed"):
        stem = word[:-3]
        return stem + "ee" if _measure(stem) > 0 else word
    for suffix in ("ed", "ing"):
        if word.endswith(suffix) and _has_vowel(word[: -len(suffix)]):
            stem = word[: -len(suffix)]
            break
    else:
        return word
    if stem.endswith(("at", "bl", "iz")):
        return stem + "e"
    if _double_consonant(stem) and stem[-1] not in "lsz":
        return stem[:-1]
    if _measure(stem) == 1 and _cvc(stem):
        return stem + "e"
    return stem


def _step1c(word: str) -> str:
    if word.endswith("y") and len(word) > 2 and _consonant(word, len(word) - 2):
        return word[:-1] + "i"
    return word


def _step2(word: str) -> str:
    if word.endswith("alli") and _measure(word[:-4]) > 0:
        return _step2(word[:-4] + "al")
    m0 = _m_gt(0)
    rules: list[Rule] = [
        ("ational", "ate", m0),
        ("tional", "tion", m0),
        ("enci", "ence", m0),
        ("anci", "ance", m0),
        ("izer", "ize", m0),
        ("bli", "ble", m0),
        ("alli", "al", m0),
        ("entli", "ent", m0),
        ("eli", "e", m0),
        ("ousli", "ous", m0),
        ("ization", "ize", m0),
        ("ation", "ate", m0),
        ("ator", "ate", m0),
        ("alism", "al", m0),
        ("iveness", "ive", m0),
        ("fulness", "ful", m0),
        ("ousness", "ous", m0),
        ("aliti", "al", m0),
        ("iviti", "ive", m0),
        ("biliti", "ble", m0),
        ("fulli", "ful", m0),
        ("lessli", "less", m0),
        ("logi", "log", lambda stem: _measure(stem + "l") > 0),
    ]
    return _apply(word, sorted(rules, key=lambda r: -len(r[0])))


def _step3(word: str) -> str:
    m0 = _m_gt(0)
    rules: list[Rule] = [
        ("icate", "ic", m0),
        ("ative", "", m0),
        ("alize", "al", m0),
        ("iciti", "ic", m0),
        ("ical", "ic", m0),
        ("ful", "", m0),
        ("ness", "", m0),
    ]
    return _apply(word, sorted(rules, key=lambda r: -len(r[0])))


def _step4(word: str) -> str:
    m1 = _m_gt(1)
    suffixes: tuple[str, ...] = (
        "al",
        "ance",
        "ence",
        "er",
        "ic",
        "able",
        "ible",
        "ant",
        "ement",
        "ment",
    )
    suffixes += ("ent", "ou", "ism", "ate", "iti", "ous", "ive", "ize")
    rules: list[Rule] = [(s, "", m1) for s in suffixes]
    rules.append(("ion", "", lambda stem: _measure(stem) > 1 and stem.endswith(("s", "t"))))
    return _apply(word, sorted(rules, key=lambda r: -len(r[0])))


def _step5(word: str) -> str:
    if word.endswith("e"):
        stem = word[:-1]
        m = _measure(stem)
        if m > 1 or (m == 1 and not _cvc(stem)):
            word = stem
    if word.endswith("ll") and _measure(word[:-1]) > 1:
        word = word[:-1]
    return word


def stem(word: str) -> str:
    """The Porter stem of ``word``, lower-cased."""
    word = word.lower()
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) <= 2:
        return word
    for step in (_step1a, _step1b, _step1c, _step2, _step3, _step4, _step5):
        word = step(word)
    return word
