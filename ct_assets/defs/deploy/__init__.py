"""The deploy layer: the online snapshot that serving reads, and the bento of each champion."""
