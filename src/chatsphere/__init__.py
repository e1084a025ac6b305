"""ChatSphere: a real-time communication server for creator and fan platforms."""

__version__ = "0.1.0"

__all__ = ["__version__"]
