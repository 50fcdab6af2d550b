"""Units: every rate and distortion is in nats unless its name says bits (1 bit = ln 2 nats)."""
import math


def nats_to_bits(nats):
    return nats / math.log(2.0)
