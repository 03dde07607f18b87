"""synclora: portrait video editing by propagating one edited frame through a clip, in sync with the source."""

__version__ = "0.1.0"
