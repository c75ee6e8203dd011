"""``callpath secret set|delete SERVICE USER``: keep profile secrets in the OS keyring.

A profile then refers to the secret as ``keyring:SERVICE/USER``. Values are read with getpass
(never echoed) or, for scripts, as one line of standard input; they are never printed.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from callpath.core.i18n import _
from callpath.core.profile import secretstore

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def add_parser(subparsers: Any) -> None:
    """Register ``secret`` on the top-level ``subparsers`` (from ``add_subparsers()``)."""
    secret = subparsers.add_parser(
        "secret",
        help=_("store or delete a secret used by profiles (keyring:SERVICE/USER)"),
        description=_(
            "Keep TURN credentials and echo tokens in the operating system's keyring. A profile "
            "refers to a stored secret as keyring:SERVICE/USER."
        ),
    )
    actions = secret.add_subparsers(dest="secret_action", metavar="ACTION", required=True)
    store = actions.add_parser(
        "set",
        help=_("store a secret (asks for it without showing it)"),
        description=_("Store a secret in the keyring, replacing any secret stored before."),
    )
    store.add_argument("service", metavar="SERVICE", help=_("keyring service, e.g. callpath"))
    store.add_argument("user", metavar="USER", help=_("keyring user, e.g. alice"))
    store.add_argument(
        "--stdin",
        action="store_true",
        help=_("read the secret from the first line of standard input instead of asking"),
    )
    remove = actions.add_parser(
        "delete",
        help=_("delete a stored secret"),
        description=_("Delete a secret from the keyring."),
    )
    remove.add_argument("service", metavar="SERVICE", help=_("keyring service, e.g. callpath"))
    remove.add_argument("user", metavar="USER", help=_("keyring user, e.g. alice"))


def _fail(message: str) -> int:
    print(_("callpath secret: {message}").format(message=message), file=sys.stderr)
    return EXIT_BAD_INPUT


def _read_secret(args: argparse.Namespace) -> str:
    """The secret typed or piped by the user; ValueError with a message when there is none."""
    if args.stdin:
        line = sys.stdin.readline()
        value = line.rstrip("\r\n")
        if not value:
            raise ValueError(_("standard input had no secret on its first line; nothing stored"))
        return value
    reference = f"{args.service}/{args.user}"
    try:
        value = getpass.getpass(_("Secret for {reference}: ").format(reference=reference))
        if not value:
            raise ValueError(_("the secret is empty; nothing stored"))
        again = getpass.getpass(_("Type it again: "))
    except EOFError:
        raise ValueError(_("no secret was typed; nothing stored")) from None
    if again != value:
        raise ValueError(_("the two entries differ; nothing stored"))
    return value


def run(args: argparse.Namespace) -> int:
    """Carry out ``secret set`` or ``secret delete``; 0 on success, 2 with a message otherwise."""
    service: str = args.service
    user: str = args.user
    problem = secretstore.keyring_name_problem(service, user)
    if problem:
        return _fail(problem)
    try:
        if args.secret_action == "set":
            # Fail on a missing keyring before asking the user to type a secret.
            backend = secretstore.require_backend()
            try:
                value = _read_secret(args)
            except ValueError as error:
                return _fail(str(error))
            secretstore.set_secret(service, user, value)
            print(
                _(
                    "Stored the secret for service {service}, user {user} in {backend}. "
                    "Refer to it in a profile as keyring:{service}/{user}"
                ).format(service=service, user=user, backend=backend)
            )
            return EXIT_OK
        if args.secret_action == "delete":
            if not secretstore.delete_secret(service, user):
                return _fail(
                    _("no secret is stored for service {service}, user {user}").format(
                        service=service, user=user
                    )
                )
            print(
                _("Deleted the secret for service {service}, user {user}").format(
                    service=service, user=user
                )
            )
            return EXIT_OK
    except secretstore.SecretStoreError as error:
        return _fail(str(error))
    return _fail(
        _("unknown action {action!r}; use set or delete").format(action=args.secret_action)
    )
