"""The errors of data reading: one line naming the file or value and what to do."""


class DataError(ValueError):
    """Bad or missing input data; the message names the file or value and what to do."""


class DataNotFoundError(DataError, FileNotFoundError):
    """The dataset (or one of its files) is not where it was looked for."""
