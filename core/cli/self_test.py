"""``callpath --self-test``: proves that an installation is whole.

The same checks run from a source checkout, an installed wheel and a frozen bundle: every native
dependency imports (and the codecs the test call needs exist), every data file under ``assets/``
loads through ``callpath.core.resources``, and one short call runs end to end through the built-in
lab on
loopback. Packagers run it on a fresh bundle; users run it when something looks broken.

Each check prints one line, ``ok`` or ``FAILED`` with the reason; the exit status is 0 only
when every check passed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any, Literal

from callpath.core.i18n import N_, _, current_language, set_language, system_language
from callpath.core.model.results import Direction, PathId, RunResult

EXIT_PASSED = 0
EXIT_FAILED = 1
LAB_SCENARIO = "open-network"
LAB_PATH = PathId.DIRECT
LAB_QUALITY_WINDOW_S = 2.0
LAB_CALL_TIMEOUT_S = 60.0
# A string the Russian catalogue must translate (this module's own, so it cannot move away).
KNOWN_MESSAGE = N_("CallPath self-test")
# Imported and exercised one by one, so a missing native library names its package.
NATIVE_MODULES: tuple[str, ...] = (
    "av",
    "aiortc",
    "aioice",
    "aioquic",
    "cryptography",
    "yaml",
    "keyring",
    "numpy",
    "dns",
)
CODECS = ("libopus", "libvpx")  # what aiortc's Opus and VP8 encoders and decoders open


class CheckFailed(Exception):
    """A check found something wrong; the message is the reason shown to the user."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str = ""  # what was found when passed, the reason when failed


@dataclass(frozen=True)
class SelfTestReport:
    checks: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(check for check in self.checks if not check.passed)


def _run_check(name: str, check: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, check())
    except CheckFailed as failure:
        return CheckResult(name, False, str(failure))
    except Exception as error:
        reason = str(error) or type(error).__name__
        return CheckResult(name, False, f"{type(error).__name__}: {reason}")


# --- native dependencies --------------------------------------------------------------------


def _exercise(module_name: str) -> str:
    """Import ``module_name`` and touch its native part; return its version."""
    module = importlib.import_module(module_name)
    if module_name == "aioquic":
        buffer = importlib.import_module("aioquic.buffer")
        data = buffer.Buffer(capacity=4)
        data.push_uint32(0xCA11)
        if data.data != b"\x00\x00\xca\x11":
            raise CheckFailed(_("aioquic's native buffer gave wrong bytes"))
    elif module_name == "cryptography":
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        signature = key.sign(b"callpath", ec.ECDSA(hashes.SHA256()))
        key.public_key().verify(signature, b"callpath", ec.ECDSA(hashes.SHA256()))
    elif module_name == "yaml":
        if module.safe_load("a: [1, 2]") != {"a": [1, 2]}:
            raise CheckFailed(_("PyYAML parsed a simple document wrongly"))
    elif module_name == "keyring":
        from importlib.metadata import entry_points

        # keyring finds even its built-in backends through entry points: a bundle without
        # keyring's metadata silently falls back to "no keyring".
        backends = entry_points(group="keyring.backends")
        if not backends:
            raise CheckFailed(_("no keyring backend is registered (package metadata missing)"))
        return _("backends: {names}").format(names=", ".join(sorted(e.name for e in backends)))
    elif module_name == "numpy":
        if int(module.arange(5, dtype=module.int16).sum()) != 10:
            raise CheckFailed(_("numpy computed a wrong sum"))
    elif module_name == "dns":
        message = importlib.import_module("dns.message")
        wire = message.make_query("turn.callpath.lab", "A").to_wire()
        if message.from_wire(wire).question[0].name.to_text() != "turn.callpath.lab.":
            raise CheckFailed(_("dnspython did not read back its own query"))
    elif module_name == "aiortc":
        # The DTLS-SRTP and RTP parts load their own native libraries.
        importlib.import_module("aiortc.rtcdtlstransport")
        importlib.import_module("aiortc.codecs")
    version = getattr(module, "__version__", None)
    return str(version) if version else ""


