"""The ``callpath`` command: ``callpath gui …`` opens the desktop app, anything else is the core's
command line. It sits above both, so that core never imports the front end."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from callpath.core.cli.execution import fail
from callpath.core.cli.main import main as cli_main
from callpath.core.i18n import _


def open_gui(arguments: list[str]) -> int:
    try:
        from callpath.gui.app import main as app_main
    except ImportError as error:
        return fail(
            _("the desktop app needs PySide6: pip install 'callpath[gui]' ({error})").format(
                error=error
            )
        )
    return int(app_main(arguments))


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(argv, open_gui=open_gui)


def gui_main(argv: Sequence[str] | None = None) -> int:
    """``callpath-gui``: the app, or one line saying how to install it (the command line's
    installation, e.g. ``scripts/lab.sh``, has no Qt)."""
    return open_gui(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
