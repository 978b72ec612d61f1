"""Which characters belong to the CJK scripts: the one home of the rule.

Chinese and Japanese are written without spaces, so a single Han character or kana is a word or
part of one. Korean is written with spaces between words, but its syllable blocks are as dense as
Han characters (a word in two or three) and particles are glued to the word before them.

- :data:`UNSPACED` — one Han ideograph (unified, extensions A to H, compatibility forms and their
  supplement, the marks 々〆〇) or kana (hiragana, katakana with its phonetic extensions and the
  half-width forms, the kana supplement). Answer metrics score these one character a token, as
  MLQA's evaluation segments Chinese (Lewis et al., arXiv 1910.07475).
- :data:`HANGUL` — one Hangul syllable or jamo (with the half-width forms). Answer metrics keep
  Korean words whole, split on spaces, as SQuAD-style scoring of Korean does (XTREME's TyDi QA).
- :data:`DENSE` — either: text where a word is a character or two. Retrieval splits runs of these
  into characters and character pairs (as Lucene's CJK bigram analysis does, Hangul included, so a
  query ``파리`` finds ``파리는``); the QA graph accepts shorter sub-questions in them.
"""

from __future__ import annotations

import re

_HAN = "\u3005-\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U000323af"
_KANA = "\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f\U0001b000-\U0001b16f"
_HANGUL = "\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7ff\uffa0-\uffdc"

UNSPACED: re.Pattern[str] = re.compile(f"[{_HAN}{_KANA}]")
"""One character of a script written without spaces (Han, kana)."""
HANGUL: re.Pattern[str] = re.compile(f"[{_HANGUL}]")
"""One Hangul character (spaced between words, dense within them)."""
DENSE: re.Pattern[str] = re.compile(f"[{_HAN}{_KANA}{_HANGUL}]")
"""One character of Han, kana or Hangul: scripts where a word is a character or two."""
DENSE_RUN: re.Pattern[str] = re.compile(f"([{_HAN}{_KANA}{_HANGUL}]+)")
"""A run of :data:`DENSE` characters, captured (for ``re.split``)."""