def _codec(name: str) -> str:
    import av.codec

    modes: tuple[tuple[Literal["w", "r"], str], ...] = (("w", _("encoder")), ("r", _("decoder")))
    for mode, role in modes:
        try:
            av.codec.Codec(name, mode)
        except Exception as error:
            raise CheckFailed(
                _("FFmpeg in PyAV has no {name} {role}: {error}").format(
                    name=name, role=role, error=error
                )
            ) from None
    return _("encoder and decoder")


def _babel_locale_data() -> str:
    from babel.numbers import format_decimal

    text = format_decimal(1234.5, locale="ru")
    if "," not in text:
        raise CheckFailed(_("Babel formatted 1234.5 in Russian as {text!r}").format(text=text))
    return text


# --- assets ---------------------------------------------------------------------------------


def _scenarios() -> str:
    from callpath.core.lab.scenario import ScenarioError, list_presets, preset_directory

    try:
        presets = list_presets()
    except ScenarioError as error:
        raise CheckFailed(str(error)) from None  # already names the file and line
    ids = {scenario.id for scenario in presets}
    if LAB_SCENARIO not in ids:
        raise CheckFailed(
            _("the scenario {name!r} is missing from the presets").format(name=LAB_SCENARIO)
        )
    return _("presets: {count}, in {folder}").format(count=len(presets), folder=preset_directory())


def _messenger_data() -> str:
    from callpath.core.messengers.catalog import CatalogError, load_catalog
    from callpath.core.messengers.recipes import load_recipes
    from callpath.core.messengers.references import load_references

    try:
        catalog, recipes = load_catalog(), load_recipes()
        load_references()
    except CatalogError as error:
        raise CheckFailed(str(error)) from None
    return _("messengers: {count}, fix recipes: {recipes}").format(
        count=len(catalog), recipes=len(recipes)
    )


def _report_schema() -> str:
    import jsonschema  # type: ignore[import-untyped, unused-ignore]

    from callpath.core.report.document import schema_path

    path = schema_path()
    schema = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return path.name


def _russian_catalogue() -> str:
    previous = current_language()
    try:
        set_language("ru")
        translated = _(KNOWN_MESSAGE)
    finally:
        set_language(previous)
    if translated == KNOWN_MESSAGE:
        raise CheckFailed(
            _("the Russian catalogue did not translate {message!r}").format(message=KNOWN_MESSAGE)
        )
    return translated


# --- one lab call ---------------------------------------------------------------------------


async def _lab_call() -> RunResult:
    from callpath.core.call.engine import Engine
    from callpath.core.lab.network import LabNetwork
    from callpath.core.lab.scenario import find_scenario

    scenario = replace(find_scenario(LAB_SCENARIO), paths=(LAB_PATH,))
    async with LabNetwork(scenario) as lab:
        base = lab.options()
        options = replace(base, quality=replace(base.quality, window_s=LAB_QUALITY_WINDOW_S))
        engine = Engine(lab.plans(), lab.target(), lambda event: None, options)
        return await engine.run()


def _check_lab_call(run: RunResult) -> str:
    paths = {path.path_id: path for path in run.paths}
    path = paths.get(LAB_PATH)
    if path is None:
        raise CheckFailed(_("the lab ran no {path} path").format(path=LAB_PATH))
    if path.failure is not None:
        raise CheckFailed(
            _("the {path} path failed: {failure}").format(path=LAB_PATH, failure=path.failure)
        )
    received = [
        sample.bitrate_kbps
        for sample in path.voice.samples
        if sample.direction == Direction.RECEIVED and sample.bitrate_kbps
    ]
    if not received:
        raise CheckFailed(_("the call connected but no voice came back"))
    return _("voice came back at {kbps:.0f} kbit/s").format(kbps=max(received))


def _check_lab_report(run: RunResult) -> str:
    from callpath.core.report.document import report_to_dict, validate_report

    validate_report(report_to_dict(run))
    return _("valid against the schema")


