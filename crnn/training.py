"""Training: compile, fit, evaluate, predict (being written; see issue #4)."""


class TrainingMixin:
    """The Keras training API of :class:`crnn.Model`."""
