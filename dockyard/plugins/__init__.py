"""Docker's plugin protocol (JSON over HTTP on a unix socket): discovery, activation, calls."""
