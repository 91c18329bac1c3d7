"""An example floxy plugin: `type: template` handlers and an audit log of lifecycle events."""

__version__ = "0.1.0"
