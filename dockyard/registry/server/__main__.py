"""`python -m dockyard.registry.server serve|garbage-collect ...` (what `dockyard registry` runs)."""

import sys

from dockyard.registry.server.main import main

sys.exit(main())
