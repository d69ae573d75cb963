"""The Engine API's wire types as typed structs (msgspec), named and spelled as moby's
api/types (the swagger's HostConfig, Resources, ...). Below the services, beside `oci`: the API,
the services and the client side may all use them.

Why msgspec, measured (a `run -p 8080:80 --memory 64m nginx` create body, 2 CPUs, median of
5 x 20000): msgspec decodes it into structs in 11.5 us, pydantic 2 in 35.4 us, json.loads into
dicts in 37.5 us; imported into the daemon, msgspec adds 1.0 MiB RSS and pydantic 5.4 MiB
(before its models). The daemon's RSS is a target (<= 150 MiB with 50 running), so msgspec.
"""
