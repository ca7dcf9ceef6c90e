"""radtrack: a RADIUS-native session tracker."""

__version__ = "0.1.0"
