"""Offline validation of the KubeRay manifests in k8s/ and the Dockerfile (no cluster needed)."""
