"""The client of remote registries: the HTTP API with its auth (`remote`, `auth`), pull and push
(`pull`, `push`, `layermap`, `platforms`, `progress`). It knows nothing of our registry server or of
the distribution service built on it (`registry/service.py`)."""
