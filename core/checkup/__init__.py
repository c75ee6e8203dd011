"""``callpath check``: can this network carry the messengers' messages and calls, directly and
through the local proxies, and what fixes it? No profile, no secrets.

``world`` says where probes go (the real network, or the lab's stand-ins), ``engine`` runs the
probes and judges them (``callpath.core.messengers.judge``), ``document`` writes the report's
``messengers``/``network``/``proxies`` sections."""
