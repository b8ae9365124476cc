"""Meshpad peer: the aiohttp shell around the sans-IO core in ``crdt``."""
