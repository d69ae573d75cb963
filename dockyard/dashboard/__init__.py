"""`dockyard dashboard`: a web page over the Engine API (a client, like the CLI; never the engine itself)."""
