"""Containers: the images (online and air-gapped), the compose stack's Docker SDK operations."""
