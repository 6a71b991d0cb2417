{{/*
The pod template's metadata and spec, shared by the Deployment (role "server") and the LeaderWorkerSet's leader
(role "leader": the same server, started after the Ray head) and workers (role "worker": a Ray node holding its
share of the model's layers, no HTTP). Called with (dict "root" $ "role" ROLE).
*/}}
{{- define "llm-inference.podMetadata" -}}
{{- $ := .root }}
annotations:
  # Roll the pods when their settings change.
  checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") $ | sha256sum }}
  checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") $ | sha256sum }}
  {{- with $.Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
labels:
  {{- include "llm-inference.selectorLabels" $ | nindent 2 }}
  {{- if ne .role "server" }}
  app.kubernetes.io/component: {{ .role }}
  {{- end }}
  {{- with $.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{- define "llm-inference.podSpec" -}}
{{- $ := .root }}
{{- $role := .role }}
{{- $scheme := include "llm-inference.scheme" $ }}
{{- $resources := deepCopy $.Values.resources }}
{{- if $.Values.gpu.enabled }}
{{- $limits := default dict $resources.limits }}
{{- $_ := set $limits $.Values.gpu.resourceName ($.Values.gpu.count | int) }}
{{- $_ := set $resources "limits" $limits }}
{{- end }}
{{- $grace := include "llm-inference.terminationGracePeriodSeconds" $ | int }}
serviceAccountName: {{ include "llm-inference.serviceAccountName" $ }}
automountServiceAccountToken: false
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
# preStop sleep + drain (LLM_SHUTDOWN_GRACE_SECONDS) + Granian's 5 s to stop the worker, and a margin.
terminationGracePeriodSeconds: {{ $grace }}
{{- /* Multi-node: every pod loads its share of the weights from the same HF_HOME path, so each fetches first. */}}
{{- if or $.Values.modelCache.fetchInitContainer (ne $role "server") }}
initContainers:
  - name: fetch-model
    image: {{ include "llm-inference.image" $ }}
    imagePullPolicy: {{ $.Values.image.pullPolicy }}
    command: ["llm-inference", "fetch-model"]
    {{- include "llm-inference.envFrom" $ | nindent 4 }}
    {{- include "llm-inference.stateEnv" $ | nindent 4 }}
    resources:
      {{- toYaml $.Values.resources | nindent 6 }}
    securityContext:
      {{- toYaml $.Values.securityContext | nindent 6 }}
    volumeMounts:
      {{- include "llm-inference.writableMounts" $ | nindent 6 }}
      {{- /* Its settings check reads the TLS and API-key files the ConfigMap names, as start-up does. */}}
      {{- include "llm-inference.secretMounts" $ | nindent 6 }}
{{- end }}
containers:
  {{- if eq $role "worker" }}
  - name: ray-worker
    image: {{ include "llm-inference.image" $ }}
    imagePullPolicy: {{ $.Values.image.pullPolicy }}
    # Join the group's Ray cluster at its leader (LWS_LEADER_ADDRESS, set by LeaderWorkerSet) and stay in it;
    # vLLM on the leader places its workers here. No HTTP, so no probes: if Ray stops, the container ends and
    # the group is recreated (restartPolicy RecreateGroupOnPodRestart).
    command: ["sh", "-c", "exec ray start --address=${LWS_LEADER_ADDRESS}:{{ $.Values.multiNode.rayPort }} --block --disable-usage-stats"]
    {{- include "llm-inference.envFrom" $ | nindent 4 }}
    lifecycle:
      # Outlive the leader's drain: its streams still run on this pod's GPUs until the leader has stopped.
      preStop:
        exec:
          command: ["sleep", "{{ include "llm-inference.leaderStopSeconds" $ }}"]
  {{- else }}
  - name: server
    image: {{ include "llm-inference.image" $ }}
    imagePullPolicy: {{ $.Values.image.pullPolicy }}
    {{- if eq $role "leader" }}
    # The Ray head first (vLLM's multi-node backend), then the service: vLLM waits for the workers to join
    # before it places its pipeline stages, and readiness stays 503 until the model has loaded across them.
    command: ["sh", "-c", "ray start --head --port={{ $.Values.multiNode.rayPort }} --disable-usage-stats && exec llm-inference serve"]
    {{- else }}
    command: ["llm-inference", "serve"]
    {{- end }}
    ports:
      - name: http
        containerPort: {{ $.Values.containerPort }}
        protocol: TCP
      {{- if eq $role "leader" }}
      - name: ray
        containerPort: {{ $.Values.multiNode.rayPort }}
        protocol: TCP
      {{- end }}
    {{- include "llm-inference.envFrom" $ | nindent 4 }}
    {{- include "llm-inference.stateEnv" $ | nindent 4 }}
    # Sized for the model's download and load: the kubelet waits this long before liveness counts.
    startupProbe:
      httpGet:
        path: {{ include "llm-inference.basePath" $ }}/health/ready
        port: http
        scheme: {{ $scheme }}
      {{- toYaml $.Values.probes.startup | nindent 6 }}
    readinessProbe:
      httpGet:
        path: {{ include "llm-inference.basePath" $ }}/health/ready
        port: http
        scheme: {{ $scheme }}
      {{- toYaml $.Values.probes.readiness | nindent 6 }}
    livenessProbe:
      httpGet:
        path: {{ include "llm-inference.basePath" $ }}/health/live
        port: http
        scheme: {{ $scheme }}
      {{- toYaml $.Values.probes.liveness | nindent 6 }}
    {{- if gt (int $.Values.shutdown.preStopSleepSeconds) 0 }}
    lifecycle:
      # Keep serving while endpoints and proxies stop sending traffic; SIGTERM (and the drain) follows.
      preStop:
        exec:
          command: ["sleep", "{{ $.Values.shutdown.preStopSleepSeconds }}"]
    {{- end }}
  {{- end }}
    resources:
      {{- toYaml $resources | nindent 6 }}
    securityContext:
      {{- toYaml $.Values.securityContext | nindent 6 }}
    volumeMounts:
      {{- include "llm-inference.writableMounts" $ | nindent 6 }}
      {{- include "llm-inference.secretMounts" $ | nindent 6 }}
      {{- if $.Values.gpu.enabled }}
      - name: dshm
        mountPath: /dev/shm
      {{- end }}
volumes:
  # The root filesystem is read-only: these are the only writable places.
  - name: tmp
    emptyDir:
      sizeLimit: {{ $.Values.tmpSizeLimit }}
  - name: home
    emptyDir:
      sizeLimit: {{ $.Values.tmpSizeLimit }}
  - name: model-cache
    {{- if eq $.Values.modelCache.type "pvc" }}
    persistentVolumeClaim:
      claimName: {{ include "llm-inference.fullname" $ }}-model-cache
    {{- else if eq $.Values.modelCache.type "existingClaim" }}
    persistentVolumeClaim:
      claimName: {{ $.Values.modelCache.existingClaim }}
    {{- else }}
    emptyDir:
      sizeLimit: {{ $.Values.modelCache.sizeLimit }}
    {{- end }}
  {{- if $.Values.tls.enabled }}
  - name: tls
    secret:
      secretName: {{ $.Values.tls.secretName }}
      defaultMode: 0440
  {{- end }}
  {{- if $.Values.apiKeysFile.secretName }}
  - name: api-keys
    secret:
      secretName: {{ $.Values.apiKeysFile.secretName }}
      defaultMode: 0440
  {{- end }}
  {{- if $.Values.toolDispatchKeyFile.secretName }}
  - name: tool-dispatch
    secret:
      secretName: {{ $.Values.toolDispatchKeyFile.secretName }}
      defaultMode: 0440
  {{- end }}
  {{- if $.Values.state.passwordSecret.name }}
  - name: state-password
    secret:
      secretName: {{ $.Values.state.passwordSecret.name }}
      defaultMode: 0440
  {{- end }}
  {{- if $.Values.state.tlsCaSecret.name }}
  - name: state-ca
    secret:
      secretName: {{ $.Values.state.tlsCaSecret.name }}
      defaultMode: 0440
  {{- end }}
  {{- if $.Values.gpu.enabled }}
  - name: dshm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $.Values.gpu.shmSizeLimit }}
  {{- end }}
{{- $nodeSelector := merge (deepCopy $.Values.nodeSelector) ($.Values.gpu.enabled | ternary $.Values.gpu.nodeSelector dict) }}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $tolerations := concat $.Values.tolerations ($.Values.gpu.enabled | ternary $.Values.gpu.tolerations list) }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
