"""Test and demo infrastructure: a loopback Hugging Face Hub (:mod:`bundler.testing.hub`)."""
