"""Failures in plain words, for the CLI, the app and the HTML export: what each OONI-style
failure string means (GUIDE §3), what to do about it, and the names of a call's stages."""

from __future__ import annotations

from callpath.core.i18n import N_, _

STAGE_NAMES = {
    "resolve": N_("name lookup"),
    "connect": N_("connection to the server"),
    "turn_allocate": N_("relay allocation"),
    "ice": N_("finding a route (ICE)"),
    "dtls": N_("encryption handshake (DTLS)"),
    "media_up": N_("first audio and video"),
    "quality": N_("call quality"),
}

# Plain-language explanations of OONI-style failure strings (GUIDE §3).
FAILURE_EXPLANATIONS = {
    "turn_auth_failed": N_(
        "The relay server refused the user name or password in the profile. Ask whoever sent "
        "you the profile for current credentials."
    ),
    "ssl_unknown_authority": N_(
        "The server's certificate was not issued by an authority this computer trusts. Either "
        "the server uses a private certificate, or someone on the network is intercepting the "
        "encrypted connection."
    ),
    "ssl_invalid_hostname": N_(
        "The server presented a certificate for a different name. The profile may have the "
        "wrong server name, or the connection is being intercepted."
    ),
    "ssl_invalid_certificate": N_(
        "The server's certificate is not valid (expired or malformed), or the connection is "
        "being intercepted."
    ),
    "ssl_failed_handshake": N_(
        "The encrypted (TLS) connection could not be set up. Networks that block by server name "
        "often break the handshake like this."
    ),
    "connection_refused": N_(
        "The server actively refused the connection: nothing listens on that port, or a "
        "firewall rejects it."
    ),
    "connection_reset": N_(
        "The connection was cut in the middle. Censoring networks often do this to connections "
        "they recognise."
    ),
    "eof_error": N_("The server or the network closed the connection unexpectedly."),
    "generic_timeout_error": N_(
        "No answer arrived in time. The packets were probably dropped on the way: a typical sign "
        "of blocking."
    ),
    "stun_no_response": N_(
        "The STUN server never answered. UDP traffic, or call set-up messages specifically, seem "
        "to be blocked."
    ),
    "stun_bad_response": N_("The STUN server's answer was garbled or not a STUN message."),
    "ice_failed": N_(
        "The two ends of the call could not find any working route to each other. This is what "
        "a call stuck at \u201cconnecting\u2026\u201d looks like."
    ),
    "dtls_handshake_timeout": N_(
        "A route was found, but the call's encryption handshake never completed. Some censors "
        "cut calls exactly at this moment."
    ),
    "media_stalled": N_(
        "The call connected, but audio or video stopped arriving for several seconds. Calls on "
        "this path would freeze or drop."
    ),
    "media_degraded": N_("Audio or video arrived, but too poorly for a comfortable call."),
    "path_not_exercised": N_(
        "The call connected, but not over the path under test, so this path proves nothing. "
        "This is a problem in the test set-up, not in the network."
    ),
    "dns_nxdomain_error": N_(
        "The server's name does not exist according to the DNS. Either the name in the profile "
        "is wrong, or the network's DNS is hiding it."
    ),
    "dns_no_answer": N_("The DNS returned no address for the server's name."),
    "dns_lookup_error": N_("The server's name could not be looked up."),
    "dns_bogon_error": N_(
        "The DNS returned an address that cannot be right: a sign of DNS tampering."
    ),
    "host_unreachable": N_("The server's address cannot be reached from this network."),
    "network_unreachable": N_("This computer has no route to the server's network."),
    "interrupted": N_("The test was stopped before this path finished."),
    "http_unexpected_status_code": N_(
        "The echo server answered with an error. It may be overloaded, or the token in the "
        "profile may be wrong."
    ),
    "turn_allocate_failed": N_("The relay server refused to relay this call."),
    "quic_blocked": N_(
        "The QUIC (HTTP/3) handshake with the MASQUE proxy never completed: UDP or QUIC is "
        "blocked on this network."
    ),
    "quic_incompatible_version": N_(
        "The MASQUE proxy speaks a QUIC version this CallPath does not understand."
    ),
    "h3_datagram_unsupported": N_(
        "The MASQUE proxy answered, but it does not carry HTTP/3 datagrams, so it cannot relay "
        "a call."
    ),
    "masque_connect_udp_refused": N_(
        "The MASQUE proxy refused to relay the call's UDP (CONNECT-UDP refused). Check the token "
        "in the profile and the targets the proxy allows."
    ),
    "unknown_failure": N_("Something unexpected went wrong; the details below help support staff."),
}

NEXT_STEPS = {
    "turn_auth_failed": N_("Ask the person who sent the profile for new relay credentials."),
    "ssl_unknown_authority": N_(
        "If the relay uses its own certificate, add its CA bundle to the profile (ca_bundle). "
        "Otherwise do not trust this network with private data."
    ),
    "ssl_invalid_hostname": N_(
        "Check the server name in the profile; if it is right, the connection is being intercepted."
    ),
    "connection_refused": N_("Check that the server is running and that the port is right."),
    "connection_reset": N_(
        "Try a relay over TLS on port 443, which censors find hardest to tell from web traffic."
    ),
    "generic_timeout_error": N_(
        "Try a path over TCP or TLS on port 443; they pass where UDP is dropped."
    ),
    "stun_no_response": N_("Use a TURN relay over TCP or TLS instead of direct UDP."),
    "ice_failed": N_("Use a TURN relay over TCP or TLS (port 443) for calls on this network."),
    "dtls_handshake_timeout": N_(
        "Use a relay over TLS on port 443 so the call's handshake is hidden inside it."
    ),
    "media_stalled": N_(
        "Calls die after connecting: a relay over TLS, or a VPN, usually avoids this kind of "
        "cut-off."
    ),
    "path_not_exercised": N_("Send the report to support staff: the test set-up needs fixing."),
    "dns_nxdomain_error": N_(
        "Check the server name; if it is right, use the server's IP address or another DNS "
        "resolver."
    ),
    "interrupted": N_("Run the test again and let it finish for a complete answer."),
}


def _text(message: str | None) -> str | None:
    return None if message is None else _(message)


def stage_name(stage: str) -> str:
    """A stage (``turn_allocate`` …) in plain words; unknown ones as they are."""
    return _text(STAGE_NAMES.get(stage)) or stage


def failure_key(failure: str) -> str:
    """The dictionary key of a failure string: ``turn_allocate_failed:486`` → its family."""
    return failure.split(":", 1)[0].strip()


def explain_failure(failure: str | None) -> str | None:
    """Plain words for a failure string; unknown strings get the generic explanation."""
    if failure is None:
        return None
    key = failure_key(failure)
    message = FAILURE_EXPLANATIONS.get(key)
    if message is None and key.startswith("socks_"):
        return _("The proxy refused or broke the connection ({failure}).").format(failure=key)
    if message is None and key.startswith("ssl_"):
        message = FAILURE_EXPLANATIONS["ssl_failed_handshake"]
    return _(message or FAILURE_EXPLANATIONS["unknown_failure"])


def next_step_for(failure: str | None) -> str | None:
    if failure is None:
        return None
    return _text(NEXT_STEPS.get(failure_key(failure)))
