"""Translatable user-visible text.

Catalogues are gettext ``.po`` files under ``assets/locale/<lang>/LC_MESSAGES/callpath.po``,
read with Babel so that a source checkout needs no compile step. Call ``set_language`` once at
start-up (front ends do); ``_`` then returns the text in that language, English by default.

Language codes are the short ones a system locale starts with (``zh`` from ``zh_CN.UTF-8``), which
scenario files use for their texts too; ``CATALOGUE_LOCALES`` names the catalogue of a code whose
folder says more (Simplified Chinese is ``zh_CN``). ``is_rtl`` tells front ends which languages
are written right to left.
"""

from __future__ import annotations

import locale
import os
from dataclasses import dataclass, field

from babel.messages.pofile import read_po

from callpath.core.resources import asset_path

DOMAIN = "callpath"
LANGUAGES = ("en", "ru", "fa", "zh", "tr")
CATALOGUE_LOCALES = {"zh": "zh_CN"}  # language code -> catalogue folder and Babel locale
RTL_LANGUAGES = frozenset({"fa"})


@dataclass
class _Catalogue:
    language: str = "en"
    messages: dict[str, str] = field(default_factory=dict)


_current = _Catalogue()


def _load(language: str) -> dict[str, str]:
    catalogue = CATALOGUE_LOCALES.get(language, language)
    po_file = asset_path("locale", catalogue, "LC_MESSAGES", f"{DOMAIN}.po")
    if not po_file.is_file():
        return {}
    with po_file.open("rb") as handle:
        catalog = read_po(handle, locale=catalogue)
    return {
        str(message.id): str(message.string)
        for message in catalog
        if message.id and isinstance(message.id, str) and message.string and not message.fuzzy
    }


def system_language() -> str:
    """The user's language from the environment, if CallPath has it, else English."""
    for variable in ("CALLPATH_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(variable)
        if value:
            code = value.split(":")[0].split(".")[0].split("_")[0].lower()
            if code in LANGUAGES:
                return code
            if code not in ("", "c", "posix"):
                return "en"
    code = (locale.getlocale()[0] or "en").split("_")[0].lower()
    return code if code in LANGUAGES else "en"


def set_language(language: str) -> None:
    """Switch every later ``_`` call to ``language`` (unknown languages fall back to English)."""
    language = language if language in LANGUAGES else "en"
    _current.language = language
    _current.messages = {} if language == "en" else _load(language)


def current_language() -> str:
    return _current.language


def is_rtl(language: str | None = None) -> bool:
    """Whether ``language`` (default: the current one) is written right to left."""
    return (language or _current.language) in RTL_LANGUAGES


def _(message: str) -> str:
    """Translate ``message``; format placeholders with ``str.format`` after translating."""
    return _current.messages.get(message, message)


def N_(message: str) -> str:
    """Mark ``message`` for extraction without translating it now."""
    return message


def messages_for(language: str) -> dict[str, str]:
    """The catalogue of ``language`` (msgid → text; empty for English and unknown languages),
    without switching the current language: for a server answering several languages at once."""
    if language not in LANGUAGES or language == "en":
        return {}
    cached = _by_language.get(language)
    if cached is None:
        cached = _by_language[language] = _load(language)
    return cached


_by_language: dict[str, dict[str, str]] = {}
