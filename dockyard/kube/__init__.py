"""Kubernetes YAML from and to this engine (client side, like compose/): `generate.py` writes manifests
for containers, pods and compose projects; `play.py` runs manifests as pods on any daemon with
Dockyard's (podman's) pod API; `push.py` pushes the images they name and pins them by digest."""
