"""Past one process: this daemon as a node of several sharing rooms, broadcast and presence through Redis."""
