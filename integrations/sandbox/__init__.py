"""Simulated upstreams on loopback for the tests and `python -m bot demo`. Nothing leaves 127.0.0.1."""
