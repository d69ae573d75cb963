"""Object ids and Docker-style names."""

from __future__ import annotations

import random
import re
import secrets

from dockyard.errors import InvalidParameter

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_LEFT = ["admiring", "brave", "clever", "dazzling", "eager", "festive", "gallant", "happy", "jolly",
         "keen", "loving", "modest", "nifty", "optimistic", "peaceful", "quirky", "relaxed", "serene",
         "tender", "upbeat", "vibrant", "wizardly", "youthful", "zealous"]
_RIGHT = ["albattani", "babbage", "curie", "darwin", "einstein", "fermi", "galileo", "hopper",
          "johnson", "kepler", "lovelace", "meitner", "newton", "noether", "pasteur", "ritchie",
          "shannon", "tesla", "turing", "volta", "wozniak", "yonath", "zhukovsky"]


def new_id() -> str:
    return secrets.token_hex(32)


def swarm_id() -> str:
    """An id in swarmkit's form (nodes, networks, the cluster): 25 base-36 digits of 128 random bits."""
    n = int.from_bytes(secrets.token_bytes(17), "big") | (0x80 << 128)  # the high bit: no padding needed
    return _base36(n)[1:26]


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def random_name() -> str:
    return f"{random.choice(_LEFT)}_{random.choice(_RIGHT)}"


def validate_name(name: str) -> str:
    """Docker's container name rule; returns the name without a leading slash."""
    if not NAME_RE.match(name):
        raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")
