"""Delivery: the Slack app, the HTTP entry point, the CLI and the renderings for people."""
