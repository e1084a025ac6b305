"""The WebSocket edge: connections, the node's hub, frame dispatch. No business rules."""
