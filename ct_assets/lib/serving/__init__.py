"""The serving layer: request rules, prediction, the prediction log, bento builds, the proxy and rollouts."""
