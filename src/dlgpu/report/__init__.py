"""Rendering: terminal tables and JSON. The only place numbers become strings."""
