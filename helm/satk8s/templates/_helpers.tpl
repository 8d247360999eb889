{{/* Names and labels shared by every template. */}}

{{- define "satk8s.labels" -}}
app.kubernetes.io/name: satk8s
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: satk8s
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The run ServiceAccount's name. */}}
{{- define "satk8s.serviceAccountName" -}}
{{- .Values.serviceAccount.name -}}
{{- end -}}

{{/* Cluster-scoped objects are shared by every namespace: prefix them with this one. */}}
{{- define "satk8s.clusterName" -}}
{{- printf "%s-%s" .root.Release.Namespace .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Kueue object names for one GPU pool (dict "root" $ "pool" $pool). */}}
{{- define "satk8s.flavorName" -}}
{{- include "satk8s.clusterName" (dict "root" .root "name" (printf "satk8s-%s" .pool.name)) -}}
{{- end -}}
{{- define "satk8s.localQueueName" -}}
{{- printf "satk8s-%s" .pool.name -}}
{{- end -}}

{{/*
The names of the secrets the run ServiceAccount may read through the API: only the S3 one,
which KFP's launcher fetches itself. Hub and judge secrets reach steps as env (secretKeyRef),
which the kubelet resolves, so the run ServiceAccount needs no API access to them.
*/}}
{{- define "satk8s.s3SecretInUse" -}}
{{- if ne .Values.secrets.s3.source "fromEnv" }}true{{ end -}}
{{- end -}}

{{/* Fail early, with the key to fix, when a source needs a value that is empty. */}}
{{- define "satk8s.checkSecret" -}}
{{- $s := .secret -}}
{{- if and (eq $s.source "external") (not .root.Values.externalSecrets.secretStoreRef.name) -}}
{{- fail (printf "secrets.%s.source=external needs externalSecrets.secretStoreRef.name" .key) -}}
{{- end -}}
{{- if and (eq $s.source "external") (not $s.external.remoteKey) -}}
{{- fail (printf "secrets.%s.source=external needs secrets.%s.external.remoteKey" .key .key) -}}
{{- end -}}
{{- end -}}

{{/* Is store.endpoint AWS S3 itself? Then clients pick the regional endpoint themselves. */}}
{{- define "satk8s.awsEndpoint" -}}
{{- if hasSuffix "amazonaws.com" (first (splitList ":" .Values.store.endpoint)) }}true{{ end -}}
{{- end -}}

{{/* The store as a URL for boto3 (SATK8S_S3_ENDPOINT_URL); empty for AWS S3 itself. */}}
{{- define "satk8s.endpointUrl" -}}
{{- if not (include "satk8s.awsEndpoint" .) -}}
{{- printf "%s://%s" (ternary "http" "https" .Values.store.disableSSL) .Values.store.endpoint -}}
{{- end -}}
{{- end -}}

{{/*
The node labels of one GPU pool (dict "root" $ "pool" $pool), as JSON: its own nodeLabels, else
the label the GPU catalogue (gpus.yaml, a link to satk8s/cluster/gpus.yaml: the one definition
the compiler's presets read too) gives its cloud for its GPU type, when that names one node type.
*/}}
{{- define "satk8s.poolLabels" -}}
{{- $pool := .pool -}}
{{- $catalogue := .root.Files.Get "gpus.yaml" | fromYaml -}}
{{- $gpu := index $catalogue.gpus $pool.gpu -}}
{{- if not $gpu -}}
{{- fail (printf "gpuPools %s: unknown gpu %q; known: %s" $pool.name $pool.gpu (keys $catalogue.gpus | sortAlpha | join ", ")) -}}
{{- end -}}
{{- if $pool.nodeLabels -}}
{{- $pool.nodeLabels | toJson -}}
{{- else -}}
{{- $values := index ($gpu.nodes | default dict) $pool.cloud -}}
{{- if ne (len ($values | default list)) 1 -}}
{{- fail (printf "gpuPools %s: set nodeLabels; gpus.yaml names %d node types for %s on %s (%s)" $pool.name (len ($values | default list)) $pool.gpu $pool.cloud (join ", " ($values | default list))) -}}
{{- end -}}
{{- dict (index $catalogue.clouds $pool.cloud).label (first $values) | toJson -}}
{{- end -}}
{{- end -}}
