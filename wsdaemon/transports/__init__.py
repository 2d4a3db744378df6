"""What the application sees of a client: HTTP requests, the upgrade swap, each transport's connection."""
