"""Command line: thin argument parsing over library functions; printing lives here."""
