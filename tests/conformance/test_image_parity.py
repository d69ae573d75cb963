"""Image endpoints as clients read them, on our daemon and on the real dockerd with the same
docker-py calls: load errors, intermediate build images in the list and the count in /info."""

from __future__ import annotations

import io

import docker
import docker.errors
import pytest

from tests.conftest import Engines


@pytest.mark.parametrize("data", [b"abc", b"\0" * 100], ids=["not-a-tar", "truncated-tar"])
def test_load_error_is_in_the_stream(engines: Engines, data: bytes) -> None:
    def run(c: docker.DockerClient) -> str:
        with pytest.raises(docker.errors.ImageLoadError) as e:
            c.images.load(data)
        return str(e.value)

    ours, ref = engines.both_docker(run)
    assert ours == ref == "Error processing tar file(exit status 1): unexpected EOF"


def test_intermediate_build_images_only_with_all(engines: Engines) -> None:
    dockerfile = b"FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n"

    def run(c: docker.DockerClient) -> tuple[bool, bool, bool]:
        img, _ = c.images.build(fileobj=io.BytesIO(dockerfile), rm=True, nocache=True)
        try:
            parent = c.api.inspect_image(img.id)["Parent"]
            shown = {i["Id"] for i in c.api.images()}
            every = {i["Id"] for i in c.api.images(all=True)}
            return (parent in every, parent not in shown, len(every) == c.info()["Images"])
        finally:
            c.images.remove(img.id, force=True)

    ours, ref = engines.both_docker(run)
    assert ours == ref == (True, True, True)
