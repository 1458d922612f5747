"""Client for the object-detection HTTP service; see client.send2api."""
