"""The command line, the entry point, and the classification server with its client."""
