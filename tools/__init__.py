"""Repository tools: the local fleet (fleet.py) and command-line helpers."""
