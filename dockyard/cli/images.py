"""Image commands: images, pull, push, tag, rmi, save, load, import, history, image prune/inspect."""

from __future__ import annotations

import argparse
import sys

from dockyard.cli import prune
from dockyard.cli.common import CLIError, Command, Ctx, add_format, parse_filters
from dockyard.cli.containers import _refuse_tty, copy_stream_to, inspect_objects
from dockyard.cli.formatting import ago, ellipsis, human_size, short_id, write_rows
from dockyard.client import APIError

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:
    from typing import Any

IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                 "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
                 "VirtualSize": "VIRTUAL SIZE"}
IMAGE_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGE_TABLE_DIGESTS = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"


def _image_rows(images: list[dict[str, Any]], trunc: bool) -> list[dict[str, Any]]:
    import time

    rows = []
    for im in images:
        iid = short_id(im["Id"]) if trunc else im["Id"]
        digests = {d.split("@", 1)[0]: d.split("@", 1)[1] for d in im.get("RepoDigests") or [] if "@" in d}
        tags = [t for t in im.get("RepoTags") or [] if t != "<none>:<none>"]
        pairs = [tuple(t.rsplit(":", 1)) for t in tags] or [
            (repo, "<none>") for repo in digests] or [("<none>", "<none>")]
        created = im.get("Created", 0)
        for repo, tag in pairs:
            rows.append({
                "Repository": repo, "Tag": tag, "ID": iid, "Digest": digests.get(repo, "<none>"),
                "CreatedSince": ago(created),
                "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)),
                "Size": human_size(im.get("Size", 0)), "VirtualSize": human_size(im.get("Size", 0)),
                "Containers": str(im.get("Containers", -1)) if im.get("Containers", -1) >= 0 else "N/A",
                "SharedSize": "N/A", "UniqueSize": "N/A",
            })
    return rows


def cmd_images(ctx: Ctx, args: argparse.Namespace) -> int:
    filters = parse_filters(args.filter) or {}
    if args.repository:
        filters["reference"] = [args.repository]
    images = ctx.client.images(all=args.all, filters=filters or None, digests=args.digests)
    trunc = not args.no_trunc
    rows = _image_rows(images, trunc)
    if args.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    write_rows(args.format, rows, IMAGE_HEADERS, IMAGE_TABLE_DIGESTS if args.digests else IMAGE_TABLE)
    return 0


def setup_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--digests", action="store_true")
    p.add_argument("--tree", action="store_true")
    add_format(p)
    p.add_argument("repository", nargs="?")


def _progress(events: Any, quiet: bool) -> str:
    """docker's progress on stdout (bars on a terminal, plain lines elsewhere); returns the last status."""
    from dockyard.cli.progress import ProgressError, show

    try:
        return show(events, sys.stdout, quiet=quiet)
    except ProgressError as e:
        raise APIError(500, str(e)) from None


def _full_name(ref: str) -> str:
    from dockyard.cli.auth import INDEX_SERVER, registry_of

    name = ref
    if "@" not in ref and ":" not in ref.rsplit("/", 1)[-1]:
        name += ":latest"
    if registry_of(ref) == INDEX_SERVER:
        name = ("docker.io/library/" if "/" not in ref else "docker.io/") + name
    return name


