{{/* Names and labels, Helm's usual way. */}}
{{- define "llm-inference.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-inference.fullname" -}}
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

{{- define "llm-inference.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-inference.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llm-inference.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "llm-inference.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "llm-inference.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-inference.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The CPU image, or the GPU image (Dockerfile.cuda) when gpu.enabled. */}}
{{- define "llm-inference.image" -}}
{{- $image := .Values.gpu.enabled | ternary .Values.gpu.image .Values.image }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}

{{- define "llm-inference.scheme" -}}
{{- .Values.tls.enabled | ternary "HTTPS" "HTTP" }}
{{- end }}

{{- define "llm-inference.secretName" -}}
{{- default (include "llm-inference.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{- define "llm-inference.hasSecret" -}}
{{- if or .Values.secret.existingSecret .Values.secret.env }}true{{ end }}
{{- end }}

{{/*
Shutdown timing. On SIGTERM the service drains for at most LLM_SHUTDOWN_GRACE_SECONDS; Granian kills its
worker 5 s after that (cli.WORKER_KILL_MARGIN_SECONDS). The pod must outlast both, after the preStop sleep:
grace > preStop + drain + 5. The default leaves 5 s more.
*/}}
{{- define "llm-inference.drainSeconds" -}}
{{- $drain := .Values.config.LLM_SHUTDOWN_GRACE_SECONDS }}
{{- if kindIs "invalid" $drain }}{{ $drain = 30 }}{{ end }}
{{- ceil $drain | int }}
{{- end }}

{{- define "llm-inference.terminationGracePeriodSeconds" -}}
{{- $needed := add .Values.shutdown.preStopSleepSeconds (include "llm-inference.drainSeconds" . | int) 5 }}
{{- $grace := .Values.shutdown.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $grace }}
{{- add $needed 5 }}
{{- else if le (int $grace) (int $needed) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds=%v must exceed shutdown.preStopSleepSeconds (%v) + config.LLM_SHUTDOWN_GRACE_SECONDS (%v) + 5 s for Granian to stop its worker = %v" $grace .Values.shutdown.preStopSleepSeconds (include "llm-inference.drainSeconds" .) $needed) }}
{{- else }}
{{- $grace | int }}
{{- end }}
{{- end }}

{{/* A config value as the environment spells it: lists comma-joined, whole numbers without an exponent. */}}
{{- define "llm-inference.envValue" -}}
{{- if kindIs "slice" . }}{{ join "," . }}
{{- else if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}{{ int64 . }}
{{- else }}{{ . }}
{{- end }}
{{- end }}

{{/* The environment of the server and the init container: the ConfigMap, and the Secret if there is one. */}}
{{- define "llm-inference.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "llm-inference.fullname" . }}
  {{- if include "llm-inference.hasSecret" . }}
  - secretRef:
      name: {{ include "llm-inference.secretName" . }}
  {{- end }}
{{- end }}

{{/* The writable places, for the server and the init container (the root filesystem is read-only). */}}
{{- define "llm-inference.writableMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/app
- name: model-cache
  mountPath: {{ .Values.modelCache.path }}
{{- end }}
