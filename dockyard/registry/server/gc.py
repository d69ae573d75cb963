"""`dockyard registry garbage-collect`: delete the blobs no manifest revision reaches."""

from __future__ import annotations

import json
import os

from dockyard.registry.server.storage import RegistryStorage


def garbage_collect(root: str | os.PathLike[str], delete_untagged: bool = False,
                    dry_run: bool = False) -> list[str]:
    """Mark every blob reachable from a manifest revision (or only tagged ones), delete the rest."""
    st = RegistryStorage(root)
    marked: set[str] = set()

    def mark(name: str, digest: str) -> None:
        if digest in marked or not st.has_blob(digest):
            return
        marked.add(digest)
        try:
            doc = json.loads(st.blob_path(digest).read_bytes())
        except ValueError:
            return
        for m in doc.get("manifests") or []:
            mark(name, m["digest"])
        for desc in [doc.get("config"), *(doc.get("layers") or [])]:
            if desc and not desc.get("urls"):
                marked.add(desc["digest"])

    for name in st.repositories():
        tagged = {st.resolve_tag(name, t) for t in st.tags(name)}
        for digest in st.revisions(name):
            if delete_untagged and digest not in tagged:
                # An untagged child of a tagged index is still reachable through that index.
                continue
            mark(name, digest)
        for t in tagged:
            if t:
                mark(name, t)
        # A referrer (signature, SBOM) is untagged by design: it lives as long as its subject does.
        grew = True
        while grew:
            grew = False
            for digest in st.revisions(name):
                if digest not in marked and st.manifest_subject(digest) in marked:
                    mark(name, digest)
                    grew = True
        if delete_untagged and not dry_run:
            for digest in st.revisions(name):
                if digest not in marked:
                    st.delete_manifest(name, digest)
    removed = []
    for digest in st.digests():
        if digest not in marked:
            removed.append(digest)
            if not dry_run:
                st.delete_blob(digest)
    if not dry_run:  # drop repository links to blobs that are gone
        gone = {d.split(":", 1)[1] for d in removed}
        for link in (st.root / "repositories").rglob("_layers/*"):
            if link.name in gone:
                link.unlink()
    return removed
