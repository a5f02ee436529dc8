"""The one exception type of model/: a model that cannot be built or loaded as asked.

Its message says what to change; the command-line layer shows it as one line.
"""


class ModelError(ValueError):
    """A model shape, checkpoint or pretrained folder that cannot be used as given."""
