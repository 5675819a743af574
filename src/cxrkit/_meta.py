"""Version and the research notice, importable from any layer without the package's own imports."""

__version__ = "0.1.0"

RESEARCH_NOTICE = "For research use only. Not for diagnosis or clinical decisions."
