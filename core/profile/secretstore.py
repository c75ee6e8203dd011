"""OS keyring access for TURN credentials and echo tokens.

Profiles refer to secrets as ``keyring:SERVICE/USER``; ``callpath secret set`` stores them here.
Secret values are never logged, printed or put in exception messages.
"""

from __future__ import annotations

import keyring
import keyring.errors
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null

from callpath.core.i18n import _


class SecretStoreError(Exception):
    """The keyring could not be used; the message says what to do instead."""


class NoKeyringError(SecretStoreError):
    """No usable keyring backend is installed or configured."""


def keyring_name_problem(service: str, user: str) -> str | None:
    """Why ``service``/``user`` cannot form a ``keyring:SERVICE/USER`` reference, or None."""
    if not service:
        return _("the keyring service name is empty")
    if not user:
        return _("the keyring user name is empty")
    if not _printable_word(service):
        return _("the keyring service name {value!r} contains spaces or control characters").format(
            value=service
        )
    if not _printable_word(user):
        return _("the keyring user name {value!r} contains spaces or control characters").format(
            value=user
        )
    if "/" in service:
        return _(
            "the keyring service name {service!r} contains '/'; the first '/' of "
            "keyring:SERVICE/USER separates the service from the user"
        ).format(service=service)
    return None


def _printable_word(value: str) -> bool:
    return all(character.isprintable() and not character.isspace() for character in value)


def _describe(backend: KeyringBackend) -> str:
    kind = type(backend)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(backend, chainer.ChainerBackend):
        chained = ", ".join(_describe(inner) for inner in backend.backends)
        return f"{name}({chained})"
    return name


def backend_name() -> str:
    """The keyring backend that would be used, e.g. ``keyring.backends.SecretService.Keyring``."""
    return _describe(keyring.get_keyring())


def _usable_backend() -> KeyringBackend:
    backend = keyring.get_keyring()
    # fail/null keyrings mean "nothing installed" (or explicitly disabled); an empty chainer too.
    unusable = isinstance(backend, fail.Keyring | null.Keyring) or (
        isinstance(backend, chainer.ChainerBackend) and not backend.backends
    )
    if unusable:
        raise NoKeyringError(
            _(
                "no usable keyring backend (found {backend}); install or unlock a system keyring "
                "(Secret Service, KWallet, macOS Keychain or Windows Credential Locker), or put "
                "the secret in an environment variable and write ${{env:NAME}} in the profile"
            ).format(backend=_describe(backend))
        )
    return backend


def require_backend() -> str:
    """The usable backend's name; ``NoKeyringError`` when there is none."""
    return _describe(_usable_backend())


def _failure(backend: KeyringBackend, error: Exception, secret: str | None = None) -> str:
    detail = f"{type(error).__name__}: {error}"
    if secret:
        detail = detail.replace(secret, "***")
    return _("the keyring backend {backend} failed ({detail})").format(
        backend=_describe(backend), detail=detail
    )


def get_secret(service: str, user: str) -> str | None:
    """The stored secret, or None when the keyring has nothing for ``service``/``user``."""
    backend = _usable_backend()
    try:
        value = backend.get_password(service, user)
    except Exception as error:  # backends raise their own types (D-Bus, Win32, ...)
        raise SecretStoreError(_failure(backend, error)) from error
    return None if value is None else str(value)


def set_secret(service: str, user: str, value: str) -> None:
    """Store ``value``, replacing any secret already stored for ``service``/``user``."""
    backend = _usable_backend()
    try:
        backend.set_password(service, user, value)
    except Exception as error:
        # The cause may quote the value; keep it out of tracebacks too.
        raise SecretStoreError(_failure(backend, error, secret=value)) from None


def delete_secret(service: str, user: str) -> bool:
    """Remove the secret; False when nothing was stored for ``service``/``user``."""
    backend = _usable_backend()
    try:
        if backend.get_password(service, user) is None:
            return False
        backend.delete_password(service, user)
    except keyring.errors.PasswordDeleteError:
        return False
    except Exception as error:
        raise SecretStoreError(_failure(backend, error)) from error
    return True
