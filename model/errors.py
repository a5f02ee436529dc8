"""The one exception type of model/; its message says what to change, and the command line shows it as one line."""


class ModelError(ValueError):
    """A model shape, checkpoint or pretrained folder that cannot be used as given."""
