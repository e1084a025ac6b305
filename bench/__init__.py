"""ChatSphere benchmark: load generator, baseline servers, scenarios and report."""
