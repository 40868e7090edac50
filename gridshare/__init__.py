"""GridShare: dynamic operating envelopes for a full feeder, published over IEEE 2030.5 / CSIP-AUS."""

__version__ = "0.1.0"
