"""``python -m clipcam``: the command line of clipcam.cli (explain, batch, eval and the rest)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
