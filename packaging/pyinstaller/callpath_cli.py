"""Frozen entry point of ``callpath`` (the command line); the same as the console script."""

import multiprocessing
import sys

from callpath.gui.launcher import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # harmless unless a library starts processes
    sys.exit(main())
