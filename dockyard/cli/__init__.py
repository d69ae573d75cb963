"""The `dockyard` command line."""

import sys

if "argparse" not in sys.modules and "gettext" not in sys.modules:
    # argparse passes every message through gettext: importing gettext, and at the first message
    # locale with a search of the disk for a catalog, costs ~2-3 ms of every command's start-up
    # (issue 20). There is no catalog for argparse's words (docker's CLI is English only, and so is
    # its help here), so argparse gets the identity: what gettext returns when it finds none.
    _stub = type(sys)("gettext")
    _stub.gettext = lambda message: message  # type: ignore[attr-defined]
    _stub.ngettext = lambda singular, plural, n: singular if n == 1 else plural  # type: ignore[attr-defined]
    sys.modules["gettext"] = _stub
    try:
        import argparse  # noqa: F401
    finally:
        del sys.modules["gettext"], _stub
