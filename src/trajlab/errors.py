"""Errors that reach the user as one line (the CLI prints them and exits with code 2)."""


class TrajlabError(Exception):
    """Base class for errors caused by the user's input, not by a bug."""


class ConfigError(TrajlabError, ValueError):
    """A config field is unknown or outside its allowed range; the message names the field."""


class PluginError(ConfigError):
    """A plug-in (family, problem, metric or preset) breaks its contract; the message names it."""
