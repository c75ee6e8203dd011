"""MASQUE: UDP proxying over HTTP/3 (RFC 9298 CONNECT-UDP, RFC 9297 HTTP Datagrams).

``capsule`` holds the wire formats (no I/O), ``client`` the tunnel a path uses as its relay,
``endpoint`` the server side mounted by ``callpath echo-server``. See docs/masque.md.
"""

from core.masque.client import MasqueUdpTunnel, open_masque_udp, quic_handshake
from core.masque.endpoint import AllowedTargets, MasqueEndpoint, MasqueEndpointConfig

__all__ = [
    "AllowedTargets",
    "MasqueEndpoint",
    "MasqueEndpointConfig",
    "MasqueUdpTunnel",
    "open_masque_udp",
    "quic_handshake",
]
