"""Interfaces (typing.Protocol) between the services and the adapters at the edge."""
