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
        from callpath.gui.app import main as gui_main
    except ImportError as error:
        return fail(
            _("the desktop app needs PySide6: pip install 'callpath[gui]' ({error})").format(
                error=error
            )
        )
    return int(gui_main(arguments))


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(argv, open_gui=open_gui)


if __name__ == "__main__":
    sys.exit(main())
