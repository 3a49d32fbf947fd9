"""Text normalisation and tokenisation for WER/CER.

Two flavours:

``flavor="evalkit"`` reproduces Kimi-Audio-Evalkit / SA-MAP exactly (``remove_sp``, then per language:
``en`` Whisper's English normaliser *followed by* the basic normaliser, ``zh`` the Chinese text normaliser,
``yue`` zhconv to simplified then basic, anything else basic; then sacrebleu's ``zh`` tokenizer, lower case,
punctuation-only tokens dropped). Language codes are taken literally, as the reference does: ``en-US`` or ``cmn``
take the basic path.

``flavor="samp"`` (default) differs on purpose:

* English goes through the English normaliser only. The reference's extra basic pass is an if/if/else slip that
  turns remaining symbols into spaces (``3.5`` -> ``3 5``, ``$`` dropped), so a hypothesis is penalised for
  characters the English normaliser meant to keep.
* Language tags are read by their primary subtag (``en-US`` -> ``en``; ``cmn``, ``zh-CN`` -> ``zh``), so a
  manifest's BCP-47 tag does not silently switch the normaliser.
* English keypad and connective symbols are read as spoken before the English normaliser, which would drop them:
  a free-standing ``*`` is "star", ``#`` is "pound" ("number" before a digit), ``&`` is "and" (the telephone
  prompts of Asterisk-en say "press * to ..." where a transcript writes "press star"); dotted initialisms are
  joined ("A.M." = "AM") and a hyphen after a prefix is dropped ("De-activated" = "deactivated", "re-record" =
  "rerecord"), which it would split.
* After it, digits read one by one are joined into one number whether written as digits or words ("5 5" =
  "five five" = "55", "9 1 1" = "nine one one" = "911"; Whisper's normaliser joins only the words), and closed and
  open spellings of the same compound are unified (:data:`SPELLING_VARIANTS`: "touchtone"/"touch tone",
  "voicemail"/"voice mail", "cannot"/"can not", "login"/"log in", "thru"/"through"...), both of which the
  Asterisk-en references or Whisper use for the same spoken words.

Whisper's English normaliser already reads numerals both ways ("ten of clubs" = "10 of clubs", "fortieth" =
"40th"), expands contractions ("you're" = "you are") and titles ("Mr." = "mister"), splits hyphenated words
("ill-disposed" = "ill disposed") and drops ``[..]``/``(..)``/``<..>`` annotations. What no normaliser can fix is
left to the scores: letter names ("c" heard as "See") and disfluencies kept in a reference.

Chinese is scored per character (every CJK character is a token) in both flavours, while Latin words inside
Chinese text stay words, as in the reference.
"""
from __future__ import annotations

import functools
import re
import unicodedata

from samp.eval.chinese import normalize_chinese

FLAVORS = ("samp", "evalkit")

_TAG = re.compile(r"<\|.*?\|>")
_WHITESPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r" ?([!,.?;:])")
_STAR = re.compile(r"(?<!\S)\*(?!\S)")
_POUND = re.compile(r"(?<!\S)#(?!\S)")
_NUMBER_SIGN = re.compile(r"#(?=\d)")
_AMPERSAND = re.compile(r"&")
_INITIALISM = re.compile(r"(?<![A-Za-z0-9.])(?:[A-Za-z]\.){2,}")
_PREFIX_HYPHEN = re.compile(r"\b(co|de|non|pre|re|un)-(?=[a-z])", re.IGNORECASE)
SPELLING_VARIANTS = {
    "touchtone": "touch tone", "filename": "file name", "voicemail": "voice mail", "thru": "through",
    "xray": "x ray", "cannot": "can not", "login": "log in", "blacklist": "black list", "uppercase": "upper case",
    "lowercase": "lower case", "mailbox": "mail box",
}
_VARIANT = re.compile(r"\b(" + "|".join(SPELLING_VARIANTS) + r")\b")
# a run of two or more single digits, where Whisper's normaliser writes a lone 1 as "one"
_DIGIT_RUN = re.compile(r"(?<!\S)(?:[0-9]|one)(?: (?:[0-9]|one))+(?!\S)")
_CHINESE_ALIASES = {"zh", "cmn", "zho", "chi"}
_CANTONESE_ALIASES = {"yue"}


def check_flavor(flavor: str) -> str:
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; expected one of {', '.join(FLAVORS)}")
    return flavor


