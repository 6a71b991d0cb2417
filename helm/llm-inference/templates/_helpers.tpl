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

{{/*
The pods that serve HTTP: every pod of the Deployment, or the leader of each LeaderWorkerSet group (its workers
only run Ray). The Service, the InferencePool and the ServiceMonitor's Service select these.
*/}}
{{- define "llm-inference.servingSelectorLabels" -}}
{{ include "llm-inference.selectorLabels" . }}
{{- if .Values.multiNode.enabled }}
app.kubernetes.io/component: leader
{{- end }}
{{- end }}

{{/* What the autoscaler scales: the Deployment, or the LeaderWorkerSet (one replica = one group of pods). */}}
{{- define "llm-inference.scaleTargetRef" -}}
{{- if .Values.multiNode.enabled }}
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
{{- else }}
apiVersion: apps/v1
kind: Deployment
{{- end }}
name: {{ include "llm-inference.fullname" . }}
{{- end }}

{{/*
Scale-down that lets streams finish: a removed pod drains for up to LLM_SHUTDOWN_GRACE_SECONDS (inside its
terminationGracePeriodSeconds), so remove at most one pod per grace period, and only after the signal has stayed
low for stabilizationWindowSeconds. autoscaling.behavior replaces all of it. The API caps periodSeconds at 1800.
*/}}
{{- define "llm-inference.autoscalingBehavior" -}}
{{- if .Values.autoscaling.behavior }}
{{- toYaml .Values.autoscaling.behavior }}
{{- else }}
{{- $grace := include "llm-inference.terminationGracePeriodSeconds" . | int }}
scaleDown:
  stabilizationWindowSeconds: {{ .Values.autoscaling.scaleDownStabilizationSeconds }}
  policies:
    - type: Pods
      value: 1
      periodSeconds: {{ min $grace 1800 }}
{{- end }}
{{- end }}

{{/* The queue gauges the autoscaler targets, as (metric, target per pod) pairs; null targets are left out. */}}
{{- define "llm-inference.queueTargets" -}}
{{- $targets := dict }}
{{- with .Values.autoscaling.queue.waitingPerPod }}{{ $_ := set $targets "llm_num_requests_waiting" . }}{{ end }}
{{- with .Values.autoscaling.queue.runningPerPod }}{{ $_ := set $targets "llm_num_requests_running" . }}{{ end }}
{{- if not $targets }}
{{- fail "autoscaling.signal=queue needs autoscaling.queue.waitingPerPod or autoscaling.queue.runningPerPod" }}
{{- end }}
{{- toJson $targets }}
{{- end }}

{{- define "llm-inference.checkReplicaBounds" -}}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail (printf "autoscaling.minReplicas=%v must not exceed autoscaling.maxReplicas=%v" .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas) }}
{{- end }}
{{- end }}

{{/* The Secrets the settings name as files: the TLS pair, the API-key file, the tool-dispatch token, and the
shared store's password and CA certificates. */}}
{{- define "llm-inference.secretMounts" -}}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/llm-inference/tls
  readOnly: true
{{- end }}
{{- if .Values.apiKeysFile.secretName }}
- name: api-keys
  mountPath: /etc/llm-inference/api-keys
  readOnly: true
{{- end }}
{{- if .Values.toolDispatchKeyFile.secretName }}
- name: tool-dispatch
  mountPath: /etc/llm-inference/tool-dispatch
  readOnly: true
{{- end }}
{{- if .Values.state.passwordSecret.name }}
- name: state-password
  mountPath: /etc/llm-inference/state-password
  readOnly: true
{{- end }}
{{- if .Values.state.tlsCaSecret.name }}
- name: state-ca
  mountPath: /etc/llm-inference/state-ca
  readOnly: true
{{- end }}
{{- end }}

{{/* From SIGTERM to the leader's exit at most: its preStop sleep, its drain and Granian's 5 s. */}}
{{- define "llm-inference.leaderStopSeconds" -}}
{{- add .Values.shutdown.preStopSleepSeconds (include "llm-inference.drainSeconds" . | int) 5 }}
{{- end }}

