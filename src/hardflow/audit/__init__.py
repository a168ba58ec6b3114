"""Audits: images (CIS Docker Benchmark §4, Dockle, NIST SP 800-190 §4.1, reproducibility) and
manifests (CIS §5, Kubernetes Pod Security Standards), reported as text, JSON or SARIF.

Entry points: :func:`hardflow.audit.run.audit_image` and
:func:`hardflow.audit.run.audit_manifests`.
"""