def canonical_language(lang: str, flavor: str = "samp") -> str:
    """The language key that picks the normaliser: literal in the evalkit flavour, primary subtag in samp."""
    check_flavor(flavor)
    if not isinstance(lang, str) or not lang.strip():
        raise ValueError(f"language must be a non-empty code such as 'en' or 'zh', got {lang!r}")
    if flavor == "evalkit":
        return lang
    primary = lang.strip().replace("_", "-").split("-")[0].lower()
    if primary in _CHINESE_ALIASES:
        return "zh"
    if primary in _CANTONESE_ALIASES:
        return "yue"
    return primary


def remove_special(text: str, lang: str) -> str:
    """The reference's ``remove_sp``: ``<|tag|>`` -> space, whitespace collapsed, no space before ``!,.?;:``,
    leading spaces dropped; for ``zh`` all whitespace removed."""
    text = _TAG.sub(" ", text)
    text = _WHITESPACE.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = text.lstrip(" ")
    if lang == "zh":
        text = _WHITESPACE.sub("", text)
    return text


@functools.lru_cache(maxsize=1)
def _english():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


@functools.lru_cache(maxsize=1)
def _basic():
    from whisper_normalizer.basic import BasicTextNormalizer

    return BasicTextNormalizer()


@functools.lru_cache(maxsize=1)
def _zh_tokenizer():
    from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

    return TokenizerZh()


def written_forms(text: str) -> str:
    """Free-standing ``*`` -> star, ``#`` -> pound (number before a digit), ``&`` -> and; dotted initialisms joined
    (``A.M.`` -> ``AM``) and a hyphen after a prefix dropped (``re-record`` -> ``rerecord``), both of which Whisper's
    normaliser would split into two words."""
    text = _INITIALISM.sub(lambda match: match.group(0).replace(".", ""), text)
    text = _PREFIX_HYPHEN.sub(r"\1", text)
    text = _STAR.sub(" star ", text)
    text = _POUND.sub(" pound ", text)
    text = _NUMBER_SIGN.sub(" number ", text)
    return _AMPERSAND.sub(" and ", text)


def join_digit_runs(normalized: str) -> str:
    """``5 5`` -> ``55``, ``9 one one`` -> ``911``: digits read one by one are one number, as Whisper's normaliser
    already makes of "five five" and "nine one one"."""
    return _DIGIT_RUN.sub(lambda match: match.group(0).replace("one", "1").replace(" ", ""), normalized)


def unify_spellings(normalized: str) -> str:
    """One spelling per compound of :data:`SPELLING_VARIANTS` in already normalised (lower-case) English."""
    return _VARIANT.sub(lambda match: SPELLING_VARIANTS[match.group(1)], normalized)


def _to_simplified(text: str) -> str:
    import zhconv

    return zhconv.convert(text, "zh-cn")


def normalize_stages(text: str, lang: str, flavor: str = "samp") -> dict[str, str]:
    """Every intermediate string, in order: ``remove_special`` then the language's normalisers (keys as in the
    golden data: ``zhconv_zh_cn``, ``english_normalizer``, ``chinese_normalizer``, ``basic_normalizer``; the samp
    flavour's English adds ``written_forms`` before and ``digit_runs``, ``spelling_variants`` after
    ``english_normalizer``)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    lang = canonical_language(lang, flavor)
    stages = {"remove_special": remove_special(text, lang)}
    current = stages["remove_special"]
    if lang == "yue":
        current = stages["zhconv_zh_cn"] = _to_simplified(current)
    if lang == "en":
        if flavor == "samp":
            current = stages["written_forms"] = written_forms(current)
        current = stages["english_normalizer"] = _english()(current)
        if flavor == "samp":
            current = stages["digit_runs"] = join_digit_runs(current)
            stages["spelling_variants"] = unify_spellings(current)
            return stages
    if lang == "zh":
        stages["chinese_normalizer"] = normalize_chinese(current)
    else:
        stages["basic_normalizer"] = _basic()(current)
    return stages


def normalize(text: str, lang: str, flavor: str = "samp") -> str:
    """The normalised string that is tokenised for scoring (see the module docstring for the two flavours)."""
    return list(normalize_stages(text, lang, flavor).values())[-1]


def _is_punctuation(token: str) -> bool:
    return all(unicodedata.category(char).startswith("P") for char in token)


def tokenize_normalized(normalized: str) -> list[str]:
    """Scoring tokens of an already normalised string: each CJK character alone, other text split 13a-style,
    lower-cased, punctuation-only tokens dropped."""
    tokenized = _zh_tokenizer()(normalized).lower()
    kept = " ".join(token for token in tokenized.split(" ") if not _is_punctuation(token))
    return kept.split()


def tokenize(text: str, lang: str, flavor: str = "samp") -> list[str]:
    """Scoring tokens of raw text: ``tokenize_normalized(normalize(text, lang, flavor))``."""
    return tokenize_normalized(normalize(text, lang, flavor))
