"""Production topologies: render compose projects, Kubernetes manifests and Helm values.

Rendering is pure (settings → documents); the thin I/O shell writes the documents and the
generated secret files (mode 0600) into an output directory. Nothing here talks to an engine.
"""
