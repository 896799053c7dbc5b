"""The firmware_bridge command-line agent: CAN/OBD-II frames to kei-car trip statistics."""
__version__ = "0.1.0"
