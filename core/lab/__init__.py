"""Built-in lab: userspace servers and censor middlebox for offline demos and tests."""
