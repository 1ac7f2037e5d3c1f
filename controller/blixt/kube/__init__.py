"""The Kubernetes side of blixt's processes: the apiserver connection, a watch
cache, status writes, leader election, and the health and metrics endpoint.
Objects are plain JSON dicts throughout."""
