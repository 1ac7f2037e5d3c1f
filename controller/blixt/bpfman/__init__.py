"""bpfman gRPC client: generated stubs in v1/, typed wrapper in client.py."""