{{/*
Multi-node needs GPUs, vLLM, Ray, and parallel sizes that use every GPU of a group exactly: vLLM's world size
(tensor x pipeline parallel) is the group's GPU count (multiNode.size pods x gpu.count).
*/}}
{{- define "llm-inference.checkMultiNode" -}}
{{- $config := .Values.config }}
{{- if not .Values.gpu.enabled }}
{{- fail "multiNode.enabled needs gpu.enabled: vLLM splits the model over the GPUs of several nodes" }}
{{- end }}
{{- if eq (toString $config.LLM_BACKEND) "llamacpp" }}
{{- fail "multiNode.enabled needs config.LLM_BACKEND vllm or auto: llama.cpp runs on one node" }}
{{- end }}
{{- if eq (toString $config.LLM_DISTRIBUTED_EXECUTOR_BACKEND) "mp" }}
{{- fail "multiNode.enabled needs config.LLM_DISTRIBUTED_EXECUTOR_BACKEND ray (or auto, which the chart turns into ray): vLLM's mp backend does not span the group's pods here" }}
{{- end }}
{{- $tensor := default 1 $config.LLM_TENSOR_PARALLEL_SIZE | int }}
{{- $pipeline := default 1 $config.LLM_PIPELINE_PARALLEL_SIZE | int }}
{{- $gpus := mul .Values.multiNode.size .Values.gpu.count }}
{{- if ne (mul $tensor $pipeline) $gpus }}
{{- fail (printf "multiNode: config.LLM_TENSOR_PARALLEL_SIZE (%d) x config.LLM_PIPELINE_PARALLEL_SIZE (%d) = %d must equal multiNode.size (%v) x gpu.count (%v) = %d, the GPUs of one group (usually tensor = gpu.count, pipeline = multiNode.size)" $tensor $pipeline (mul $tensor $pipeline) .Values.multiNode.size .Values.gpu.count $gpus) }}
{{- end }}
{{- end }}

{{/*
The shared store (state): its URL when the chart knows it (state.url, or the Valkey it deploys), else empty (none,
or a URL from state.existingSecret). At most one source; a password or CA file needs a store to go with it.
*/}}
{{- define "llm-inference.stateUrl" -}}
{{- $state := .Values.state }}
{{- $sources := 0 }}
{{- range (list $state.url $state.existingSecret $state.valkey.enabled) }}{{ if . }}{{ $sources = add1 $sources }}{{ end }}{{ end }}
{{- if gt $sources 1 }}
{{- fail "state: set one of state.url, state.existingSecret and state.valkey.enabled, not several" }}
{{- end }}
{{- if and (eq $sources 0) (or $state.passwordSecret.name $state.tlsCaSecret.name) }}
{{- fail "state.passwordSecret and state.tlsCaSecret need a store: state.url or state.existingSecret" }}
{{- end }}
{{- if and $state.tlsCaSecret.name $state.url (not (hasPrefix "rediss://" $state.url)) }}
{{- fail (printf "state.tlsCaSecret is for a TLS store: state.url must start with rediss:// (it is %s)" $state.url) }}
{{- end }}
{{- if $state.valkey.enabled }}
{{- printf "redis://%s-valkey:6379/0" (include "llm-inference.fullname" .) }}
{{- else }}
{{- $state.url }}
{{- end }}
{{- end }}

{{- define "llm-inference.hasState" -}}
{{- if or .Values.state.url .Values.state.existingSecret .Values.state.valkey.enabled }}true{{ end }}
{{- end }}

{{/* The server's and the init container's env beside envFrom: the store's URL from a Secret you manage. */}}
{{- define "llm-inference.stateEnv" -}}
{{- if .Values.state.existingSecret }}
env:
  - name: LLM_STATE_URL
    valueFrom:
      secretKeyRef:
        name: {{ .Values.state.existingSecret }}
        key: {{ .Values.state.existingSecretKey }}
{{- end }}
{{- end }}

{{/* The Valkey that state.valkey deploys: labels apart from the service's, so no selector of the chart's
Service, PodDisruptionBudget or NetworkPolicy for the server picks its pod. */}}
{{- define "llm-inference.valkeySelectorLabels" -}}
app.kubernetes.io/name: valkey
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: state
{{- end }}

{{/*
The service's path prefix (config.LLM_BASE_PATH): the probes, the ServiceMonitor and NOTES follow it.
*/}}
{{- define "llm-inference.basePath" -}}
{{- .Values.config.LLM_BASE_PATH | default "" -}}
{{- end }}
