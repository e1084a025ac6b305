"""Sans-I/O wire layer: frames <-> commands, domain values <-> wire JSON. No sockets."""