def _lab_checks() -> list[CheckResult]:
    name = _("lab call ({scenario}, {path})").format(scenario=LAB_SCENARIO, path=LAB_PATH)
    try:
        run = asyncio.run(asyncio.wait_for(_lab_call(), timeout=LAB_CALL_TIMEOUT_S))
    except TimeoutError:
        reason = _("no result within {seconds:.0f} s").format(seconds=LAB_CALL_TIMEOUT_S)
        return [CheckResult(name, False, reason)]
    except Exception as error:
        return [CheckResult(name, False, f"{type(error).__name__}: {error}")]
    return [
        _run_check(name, lambda: _check_lab_call(run)),
        _run_check(_("lab call report"), lambda: _check_lab_report(run)),
    ]


# --- running --------------------------------------------------------------------------------


def run_self_test(
    *, lab_call: bool = True, on_check: Callable[[CheckResult], None] | None = None
) -> SelfTestReport:
    """Run every check (the lab call last, as it takes a few seconds)."""
    checks: list[tuple[str, Callable[[], str]]] = []
    for module_name in NATIVE_MODULES:
        checks.append((_("import {module}").format(module=module_name), _importer(module_name)))
    for codec in CODECS:
        checks.append((_("codec {codec}").format(codec=codec), _codec_checker(codec)))
    checks += [
        (_("Babel locale data"), _babel_locale_data),
        (_("lab scenarios"), _scenarios),
        (_("messenger check data"), _messenger_data),
        (_("report schema"), _report_schema),
        (_("Russian translation"), _russian_catalogue),
    ]
    results: list[CheckResult] = []
    for name, check in checks:
        result = _run_check(name, check)
        results.append(result)
        if on_check is not None:
            on_check(result)
    if lab_call:
        for result in _lab_checks():
            results.append(result)
            if on_check is not None:
                on_check(result)
    return SelfTestReport(tuple(results))


def _importer(module_name: str) -> Callable[[], str]:
    return lambda: _exercise(module_name)


def _codec_checker(codec: str) -> Callable[[], str]:
    return lambda: _codec(codec)


def format_check(result: CheckResult) -> str:
    # "ok" and "FAILED" stay English so that scripts can look for them in any language.
    mark = "ok    " if result.passed else "FAILED"
    detail = f": {result.detail}" if result.detail else ""
    return f"{mark} {result.name}{detail}"


def print_report(report: SelfTestReport, stream: IO[str]) -> None:
    failed = len(report.failures)
    total = len(report.checks)
    if report.passed:
        print(_("Self-test passed (checks: {total}).").format(total=total), file=stream)
    else:
        print(
            _("Self-test FAILED (failed checks: {failed}, all checks: {total}).").format(
                failed=failed, total=total
            ),
            file=stream,
        )


def main(argv: Sequence[str] | None = None, stream: IO[str] | None = None) -> int:
    """``callpath --self-test`` (also ``python -m callpath.core.cli.self_test [--no-lab-call]``)."""
    parser = argparse.ArgumentParser(prog="callpath --self-test")
    parser.add_argument(
        "--no-lab-call", action="store_true", help=_("skip the end-to-end call in the lab")
    )
    args = parser.parse_args(argv if argv is not None else [])
    out = stream or sys.stdout
    started = datetime.datetime.now(datetime.UTC)
    print(
        _("{title} ({time:%Y-%m-%d %H:%M:%S} UTC, Python {python}, {mode})").format(
            title=_(KNOWN_MESSAGE),
            time=started,
            python=sys.version.split()[0],
            mode=_("frozen bundle") if getattr(sys, "frozen", False) else _("Python install"),
        ),
        file=out,
        flush=True,
    )
    report = run_self_test(
        lab_call=not args.no_lab_call,
        on_check=lambda result: print(format_check(result), file=out, flush=True),
    )
    print_report(report, out)
    return EXIT_PASSED if report.passed else EXIT_FAILED


class SelfTestAction(argparse.Action):
    """``--self-test`` on the ``callpath`` parser: runs the self-test and exits, like --version.

    It acts while the arguments are parsed, so no command is needed after it; ``--lang`` given
    before it is honoured.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        set_language(getattr(namespace, "lang", None) or system_language())
        parser.exit(main())


if __name__ == "__main__":
    set_language(system_language())
    sys.exit(main(sys.argv[1:]))
