"""``python -m twostep``: the same command line as ``twostep``."""

import sys

from .cli import main

sys.exit(main())
