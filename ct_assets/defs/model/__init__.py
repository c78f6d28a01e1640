"""The model layer: training set, candidate, evaluation (with the gate) and champion."""
