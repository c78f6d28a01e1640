"""The data layer: landing files, ingest, validation, quality, features, profiles and the online snapshot."""
