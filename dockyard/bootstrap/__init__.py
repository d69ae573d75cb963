"""Offline base images built from Debian packages (debootstrap), written as docker-archive tarballs."""

from dockyard.bootstrap.mkimage import DEFAULT_CACHE, IMAGES, Bootstrapper, build

__all__ = ["DEFAULT_CACHE", "IMAGES", "Bootstrapper", "build"]
