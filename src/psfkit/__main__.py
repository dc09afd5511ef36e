"""``python -m psfkit``: the command line (:mod:`psfkit.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
