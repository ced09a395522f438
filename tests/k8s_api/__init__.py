"""A test double of the Kubernetes API, for the collection's tests (see README.md). Not a Kubernetes implementation."""