def cmd_pull(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.cli.run import registry_auth, split_tag

    name, tag = split_tag(args.name)
    if tag is None and "@" not in args.name and not args.all_tags:
        tag = "latest"
        if not args.quiet:
            print("Using default tag: latest")
    _progress(ctx.client.pull(name, tag, platform=args.platform, auth=registry_auth(args.name)), args.quiet)
    print(_full_name(args.name))
    return 0


def setup_pull(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all-tags", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform")
    p.add_argument("--disable-content-trust", action="store_true")
    p.add_argument("name")


def cmd_push(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.cli.run import registry_auth, split_tag

    name, tag = split_tag(args.name)
    if tag is None and not args.all_tags and "@" not in args.name:
        tag = "latest"
        if not args.quiet:
            print("Using default tag: latest")
    _progress(ctx.client.push(name, tag, auth=registry_auth(args.name), with_referrers=args.with_referrers),
              args.quiet)
    if args.quiet:
        print(args.name)
    return 0


def setup_push(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all-tags", action="store_true")
    p.add_argument("--with-referrers", action="store_true",
                   help="Push the manifest as pulled and copy its OCI referrers (signatures, SBOMs) along")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform")
    p.add_argument("--disable-content-trust", action="store_true")
    p.add_argument("name")


def cmd_tag(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.cli.run import split_tag

    repo, tag = split_tag(args.target)
    ctx.client.tag(args.source, repo, tag or "latest")
    return 0


def setup_tag(p: argparse.ArgumentParser) -> None:
    p.add_argument("source")
    p.add_argument("target")


def cmd_rmi(ctx: Ctx, args: argparse.Namespace) -> int:
    failed = 0
    for ref in args.images:
        try:
            for item in ctx.client.remove_image(ref, force=args.force, noprune=args.no_prune):
                for k, v in item.items():
                    print(f"{k}: {v}")
        except APIError as e:
            print(f"Error response from daemon: {e.message}", file=sys.stderr)
            failed = 1
    return failed


def setup_rmi(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true")
    p.add_argument("images", nargs="+")


def cmd_save(ctx: Ctx, args: argparse.Namespace) -> int:
    _refuse_tty(args.output)
    with ctx.client.save(args.images) as s:
        copy_stream_to(s, args.output)
    return 0


def setup_save(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output")
    p.add_argument("--platform")
    p.add_argument("images", nargs="+")


def _file_chunks(f: Any) -> Any:
    while True:
        data = f.read(1 << 20)
        if not data:
            return
        yield data


def cmd_load(ctx: Ctx, args: argparse.Namespace) -> int:
    f: Any
    if args.input:
        f = open(args.input, "rb")
    else:
        if sys.stdin.isatty():
            raise CLIError("requested load from stdin, but stdin is empty", 1)
        f = sys.stdin.buffer
    with f, ctx.client.load(_file_chunks(f), quiet=args.quiet) as s:
        _progress(s.json(), quiet=False)  # with -q the daemon sends only the "Loaded image" lines
    return 0


def setup_load(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform")


def cmd_import(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.cli.run import split_tag

    repo, tag = split_tag(args.reference) if args.reference else (None, None)
    f = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    with f:
        last = _progress(ctx.client.import_image(_file_chunks(f), repo, tag, args.change or None, args.message),
                         quiet=True)
    print(last)
    return 0


def setup_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message")
    p.add_argument("--platform")
    p.add_argument("file")
    p.add_argument("reference", nargs="?")


HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                   "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}
HISTORY_TABLE = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"


def cmd_history(ctx: Ctx, args: argparse.Namespace) -> int:
    trunc = not args.no_trunc
    rows = []
    for h in ctx.client.history(args.image):
        hid = h.get("Id", "<missing>")
        if hid != "<missing>" and trunc:
            hid = short_id(hid)
        by = h.get("CreatedBy", "").replace("\t", " ")
        rows.append({"ID": hid, "CreatedSince": ago(h.get("Created", 0)) if args.human else str(h.get("Created")),
                     "CreatedAt": str(h.get("Created")),
                     "CreatedBy": ellipsis(by, 45) if trunc else by,
                     "Size": human_size(h.get("Size", 0)) if args.human else str(h.get("Size", 0)),
                     "Comment": h.get("Comment", "")})
    if args.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    write_rows(args.format, rows, HISTORY_HEADERS, HISTORY_TABLE)
    return 0


def setup_history(p: argparse.ArgumentParser) -> None:
    p.add_argument("-H", "--human", type=lambda v: v.lower() in ("1", "true"), default=True, nargs="?",
                   const=True)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    add_format(p)
    p.add_argument("image")


def cmd_image_inspect(ctx: Ctx, args: argparse.Namespace) -> int:
    return inspect_objects(ctx, args.names, "image", args.format)


def setup_image_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", default="")
    p.add_argument("names", nargs="+")


def cmd_image_prune(ctx: Ctx, args: argparse.Namespace) -> int:
    warn = ("WARNING! This will remove all images without at least one container associated to them."
            if args.all else "WARNING! This will remove all dangling images.")
    filters = parse_filters(args.filter) or {}
    filters["dangling"] = ["false" if args.all else "true"]
    return prune.prune(ctx, warn, args.force, [(prune.IMAGES, filters)])


def setup_image_prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])


SEARCH_HEADERS = {"Name": "NAME", "Description": "DESCRIPTION", "StarCount": "STARS", "IsOfficial": "OFFICIAL",
                  "IsAutomated": "AUTOMATED"}
SEARCH_TABLE = "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}"


def cmd_search(ctx: Ctx, args: argparse.Namespace) -> int:
    import json

    params = {"term": args.term, "limit": args.limit,
              "filters": json.dumps(parse_filters(args.filter)) if args.filter else None}
    rows = []
    for r in ctx.client.get("/images/search", params):
        desc = (r.get("description") or "").replace("\n", " ")
        rows.append({"Name": r.get("name", ""), "Description": desc if args.no_trunc else ellipsis(desc, 45),
                     "StarCount": str(r.get("star_count", 0)), "IsOfficial": "[OK]" if r.get("is_official") else "",
                     "IsAutomated": "[OK]" if r.get("is_automated") else ""})
    write_rows(args.format, rows, SEARCH_HEADERS, SEARCH_TABLE)
    return 0


def setup_search(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--filter", action="append", default=[])
    add_format(p)
    p.add_argument("--limit", type=int, default=25)
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("term")


REFERRER_HEADERS = {"Digest": "DIGEST", "ArtifactType": "ARTIFACT TYPE", "MediaType": "MEDIA TYPE",
                    "Size": "SIZE", "Annotations": "ANNOTATIONS"}
REFERRER_TABLE = "table {{.Digest}}\t{{.ArtifactType}}\t{{.Size}}"


def cmd_image_referrers(ctx: Ctx, args: argparse.Namespace) -> int:
    """The OCI 1.1 referrers (signatures, SBOMs, attestations) of an image in its registry, asked
    through the daemon (its mirrors, insecure registries and the CLI's stored login apply)."""
    from dockyard.cli.run import registry_auth

    res = ctx.client.referrers(args.image, args.artifact_type or None, auth=registry_auth(args.image))
    rows = []
    for d in res.get("Referrers") or []:
        digest = str(d.get("digest", ""))
        rows.append({"Digest": digest if args.no_trunc else digest[:19], "MediaType": d.get("mediaType", ""),
                     "ArtifactType": d.get("artifactType") or "<none>", "Size": str(d.get("size", 0)),
                     "Annotations": ",".join(f"{k}={v}" for k, v in sorted((d.get("annotations") or {}).items()))})
    if args.quiet:
        for r in res.get("Referrers") or []:
            print(r.get("digest", ""))
        return 0
    write_rows(args.format, rows, REFERRER_HEADERS, REFERRER_TABLE)
    return 0


def setup_image_referrers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifact-type", help="Only referrers of this artifact type")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show digests")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("--format", default="", help=(
        "Format output using a custom template: 'table': Print output in table format with column headers "
        "(default) 'table TEMPLATE': Print output in table format using the given Go template 'json': Print "
        "in JSON format 'TEMPLATE': Print output using the given Go template"))
    p.add_argument("image")


IMG = "image"
COMMANDS = [
    Command("search", cmd_search, setup_search, help="Search Docker Hub for images"),
    Command("images", cmd_images, setup_images, IMG, ["ls", "list"], help="List images"),
    Command("pull", cmd_pull, setup_pull, IMG, help="Download an image from a registry"),
    Command("push", cmd_push, setup_push, IMG, help="Upload an image to a registry"),
    Command("tag", cmd_tag, setup_tag, IMG, help="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    Command("rmi", cmd_rmi, setup_rmi, IMG, ["rm", "remove"], help="Remove one or more images"),
    Command("save", cmd_save, setup_save, IMG, help="Save one or more images to a tar archive"),
    Command("load", cmd_load, setup_load, IMG, help="Load an image from a tar archive or STDIN"),
    Command("import", cmd_import, setup_import, IMG, help="Import the contents from a tarball"),
    Command("history", cmd_history, setup_history, IMG, help="Show the history of an image"),
    Command("inspect", cmd_image_inspect, setup_image_inspect, IMG, top=False, help="Display image details"),
    Command("prune", cmd_image_prune, setup_image_prune, IMG, top=False, help="Remove unused images"),
    Command("referrers", cmd_image_referrers, setup_image_referrers, IMG, top=False,
            help="List an image's OCI referrers (signatures, SBOMs) in its registry"),
]
