"""Pure rules and values: no asyncio, SQL, JSON or sockets."""
