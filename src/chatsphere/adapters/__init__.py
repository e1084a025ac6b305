"""Implementations of the ports. The only package that imports drivers."""
