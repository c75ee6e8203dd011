"""Frozen entry point of ``callpath-gui`` (the desktop app)."""

import multiprocessing
import sys

from callpath.gui.app import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # harmless unless a library starts processes
    sys.exit(main())
