"""Fix recipes as data (``assets/messengers/recipes.yaml``) and their choice by what was measured.

Each recipe names the messengers it is for, the platforms, its source and the date it was last
checked, and texts per language (en and ru at least). ``select_recipes`` is pure: it takes the
facts measured for one messenger and returns the recipes whose ``when`` conditions all hold.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from callpath.core.i18n import _, current_language
from callpath.core.messengers.catalog import CatalogError
from callpath.core.resources import asset_path

RECIPES_VERSION = 1
CONDITIONS = (
    "calls",
    "messages",
    "network",
    "dns_tampering",
    "calls_work_through_proxy",
    "proxy_without_udp",
    "service_down",
)
_LIST_CONDITIONS = ("calls", "messages", "network")
REQUIRED_LANGUAGES = ("en", "ru")


@dataclass(frozen=True)
class Recipe:
    id: str
    messengers: tuple[str, ...]  # ids, or ("any",)
    platforms: tuple[str, ...]
    when: Mapping[str, Any]
    source: str
    date: str  # YYYY-MM
    text: Mapping[str, str]

    def text_in(self, language: str | None = None) -> str:
        texts = self.text
        return texts.get(language or current_language()) or texts["en"]


@dataclass(frozen=True)
class MessengerFacts:
    """What the check measured for one messenger (its direct route), for the recipes."""

    messenger: str
    calls: str  # a Reachability value
    messages: str
    network: str = "online"
    dns_tampering: bool = False
    calls_work_through: tuple[str, ...] = ()  # proxy ids through which calls work
    proxies_without_udp: tuple[str, ...] = ()  # proxy ids that carry no UDP
    service_down: bool = False


@dataclass(frozen=True)
class ChosenRecipe:
    recipe: Recipe
    values: Mapping[str, str] = field(default_factory=dict)  # {proxy} and {messenger}

    def text(self, language: str | None = None) -> str:
        return self.recipe.text_in(language).format_map(_Defaulting(self.values))


class _Defaulting(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _holds(recipe: Recipe, facts: MessengerFacts) -> bool:
    when = recipe.when
    for name in _LIST_CONDITIONS:
        if name in when and getattr(facts, name) not in when[name]:
            return False
    checks = {
        "dns_tampering": facts.dns_tampering,
        "calls_work_through_proxy": bool(facts.calls_work_through),
        "proxy_without_udp": bool(facts.proxies_without_udp),
        "service_down": facts.service_down,
    }
    return all(when[name] == value for name, value in checks.items() if name in when)


def select_recipes(
    recipes: Sequence[Recipe], facts: MessengerFacts, name: str = ""
) -> list[ChosenRecipe]:
    """The recipes that fit ``facts``, in file order, with their placeholders' values."""
    chosen: list[ChosenRecipe] = []
    for recipe in recipes:
        if "any" not in recipe.messengers and facts.messenger not in recipe.messengers:
            continue
        if not _holds(recipe, facts):
            continue
        proxies = facts.calls_work_through
        if recipe.when.get("proxy_without_udp"):
            proxies = facts.proxies_without_udp
        values = {"messenger": name or facts.messenger, "proxy": ", ".join(proxies)}
        chosen.append(ChosenRecipe(recipe, values))
    return chosen


def _fail(file: str, message: str) -> CatalogError:
    return CatalogError(message, file=file)


def _texts(value: Any, file: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(file, _("{what} must be a list of words").format(what=where))
    return tuple(value)


def parse_recipes(text: str, file: str = "<text>") -> tuple[Recipe, ...]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise _fail(file, str(error)) from None
    if not isinstance(data, dict) or data.get("version") != RECIPES_VERSION:
        raise _fail(file, _("version must be {version}").format(version=RECIPES_VERSION))
    items = data.get("recipes")
    if not isinstance(items, list):
        raise _fail(file, _("{what} must be a list").format(what="recipes"))
    recipes: list[Recipe] = []
    for item in items:
        if not isinstance(item, dict):
            raise _fail(file, _("{what} must be a mapping").format(what="recipe"))
        recipe_id = str(item.get("id", ""))
        where = f"recipe {recipe_id!r}"
        missing = [
            k for k in ("id", "messengers", "when", "source", "date", "text") if k not in item
        ]
        if missing:
            raise _fail(file, _("{what} needs {key!r}").format(what=where, key=missing[0]))
        when = item["when"]
        if not isinstance(when, dict) or not set(when) <= set(CONDITIONS):
            raise _fail(
                file,
                _("{what}: when may only name {known}").format(
                    what=where, known=", ".join(CONDITIONS)
                ),
            )
        date = item["date"]
        if isinstance(date, datetime.date):
            date = date.strftime("%Y-%m")
        text_map = item["text"]
        if not isinstance(text_map, dict) or any(
            not isinstance(text_map.get(lang), str) for lang in REQUIRED_LANGUAGES
        ):
            raise _fail(file, _("{what} needs texts in en and ru").format(what=where))
        recipes.append(
            Recipe(
                id=recipe_id,
                messengers=_texts(item["messengers"], file, f"{where} messengers"),
                platforms=_texts(item.get("platforms", []), file, f"{where} platforms"),
                when={k: tuple(v) if isinstance(v, list) else v for k, v in when.items()},
                source=str(item["source"]),
                date=str(date),
                text={str(k): str(v) for k, v in text_map.items()},
            )
        )
    return tuple(recipes)


def recipes_path() -> Path:
    return asset_path("messengers", "recipes.yaml")


def load_recipes(path: Path | None = None) -> tuple[Recipe, ...]:
    file = path if path is not None else recipes_path()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise _fail(str(file), str(error)) from None
    return parse_recipes(text, str(file))
