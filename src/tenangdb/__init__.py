"""TenangDB: backups that let you sleep."""

__version__ = "0.1.0"
