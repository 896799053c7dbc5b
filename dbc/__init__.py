"""DBC files shipped with firmware_bridge (package data; see dbc/README.md)."""
