"""The API groups blixt reads and writes, named once for the translation
and the Kubernetes client alike."""

GATEWAY = "gateway.networking.k8s.io"
DISCOVERY = "discovery.k8s.io"
COORDINATION = "coordination.k8s.io"
