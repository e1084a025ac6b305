"""Baseline servers ChatSphere is compared with (same load, no persistence)."""
