"""The /etc/hosts, /etc/resolv.conf and /etc/hostname a container gets, rendered as Docker does."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

_HOSTS_DEFAULT = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::\tip6-localnet\n"
    "ff00::\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)

# Docker's fallback when the host only has loopback resolvers.
DEFAULT_DNS = ["8.8.8.8", "8.8.4.4"]


def hosts(hostname: str, ips: list[str], extra_hosts: list[str], domainname: str = "",
          links: list[tuple[str, list[str]]] | None = None) -> str:
    """extra_hosts entries are "name:ip" (docker --add-host), written before the container's own line,
    as are legacy links ([(ip, [alias, hostname, name])])."""
    out = _HOSTS_DEFAULT
    for entry in extra_hosts:
        name, _, ip = entry.partition(":") if "=" not in entry else entry.partition("=")
        out += f"{ip}\t{name}\n"
    for ip, names in links or []:
        out += f"{ip}\t{' '.join(names)}\n"
    full = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    for ip in ips:
        out += f"{ip}\t{full}\n"
    return out


@dataclass
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


def parse_resolv(text: str) -> ResolvConf:
    rc = ResolvConf()
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            rc.nameservers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            rc.search = parts[1:]
        elif parts[0] == "options":
            rc.options += parts[1:]
    return rc


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False


def resolv(host: ResolvConf, dns: list[str], dns_search: list[str], dns_options: list[str],
           embedded: str | None = None) -> str:
    """A container's resolv.conf. With `embedded` (a user network's DNS server address) every
    query goes there; otherwise the host's resolvers minus loopback ones, as on Docker's default bridge."""
    search = dns_search or host.search
    options = list(dns_options or host.options)
    if embedded:
        servers = [embedded]
        if not any(o.startswith("ndots:") for o in options):
            options.append("ndots:0")  # Docker's embedded DNS answers short names itself
    else:
        servers = dns or [s for s in host.nameservers if not is_loopback(s)] or DEFAULT_DNS
    out = "".join(f"nameserver {s}\n" for s in servers)
    if search and search != ["."]:
        out += "search " + " ".join(search) + "\n"
    if options:
        out += "options " + " ".join(options) + "\n"
    return out
