"""The one exception type of data/: its message says what to do; the command-line layer shows it as one line."""


class DataError(ValueError):
    """Text, a corpus or a dataset folder that cannot be used as given."""
