{{/* Chart name, truncated to the 63 characters Kubernetes allows in names. */}}
{{- define "stopline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; the release name alone when it already contains the chart name. */}}
{{- define "stopline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "stopline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stopline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stopline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stopline.labels" -}}
helm.sh/chart: {{ include "stopline.chart" . }}
{{ include "stopline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stopline
{{- end }}

{{- define "stopline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stopline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stopline.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The served namespaces (names or globs), de-duplicated, in the order given. */}}
{{- define "stopline.namespaces" -}}
{{- range $ns := uniq .Values.watch.namespaces }}
{{- if regexMatch "[*?\\[]" $ns }}
{{- if not (regexMatch "^[-a-z0-9*?!\\[\\]]+$" $ns) }}
{{- fail (printf "watch.namespaces: %q is not a valid namespace name or glob" $ns) }}
{{- end }}
{{- else if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $ns) }}
{{- fail (printf "watch.namespaces: %q is not a valid namespace name" $ns) }}
{{- end }}
{{ $ns }}
{{- end }}
{{- end }}

{{/* The globs among watch.namespaces (entries with *, ? or [). */}}
{{- define "stopline.namespaceGlobs" -}}
{{- range $ns := uniq .Values.watch.namespaces }}
{{- if regexMatch "[*?\\[]" $ns }}
{{ $ns }}
{{- end }}
{{- end }}
{{- end }}

{{/* Prefix of the shard Lease names: leaderElection.leaseName, or the full name. */}}
{{- define "stopline.leaseName" -}}
{{- $name := default (include "stopline.fullname" .) .Values.leaderElection.leaseName }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$" $name) }}
{{- fail (printf "leaderElection.leaseName: %q is not a valid Lease name prefix (lowercase letters, digits, '-', '.')" $name) }}
{{- end }}
{{- if gt (len $name) 240 }}
{{- fail (printf "leaderElection.leaseName: %q is longer than 240 characters" $name) }}
{{- end }}
{{- $name }}
{{- end }}

{{/* Replicas, checked against leader election: without Leases only one replica may run. */}}
{{- define "stopline.replicas" -}}
{{- $replicas := toString .Values.replicas }}
{{- if not (regexMatch "^[0-9]+$" $replicas) }}
{{- fail (printf "replicas: %q is not a whole number" $replicas) }}
{{- end }}
{{- if and (not .Values.leaderElection.enabled) (gt (int $replicas) 1) }}
{{- fail (printf "replicas: %s with leaderElection.enabled=false: without leader election every replica acts on every object; set replicas=1 or enable leader election" $replicas) }}
{{- end }}
{{- $replicas }}
{{- end }}

{{/* sharding.shards, 1..64 (stopline run --shards). */}}
{{- define "stopline.shards" -}}
{{- $shards := toString .Values.sharding.shards }}
{{- if or (not (regexMatch "^[0-9]+$" $shards)) (lt (int $shards) 1) (gt (int $shards) 64) }}
{{- fail (printf "sharding.shards: %q is not a whole number from 1 to 64" $shards) }}
{{- end }}
{{- $shards }}
{{- end }}

{{/*
Rules for the namespaced resources stopline reads and writes. Bound cluster-wide by a ClusterRole
(all namespaces) or per watched namespace by a Role. Nothing here may use a wildcard.
*/}}
{{- define "stopline.namespacedRules" -}}
- apiGroups: ["stopline.dev"]
  resources: ["releases", "tracks", "experiments"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: ["stopline.dev"]
  resources: ["releases/status", "tracks/status", "experiments/status"]
  verbs: ["get", "patch", "update"]
# A Release pushes every namespaced object of its app, keeps pre-push copies in ConfigMaps and
# Secrets, restores and prunes them: the kinds in rbac.appResources (extend it for custom resources).
{{- range .Values.rbac.appResources }}
- apiGroups: [{{ .apiGroup | quote }}]
  resources: {{ .resources | toJson }}
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
{{- end }}
# Why a rollout or restore is stuck: the new ReplicaSet and the pods of a workload not Available yet;
# kubernetes gates: the pods of the pushed workloads.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# job gates: the smoke-test Job of each phase (created once, read, deleted when done), also when
# rbac.appResources leaves batch out; http gates read header values from Secrets (get).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "create", "delete"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Reads the controller needs cluster-wide in every mode: namespaces (kopf, --namespace-selector), CRDs,
and the stopline.dev resources, which it watches with one cluster-wide watch per kind filtered to the
served namespaces (writes stay in the served namespaces' Roles).
*/}}
{{- define "stopline.clusterRules" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
- apiGroups: ["stopline.dev"]
  resources: ["releases", "tracks", "experiments"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["stopline.dev"]
  resources: ["releases/status", "tracks/status", "experiments/status"]
  verbs: ["get"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# Rollout state from stopline's own watch per workload kind: paged LIST + WATCH of the objects it applied
# (label stopline.dev/app), kept only for the served namespaces (controller/kube/workloadwatch.py).
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["list", "watch"]
{{- end }}

{{/* The shard Leases, in the release namespace (POD_NAMESPACE). */}}
{{- define "stopline.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch"]
{{- end }}
