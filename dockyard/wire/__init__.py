"""The Engine API's wire types as typed structs (msgspec), named and spelled as moby's
api/types (the swagger's HostConfig, Resources, ...). Below the services, beside `oci`: the API,
the services and the client side may all use them.

Why msgspec, measured (a `run -p 8080:80 --memory 64m nginx` create body, 2 CPUs, median of
5 x 20000): msgspec decodes it into structs in 11.5 us, pydantic 2 in 35.4 us, json.loads into
dicts in 37.5 us; imported into the daemon, msgspec adds 1.0 MiB RSS and pydantic 5.4 MiB
(before its models). The daemon's RSS is a target (<= 150 MiB with 50 running), so msgspec.
"""

import sys

if "msgspec" not in sys.modules and "typing_extensions" not in sys.modules:
    # msgspec imports typing_extensions only for get_type_hints and Required/NotRequired, which typing
    # has since 3.11; through it come inspect, ast, dis and tokenize: ~10 ms of `dockyard run`'s
    # start-up (issue 20). Let msgspec take typing's; other importers still get typing_extensions.
    sys.modules["typing_extensions"] = None  # type: ignore[assignment]
    # msgspec imports uuid, and uuid imports platform only to ask platform.system() whether this is
    # Linux or AIX (for getnode): ~2 ms of `dockyard run`'s start-up, platform's own regular
    # expressions mostly. uuid gets os.uname's answer, the one platform.system() gives.
    _platform = None
    if "uuid" not in sys.modules and "platform" not in sys.modules:
        import os

        _platform = type(sys)("platform")
        _platform.system = lambda: os.uname().sysname  # type: ignore[attr-defined]
        sys.modules["platform"] = _platform
    try:
        import msgspec  # noqa: F401
    finally:
        del sys.modules["typing_extensions"]
        if _platform is not None and sys.modules.get("platform") is _platform:
            del sys.modules["platform"]
        del _platform
