"""A Kubernetes cluster prepared by the satk8s Helm chart, as satk8s sees it.

- `settings`: the chart's `satk8s-settings` ConfigMap (or a file exported from it) as one typed
  `ClusterSettings`: the store, the S3 endpoint, Secret names and keys, the run ServiceAccount,
  GPU pools. Compile, submit, the doctor and `satk8s setup launcher` read it from here.
- `kube`: a Kubernetes API client from a kubeconfig or from inside a pod.
- `launcher`: KFP's per-namespace `kfp-launcher` ConfigMap: reading it, and merging satk8s's
  keys into it with a server-side apply.
- `gpus` (with `gpus.yaml`): the GPU catalogue: GPU types, the node label that tells them apart
  on each cloud, node shapes. The compute presets and the chart's pools read it.
- `shapes`: what a node shape leaves for pods (each provider's reserve), and whether requests fit.
- `scheduling`: the scheduler's filters applied to a compiled pipeline's tasks and a cluster's
  nodes (`satk8s doctor --pipeline`); `quantity`: Kubernetes quantities as numbers.
"""
