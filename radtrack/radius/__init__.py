"""RADIUS: dictionaries, the packet codec, the duplicate cache and the Disconnect client."""
