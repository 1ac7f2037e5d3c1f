// A CSI node-driver registrar of blixt's own (main.go), built into
// csi-registrar by tests/deps/cluster.sh. A module of its own, nested in
// tests/operator: k8s.io/kubelet v0.35.4 (the cluster's Kubernetes release)
// requires k8s.io/{api,apimachinery,client-go} v0.35.4, which in the parent
// module would raise bpfman-operator's v0.34.3 ones.
module blixt.test/operator/registrar

go 1.25.0

require (
	google.golang.org/grpc v1.72.2
	k8s.io/kubelet v0.35.4
)

require (
	golang.org/x/net v0.47.0 // indirect
	golang.org/x/sys v0.38.0 // indirect
	golang.org/x/text v0.31.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20250528174236-200df99c418a // indirect
	google.golang.org/protobuf v1.36.8 // indirect
)
