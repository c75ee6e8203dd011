"""Catalogues: every app string translated in every language, placeholders intact; scenario
texts in every language; Persian lays the window out right to left.

Strings are collected from the source the way a translator's tool would: the literal first
argument of every ``_()`` and ``N_()`` call.
"""

from __future__ import annotations

import ast
import string
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po

from callpath.core.i18n import CATALOGUE_LOCALES, LANGUAGES, ngettext, set_language
from callpath.core.lab.scenario import list_presets
from callpath.core.resources import asset_path
from callpath.gui.app import AppController
from callpath.gui.qt import QApplication, Qt

pytest_plugins = ["tests.gui_support"]
ROOT = Path(__file__).parents[1]
TRANSLATED = [language for language in LANGUAGES if language != "en"]


def marked_strings(folder: str) -> set[str]:
    found = set()
    for file in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("_", "N_")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value)
    return found


def catalogue(language: str) -> dict[str, str]:
    folder = CATALOGUE_LOCALES.get(language, language)
    path = asset_path("locale", folder, "LC_MESSAGES", "callpath.po")
    with path.open("rb") as handle:
        return {
            str(m.id): str(m.string)
            for m in read_po(handle, locale=folder)
            if m.id and isinstance(m.id, str)
        }


def plural_calls(folder: str) -> set[tuple[str, str]]:
    """(singular, plural) of every ``ngettext`` call with literal texts."""
    found = set()
    for file in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "ngettext"
                and len(node.args) >= 2
                and all(isinstance(a, ast.Constant) for a in node.args[:2])
            ):
                found.add((node.args[0].value, node.args[1].value))  # type: ignore[attr-defined]
    return found


def fields(text: str) -> list[tuple[str, str, str]]:
    return sorted(
        (name, conversion or "", spec or "")
        for _literal, name, spec, conversion in string.Formatter().parse(text)
        if name is not None
    )


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_app_string_is_translated(language: str) -> None:
    messages = catalogue(language)
    # core/present holds the plain words the app shows too (failures, stages, proxies).
    app_strings = marked_strings("gui") | marked_strings("core/present")
    missing = sorted(s for s in app_strings if not messages.get(s))
    assert not missing, f"{len(missing)} app strings lack a {language} translation: {missing}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_plural_has_the_catalogues_number_of_forms_with_its_placeholders(
    language: str,
) -> None:
    folder = CATALOGUE_LOCALES.get(language, language)
    with asset_path("locale", folder, "LC_MESSAGES", "callpath.po").open("rb") as handle:
        read = read_po(handle, locale=folder)
    plurals = {m.id: m.string for m in read if isinstance(m.id, tuple)}
    calls = plural_calls("core") | plural_calls("gui")
    assert calls, "no ngettext call found"
    for singular, plural in calls:
        forms = plurals.get((singular, plural))
        assert forms is not None, (language, singular)
        assert len(forms) == read.num_plurals, (language, singular, forms)
        assert all(form and fields(form) == fields(plural) for form in forms), (singular, forms)


def test_plural_forms_follow_each_languages_rule() -> None:
    message = ("Diagnosis finished: {count} finding", "Diagnosis finished: {count} findings")
    expected = {
        "en": ["1 finding", "2 findings", "5 findings", "21 findings"],
        "ru": ["1 вывод", "2 вывода", "5 выводов", "21 вывод"],
        "zh": ["1 项发现", "2 项发现", "5 项发现", "21 项发现"],
    }
    try:
        for language, endings in expected.items():
            set_language(language)
            texts = [ngettext(*message, n).format(count=n) for n in (1, 2, 5, 21)]
            assert [t.endswith(e) for t, e in zip(texts, endings, strict=True)] == [True] * 4, texts
    finally:
        set_language("en")


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_placeholders_mnemonics_and_line_breaks(language: str) -> None:
    problems = []
    for source, translated in catalogue(language).items():
        if not translated:
            continue
        if fields(source) != fields(translated):
            problems.append(("placeholders", source, translated))
        if "&" in source and source.count("&") != translated.count("&"):
            problems.append(("mnemonic", source, translated))
        if source.count("\n") != translated.count("\n"):
            problems.append(("line breaks", source, translated))
    assert not problems, problems


@pytest.mark.parametrize("language", ["fa", "zh", "tr"])
def test_new_languages_cover_the_core_too(language: str) -> None:
    messages = catalogue(language)
    marked = marked_strings("core") | marked_strings("gui")
    translated = {s for s in marked if messages.get(s)}
    # Everything marked when these catalogues were written is translated; strings added later
    # fall back to English until a translator adds them (docs/translating.md).
    # (790: the CLI's own headline sentences went when the CLI took the app's, issue 15.)
    assert len(translated) >= 790, len(translated)
    assert all(messages[s] != s for s in translated if len(s) > 20 and "{" not in s)


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_preset_has_its_title_and_explanation_in_every_language(language: str) -> None:
    set_language(language)
    try:
        for scenario in list_presets():
            assert scenario.title.get(language), (scenario.id, language)
            assert scenario.explanation.get(language), (scenario.id, language)
            assert scenario.text("title") == scenario.title[language]
    finally:
        set_language("en")


def test_persian_mirrors_the_window_and_english_restores_it(
    app: AppController, qapp: QApplication, qtbot: Any
) -> None:
    assert qapp.layoutDirection() == Qt.LayoutDirection.LeftToRight
    app.window.language_actions["fa"].trigger()
    window = app.window
    assert qapp.layoutDirection() == Qt.LayoutDirection.RightToLeft
    assert window.isRightToLeft()
    assert window.home.start_button.text() == "&شروع آزمون"
    assert window.home.scenario_box.currentText().startswith("روسیه")
    window.language_actions["zh"].trigger()
    assert qapp.layoutDirection() == Qt.LayoutDirection.LeftToRight
    assert app.window.home.start_button.text() == "开始测试(&S)"
    app.window.language_actions["en"].trigger()
    assert app.window.home.start_button.text() == "&Start test"
