"""Translatable user-visible text.

Catalogues are gettext ``.po`` files under ``assets/locale/<lang>/LC_MESSAGES/callpath.po``,
read with Babel so that a source checkout needs no compile step. Call ``set_language`` once at
start-up (front ends do); ``_`` then returns the text in that language, English by default.

Language codes are the short ones a system locale starts with (``zh`` from ``zh_CN.UTF-8``), which
scenario files use for their texts too; ``CATALOGUE_LOCALES`` names the catalogue of a code whose
folder says more (Simplified Chinese is ``zh_CN``). ``is_rtl`` tells front ends which languages
are written right to left.

``ngettext(singular, plural, n)`` picks the plural form of ``n`` by the catalogue's own
``Plural-Forms`` rule (Russian has three forms, Chinese one); English falls back to
``n == 1``.
"""

from __future__ import annotations

import gettext
import locale
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from babel.messages.pofile import read_po

from callpath.core.resources import asset_path

DOMAIN = "callpath"
LANGUAGES = ("en", "ru", "fa", "zh", "tr")
CATALOGUE_LOCALES = {"zh": "zh_CN"}  # language code -> catalogue folder and Babel locale
RTL_LANGUAGES = frozenset({"fa"})


def _english_plural(n: int) -> int:
    return 0 if n == 1 else 1


@dataclass
class _Catalogue:
    language: str = "en"
    messages: dict[str, str] = field(default_factory=dict)
    plurals: dict[str, tuple[str, ...]] = field(default_factory=dict)  # singular id -> forms
    plural_index: Callable[[int], int] = _english_plural


_current = _Catalogue()


def _load(language: str) -> _Catalogue:
    catalogue = CATALOGUE_LOCALES.get(language, language)
    po_file = asset_path("locale", catalogue, "LC_MESSAGES", f"{DOMAIN}.po")
    if not po_file.is_file():
        return _Catalogue(language)
    with po_file.open("rb") as handle:
        catalog = read_po(handle, locale=catalogue)
    messages: dict[str, str] = {}
    plurals: dict[str, tuple[str, ...]] = {}
    for message in catalog:
        if not message.id or message.fuzzy:
            continue
        if isinstance(message.id, str):
            if message.string:
                messages[message.id] = str(message.string)
        elif isinstance(message.string, (tuple, list)) and all(message.string):
            plurals[str(message.id[0])] = tuple(str(form) for form in message.string)
    # The header's rule (a C expression over n), e.g. Russian's three forms.
    rule: Callable[[int], int] = gettext.c2py(catalog.plural_expr)
    return _Catalogue(language, messages, plurals, rule)


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
    loaded = _Catalogue(language) if language == "en" else _load(language)
    _current.language = language
    _current.messages = loaded.messages
    _current.plurals = loaded.plurals
    _current.plural_index = loaded.plural_index


def current_language() -> str:
    return _current.language


def is_rtl(language: str | None = None) -> bool:
    """Whether ``language`` (default: the current one) is written right to left."""
    return (language or _current.language) in RTL_LANGUAGES


def _(message: str) -> str:
    """Translate ``message``; format placeholders with ``str.format`` after translating."""
    return _current.messages.get(message, message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of ``singular``/``plural`` for the count ``n`` in the current language, by the
    catalogue's plural rule; format ``{count}`` afterwards."""
    forms = _current.plurals.get(singular)
    if forms is None:
        return singular if n == 1 else plural
    index = _current.plural_index(n)
    return forms[index] if 0 <= index < len(forms) else forms[-1]


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
        cached = _by_language[language] = _load(language).messages
    return cached


_by_language: dict[str, dict[str, str]] = {}
