"""Keyring access and ``callpath secret set/delete`` against real in-process keyring backends."""

from __future__ import annotations

import argparse
import io

import keyring
import keyring.backend
import keyring.errors
import pytest
from keyring.backends import chainer, fail, null

from callpath.core.cli import secret as secret_command
from callpath.core.profile import secretstore
from tests.keyrings import MemoryKeyring


class BrokenKeyring(MemoryKeyring):
    """A backend whose storage fails, echoing what it was given (as a careless one might)."""

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.PasswordSetError(f"D-Bus said no to {password}")


class ChainableMemoryKeyring(MemoryKeyring):
    """The chainer only chains backends with a positive priority."""

    priority = 1


def test_set_get_delete_round_trip(memory_keyring: MemoryKeyring) -> None:
    assert secretstore.get_secret("callpath", "alice") is None
    secretstore.set_secret("callpath", "alice", "s3cret")
    assert memory_keyring.passwords == {("callpath", "alice"): "s3cret"}
    assert secretstore.get_secret("callpath", "alice") == "s3cret"
    secretstore.set_secret("callpath", "alice", "changed")
    assert secretstore.get_secret("callpath", "alice") == "changed"
    assert secretstore.delete_secret("callpath", "alice") is True
    assert secretstore.get_secret("callpath", "alice") is None
    assert secretstore.delete_secret("callpath", "alice") is False


def test_backend_name_names_the_class(memory_keyring: MemoryKeyring) -> None:
    assert secretstore.backend_name() == "tests.keyrings.MemoryKeyring"
    assert secretstore.require_backend() == "tests.keyrings.MemoryKeyring"


@pytest.mark.parametrize(
    "backend",
    [fail.Keyring(), null.Keyring()],
    ids=["fail", "null"],
)
def test_unusable_backends_raise_no_keyring_error(backend: keyring.backend.KeyringBackend) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        for call in (
            lambda: secretstore.get_secret("callpath", "alice"),
            lambda: secretstore.set_secret("callpath", "alice", "x"),
            lambda: secretstore.delete_secret("callpath", "alice"),
            secretstore.require_backend,
        ):
            with pytest.raises(secretstore.NoKeyringError) as caught:
                call()
            message = str(caught.value)
            assert type(backend).__module__ in message  # which backend was found
            assert "${env:NAME}" in message  # the documented fallback
    finally:
        keyring.set_keyring(previous)


def test_empty_chainer_is_no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    previous = keyring.get_keyring()
    monkeypatch.setattr(keyring.backend, "get_all_keyring", lambda: [])
    keyring.set_keyring(chainer.ChainerBackend())
    try:
        with pytest.raises(secretstore.NoKeyringError, match="ChainerBackend"):
            secretstore.get_secret("callpath", "alice")
    finally:
        keyring.set_keyring(previous)


def test_chainer_with_a_backend_is_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    previous = keyring.get_keyring()
    inner = ChainableMemoryKeyring()
    monkeypatch.setattr(keyring.backend, "get_all_keyring", lambda: [inner])
    keyring.set_keyring(chainer.ChainerBackend())
    try:
        secretstore.set_secret("callpath", "bob", "pw")
        assert inner.passwords == {("callpath", "bob"): "pw"}
        assert "ChainableMemoryKeyring" in secretstore.backend_name()
    finally:
        keyring.set_keyring(previous)


def test_backend_failure_never_repeats_the_secret() -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(BrokenKeyring())
    try:
        with pytest.raises(secretstore.SecretStoreError) as caught:
            secretstore.set_secret("callpath", "alice", "hunter2-value")
    finally:
        keyring.set_keyring(previous)
    assert "hunter2-value" not in str(caught.value)
    assert "PasswordSetError" in str(caught.value)
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    ("service", "user", "fragment"),
    [
        ("", "alice", "service name is empty"),
        ("callpath", "", "user name is empty"),
        ("call/path", "alice", "contains '/'"),
        ("callpath", "al ice", "spaces or control characters"),
        ("call\tpath", "alice", "spaces or control characters"),
    ],
)
def test_keyring_name_problems(service: str, user: str, fragment: str) -> None:
    problem = secretstore.keyring_name_problem(service, user)
    assert problem is not None and fragment in problem


def test_keyring_name_with_slash_in_user_is_fine() -> None:
    assert secretstore.keyring_name_problem("callpath", "team/alice") is None


# --- callpath secret ----------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="callpath")
    secret_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def test_parser_shape() -> None:
    args = parse("secret", "set", "callpath", "alice", "--stdin")
    assert (args.command, args.secret_action, args.service, args.user, args.stdin) == (
        "secret",
        "set",
        "callpath",
        "alice",
        True,
    )
    args = parse("secret", "delete", "callpath", "alice")
    assert (args.secret_action, args.service, args.user) == ("delete", "callpath", "alice")
    with pytest.raises(SystemExit):
        parse("secret")


def test_set_from_stdin_then_delete(
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("pa ss:word\r\nsecond line\n"))
    assert secret_command.run(parse("secret", "set", "callpath", "alice", "--stdin")) == 0
    assert memory_keyring.passwords == {("callpath", "alice"): "pa ss:word"}
    out, err = capsys.readouterr()
    assert "keyring:callpath/alice" in out
    assert "pa ss:word" not in out + err

    assert secret_command.run(parse("secret", "delete", "callpath", "alice")) == 0
    assert memory_keyring.passwords == {}
    assert secret_command.run(parse("secret", "delete", "callpath", "alice")) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "no secret is stored" in err


def test_set_from_empty_stdin_fails(
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert secret_command.run(parse("secret", "set", "callpath", "alice", "--stdin")) == 2
    assert memory_keyring.passwords == {}
    assert "nothing stored" in capsys.readouterr().err


def test_set_prompts_twice_without_echo(
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts: list[str] = []
    answers = iter(["typed-secret", "typed-secret"])

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    assert secret_command.run(parse("secret", "set", "callpath", "alice")) == 0
    assert memory_keyring.passwords == {("callpath", "alice"): "typed-secret"}
    assert len(prompts) == 2 and "callpath/alice" in prompts[0]


def test_set_prompt_mismatch_stores_nothing(
    memory_keyring: MemoryKeyring,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    answers = iter(["first-typed", "second-typed"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert secret_command.run(parse("secret", "set", "callpath", "alice")) == 2
    assert memory_keyring.passwords == {}
    err = capsys.readouterr().err
    assert "differ" in err and "typed" not in err


def test_set_with_no_backend_fails_before_prompting(
    no_keyring: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def must_not_prompt(prompt: str = "") -> str:
        raise AssertionError("prompted although no keyring can store the secret")

    monkeypatch.setattr("getpass.getpass", must_not_prompt)
    assert secret_command.run(parse("secret", "set", "callpath", "alice")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "keyring.backends.fail.Keyring" in err and "${env:NAME}" in err


def test_delete_with_no_backend_fails(no_keyring: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert secret_command.run(parse("secret", "delete", "callpath", "alice")) == 2
    assert "no usable keyring backend" in capsys.readouterr().err


def test_bad_names_are_refused(
    memory_keyring: MemoryKeyring, capsys: pytest.CaptureFixture[str]
) -> None:
    assert secret_command.run(parse("secret", "delete", "call/path", "alice")) == 2
    assert "contains '/'" in capsys.readouterr().err
