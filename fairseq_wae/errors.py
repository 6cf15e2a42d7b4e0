"""The plugin's refusals."""


class CheckpointError(ValueError):
    """A checkpoint or save dir that must not be used: the message names the files."""
