"""Where a destination may point: the SSRF policy, shared by validation when a destination is saved
(destinations.validators) and by the connection guard when a delivery is sent (server.http); and
a destination's address as shown to those who may not see its credentials."""

import functools
import ipaddress
import urllib.parse

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def address_allowed(address: IPAddress) -> bool:
    """Public unicast addresses, plus any in DATAPUSHER_ALLOWED_NETWORKS.

    Refused by default: loopback, private (RFC 1918, fc00::/7), link-local (169.254/16 with cloud
    metadata, fe80::/10), CGNAT (100.64/10), multicast, reserved, unspecified, and IPv4-mapped
    IPv6 forms of all of these.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in _networks(tuple(settings.DATAPUSHER_ALLOWED_NETWORKS))):
        return True
    return address.is_global and not (address.is_multicast or address.is_reserved)


def literal_address(host: str) -> IPAddress | None:
    """The IP address a URL's host spells literally (`10.0.0.1`, `[::1]`), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def url_without_credentials(url: str) -> str:
    """The URL without what may hold a credential (user:password@, the query string, a fragment)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
