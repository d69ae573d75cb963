"""`python -m dockyard.compose ARGS`: compose without the main CLI (tests, scripts)."""

import sys

from dockyard.compose.cli import main

sys.exit(main(sys.argv[1:], None))
