{{/* Names, labels, the image, tritonserver's arguments and the checks of the values. */}}

{{- define "mmw-triton.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mmw-triton.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mmw-triton.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mmw-triton.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mmw-triton.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mmw-triton.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: inference-server
app.kubernetes.io/part-of: multi-model-workflows
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "mmw-triton.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mmw-triton.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image: repository@digest when a digest is set, else repository:tag (tag "" = appVersion). */}}
{{- define "mmw-triton.image" -}}
{{- $image := .Values.image -}}
{{- $repo := required "image.repository: expected the release image's name, e.g. multi-model-workflows/triton (docker/manifest.json, \"release\")" $image.repository -}}
{{- if $image.digest -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" $image.digest) -}}
{{- fail (printf "image.digest: expected sha256: and 64 hex digits (docker/manifest.json \"release\".digest), got %q" $image.digest) -}}
{{- end -}}
{{- printf "%s@%s" $repo $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
A whole number >= a minimum, rendered; fails with the value's name otherwise.
Usage: include "mmw-triton.int" (list "replicas" .Values.replicas 1)
*/}}
{{- define "mmw-triton.int" -}}
{{- $name := index . 0 -}}
{{- $value := index . 1 -}}
{{- $min := index . 2 -}}
{{- if not (or (kindIs "int" $value) (kindIs "int64" $value) (kindIs "float64" $value)) -}}
{{- fail (printf "%s: expected a whole number >= %d, got %v (%s)" $name $min $value (kindOf $value)) -}}
{{- end -}}
{{- if ne (float64 $value) (float64 (int64 $value)) -}}
{{- fail (printf "%s: expected a whole number >= %d, got %v" $name $min $value) -}}
{{- end -}}
{{- if lt (int64 $value) (int64 $min) -}}
{{- fail (printf "%s: expected a whole number >= %d, got %v" $name $min $value) -}}
{{- end -}}
{{- int64 $value -}}
{{- end -}}

{{/* --model-repository's value for repository.mode (image, pvc: a path; s3, gcs: Triton's cloud URL). */}}
{{- define "mmw-triton.modelRepository" -}}
{{- $r := .Values.repository -}}
{{- $modes := list "image" "pvc" "s3" "gcs" -}}
{{- if not (has $r.mode $modes) -}}
{{- fail (printf "repository.mode: expected one of %s, got %q" (join ", " $modes) (toString $r.mode)) -}}
{{- end -}}
{{- if has $r.mode (list "image" "pvc") -}}
{{- if not (hasPrefix "/" (toString $r.path)) -}}
{{- fail (printf "repository.path: expected an absolute path in the container such as /models (repository.mode %s), got %q" $r.mode (toString $r.path)) -}}
{{- end -}}
{{- $r.path -}}
{{- else -}}
{{- $prefix := ternary "s3://" "gs://" (eq $r.mode "s3") -}}
{{- if not (hasPrefix $prefix (toString $r.url)) -}}
{{- fail (printf "repository.url: expected %sbucket/path with repository.mode %s, got %q" $prefix $r.mode (toString $r.url)) -}}
{{- end -}}
{{- $r.url -}}
{{- end -}}
{{- end -}}

{{- define "mmw-triton.adminSecretName" -}}
{{- if .Values.restrictedApi.existingSecret -}}
{{- .Values.restrictedApi.existingSecret -}}
{{- else -}}
{{- printf "%s-admin" (include "mmw-triton.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "mmw-triton.adminSecretKey" -}}
{{- if .Values.restrictedApi.existingSecret -}}
{{- required "restrictedApi.existingSecretKey: expected the key of restrictedApi.existingSecret that holds the admin key" .Values.restrictedApi.existingSecretKey -}}
{{- else -}}
admin-key
{{- end -}}
{{- end -}}

{{/*
The value of --http-restricted-api and --grpc-restricted-protocol: the categories of
launcher/server_args.py RESTRICTED_APIS, the header, and the key expanded by Kubernetes from the env var.
*/}}
{{- define "mmw-triton.restrictedApi" -}}
{{- $header := toString .Values.restrictedApi.header -}}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$" $header) -}}
{{- fail (printf "restrictedApi.header: expected lowercase letters, digits and '-' (gRPC metadata keys are lowercase), got %q" $header) -}}
{{- end -}}
{{- printf "model-repository,shared-memory,trace,logging:%s=$(MMW_TRITON_ADMIN_KEY)" $header -}}
{{- end -}}

{{/* Checks of the values that no single template owns; fails with the setting's name. */}}
{{- define "mmw-triton.validate" -}}
{{- $v := .Values -}}
{{- if and $v.restrictedApi.key (not (regexMatch "^[^\\s,:]+$" (toString $v.restrictedApi.key))) -}}
{{- fail "restrictedApi.key: expected a value without spaces, ',' or ':' (Triton splits its restricted-API setting on them)" -}}
{{- end -}}
{{- if and $v.restrictedApi.key $v.restrictedApi.existingSecret -}}
{{- fail "restrictedApi: set key or existingSecret, not both" -}}
{{- end -}}
{{- if not $v.shm.sizeLimit -}}
{{- fail "shm.sizeLimit: expected the size of /dev/shm such as 1Gi (the python backend needs more than a pod's 64 MB)" -}}
{{- end -}}
{{- if and (eq (toString $v.repository.mode) "pvc") (not $v.repository.pvc.claimName) -}}
{{- fail "repository.pvc.claimName: expected the PersistentVolumeClaim that holds the model repository (repository.mode pvc)" -}}
{{- end -}}
{{- if and $v.metrics.monitor.enabled (not (has $v.metrics.monitor.kind (list "ServiceMonitor" "PodMonitor"))) -}}
{{- fail (printf "metrics.monitor.kind: expected ServiceMonitor or PodMonitor, got %q" (toString $v.metrics.monitor.kind)) -}}
{{- end -}}
{{- if $v.podDisruptionBudget.enabled -}}
{{- $pdb := $v.podDisruptionBudget -}}
{{- if and (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) -}}
{{- fail "podDisruptionBudget: expected minAvailable or maxUnavailable (a number or a percentage)" -}}
{{- end -}}
{{- end -}}
{{- if and $v.networkPolicy.enabled (not $v.networkPolicy.clients.podLabels) -}}
{{- fail "networkPolicy.clients.podLabels: expected the labels of the pods that may call Triton, e.g. {mmw-triton-client: \"true\"} (empty would admit every pod)" -}}
{{- end -}}
{{- if and $v.networkPolicy.enabled (not $v.networkPolicy.metrics.namespaceSelector) -}}
{{- fail "networkPolicy.metrics.namespaceSelector: expected the monitoring namespace's selector, e.g. {matchLabels: {kubernetes.io/metadata.name: monitoring}}" -}}
{{- end -}}
{{- if $v.autoscaling.enabled -}}
{{- $min := include "mmw-triton.int" (list "autoscaling.minReplicas" $v.autoscaling.minReplicas 1) | int64 -}}
{{- $max := include "mmw-triton.int" (list "autoscaling.maxReplicas" $v.autoscaling.maxReplicas 1) | int64 -}}
{{- if lt $max $min -}}
{{- fail (printf "autoscaling.maxReplicas: expected >= autoscaling.minReplicas (%d), got %d" $min $max) -}}
{{- end -}}
{{- if not $v.autoscaling.metric.name -}}
{{- fail "autoscaling.metric.name: expected the Pods metric prometheus-adapter serves, e.g. triton_queue_time_avg_us" -}}
{{- end -}}
{{- if not $v.autoscaling.metric.averageValue -}}
{{- fail "autoscaling.metric.averageValue: expected the target queue time per request in microseconds, e.g. \"50000\"" -}}
{{- end -}}
{{- else -}}
{{- $_ := include "mmw-triton.int" (list "replicas" $v.replicas 1) -}}
{{- end -}}
{{- $_ := include "mmw-triton.int" (list "server.exitTimeoutSecs" $v.server.exitTimeoutSecs 0) -}}
{{- $_ := include "mmw-triton.int" (list "server.logVerbose" $v.server.logVerbose 0) -}}
{{- end -}}
