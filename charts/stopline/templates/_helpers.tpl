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

{{/* The watched namespaces, de-duplicated, in the order given. */}}
{{- define "stopline.namespaces" -}}
{{- range $ns := uniq .Values.watch.namespaces }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $ns) }}
{{- fail (printf "watch.namespaces: %q is not a valid namespace name" $ns) }}
{{- end }}
{{ $ns }}
{{- end }}
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
# Why a rollout or restore is stuck: the new ReplicaSet and the pods of a workload not Available yet.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
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

{{/* Cluster-scoped reads kopf needs even when it watches only some namespaces. */}}
{{- define "stopline.clusterRules" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}
