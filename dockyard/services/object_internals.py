"""`dockyard explain` of a network, an image or a volume: what the kernel and the disk hold for it, with why.

As for containers (services/internals.py), what can be read back is read back: the bridge and its
veths from netlink, the rules from nft, the DNS server's socket from /proc/net, snapshot dirs from the
disk, mounts from /proc/self/mountinfo. Our records only name things (which veth is which container,
which instruction made which layer). Blocking: the API runs these in a thread.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import NotFound
from dockyard.network import firewall, netlink, sockets
from dockyard.services.internals import _rules_for
from dockyard.store.overlay import is_mounted

if TYPE_CHECKING:
    from dockyard.services.containers import ContainerService
    from dockyard.services.images import ImageService
    from dockyard.services.networks import NetworkService
    from dockyard.services.volumes import VolumeService


class ObjectInternals:
    def __init__(self, containers: ContainerService, images: ImageService, networks: NetworkService | None = None,
                 volumes: VolumeService | None = None) -> None:
        self.containers = containers
        self.images = images
        self.networks = networks
        self.volumes = volumes

    # ------------------------------------------------------------------ network
    def network(self, ref: str) -> dict[str, Any]:
        if self.networks is None:
            raise NotFound("networks are not enabled")
        net = self.networks.resolve(ref)
        out: dict[str, Any] = {"Kind": "network", "Id": net["id"], "Name": net["name"], "Driver": net["driver"]}
        if net["driver"] != "bridge":
            out["Why"] = ("the host's own network stack, no isolation" if net["driver"] == "host" else
                          "only a loopback interface: no way in or out")
            return out
        host = {ln["name"]: ln for ln in netlink.links()}
        br = host.get(net["bridge"]) or {}
        out["Bridge"] = {"Name": net["bridge"], "Exists": bool(br), "State": br.get("state"), "Mac": br.get("mac"),
                         "Addresses": br.get("addresses", []),
                         "Why": "a Linux bridge is a virtual switch; its address is the containers' gateway"}
        out["Subnet"], out["Gateway"] = net["subnet"], net["gateway"]
        out["SubnetWhy"] = ("IPAM hands out addresses from this range; the bridge holds the first one"
                            + (" (--internal: no route out)" if net["internal"] else ""))
        if net["builtin"]:
            out["DNS"] = {"Why": "the default bridge has no embedded DNS: containers get the host's resolvers "
                                 "(Docker's behaviour); names resolve only on user networks"}
        else:
            bound = sockets.listening(net["gateway"], 53)
            out["DNS"] = {"Address": f"{net['gateway']}:53", "Listening": bound,
                          "Why": "the daemon answers container names on the gateway address; other names go "
                                 "to the host's resolvers"}
        members = {ep["veth"]: ep for ep in self.networks.endpoints(net["id"])}
        veths = []
        for name, ln in sorted(host.items()):
            if ln.get("master") != net["bridge"]:
                continue
            ep = members.get(name)
            veths.append({"Host": name, "State": ln.get("state"), "Container": ep["name"] if ep else None,
                          "ContainerId": ep["cid"] if ep else None, "Address": ep["ip"] if ep else None,
                          "Why": f"the host end of {ep['name']}'s eth cable" if ep else "not one of our endpoints"})
        out["Members"] = veths
        ips = [ipaddress.ip_interface(f"{ep['ip']}/{ipaddress.ip_network(net['subnet']).prefixlen}")
               for ep in members.values() if ep["ip"]]
        ips.append(ipaddress.ip_interface(net["subnet"]))
        out["Table"] = f"ip {self.networks.table}"
        out["Rules"] = _rules_for(firewall.list_rules(self.networks.table), ips, {net["bridge"]})
        return out

    # ------------------------------------------------------------------ image
    def image(self, ref: str) -> dict[str, Any]:
        img = self.images.resolve(ref)
        hist = [h for h in img.config.get("history") or [] if not h.get("empty_layer")]
        made_by = [h.get("created_by", "") for h in hist] if len(hist) == len(img.diff_ids) else []
        dirs = self.images.layer_dirs(img.id)
        layers = []
        for i, (chain, diff, d) in enumerate(zip(img.chain_ids, img.diff_ids, dirs, strict=True)):
            shared = [self.images.display_name(o) for o in self.images.sharing_layer(chain, but=img.id)]
            layers.append({"Index": i + 1, "DiffID": diff, "ChainID": chain, "Dir": str(d), "Exists": d.is_dir(),
                           "Size": img.layer_sizes[i] if i < len(img.layer_sizes) else None,
                           "CreatedBy": made_by[i] if made_by else "", "SharedWith": shared,
                           "Why": "unpacked once; every image and container built on this chain of layers "
                                  "uses the same directory as an overlay lowerdir"})
        users = self.containers.names_using_image(img.id)
        return {"Kind": "image", "Id": img.id, "Tags": img.repo_tags, "Layers": layers, "Containers": users,
                "Why": "an image is a config plus an ordered list of layers; a container stacks them (bottom "
                       "first here, top first in overlay's lowerdir) under its own writable layer"}

    # ------------------------------------------------------------------ volume
    def volume(self, name: str) -> dict[str, Any]:
        if self.volumes is None:
            raise NotFound("volumes are not enabled")
        info = self.volumes.inspect(name)
        data = Path(info["Mountpoint"])
        opts = info.get("Options") or {}
        users = []
        for cid in self.volumes.users(name):
            try:
                c = self.containers.get(cid)
            except Exception:  # noqa: BLE001 - a reference left behind by a container being removed
                continue
            for m in c.mounts or []:
                if m.get("Type") == "volume" and m.get("Name") == name:
                    users.append({"Container": c.name, "Id": c.id, "Destination": m.get("Destination"),
                                  "RW": m.get("RW", True), "Running": c.running})
        try:
            st = os.stat(data)
            owner = {"Uid": st.st_uid, "Gid": st.st_gid, "Mode": oct(st.st_mode & 0o7777)}
        except OSError:
            owner = {}
        return {"Kind": "volume", "Name": name, "Driver": info.get("Driver"), "Directory": str(data),
                "Exists": data.is_dir(), **owner, "Options": opts, "Mounted": is_mounted(data),
                "MountedWhy": ("its options (type/o/device) ask for a mount on the directory, made while a "
                               "container uses it") if opts else "a plain directory: containers bind-mount it",
                "Users": users, "Labels": info.get("Labels") or {},
                "Why": "data kept by the daemon outside any container's layers: it outlives them, and each "
                       "container sees it through a bind mount at its destination"}
