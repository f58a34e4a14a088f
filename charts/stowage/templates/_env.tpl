{{/*
The controller's environment as the chart sets it. The Deployment drops any
entry whose name extraEnv sets, so the user's value wins and no name appears
twice (server-side apply rejects that; a strategic merge patch on upgrade
keeps either one).
*/}}
{{- define "stowage.env" }}
# Every controller flag can be set as STOWAGE_<FLAG_NAME>.
- name: STOWAGE_CLOUD_PROVIDER
  value: {{ .Values.cloud | quote }}
- name: STOWAGE_CLUSTER_NAME
  value: {{ .Values.clusterName | quote }}
- name: STOWAGE_BATCH_IDLE_DURATION
  value: {{ .Values.batch.idleDuration | quote }}
- name: STOWAGE_BATCH_MAX_DURATION
  value: {{ .Values.batch.maxDuration | quote }}
- name: STOWAGE_LOG_LEVEL
  value: {{ .Values.logging.level | quote }}
- name: STOWAGE_LOG_FORMAT
  value: {{ .Values.logging.format | quote }}
- name: STOWAGE_METRICS_BIND_ADDRESS
  value: ":{{ .Values.metrics.port }}"
- name: STOWAGE_METRICS_SECURE
  value: {{ include "stowage.metricsSecure" . | quote }}
- name: STOWAGE_HEALTH_PROBE_BIND_ADDRESS
  value: ":{{ .Values.health.port }}"
- name: STOWAGE_GRACEFUL_SHUTDOWN_TIMEOUT
  value: "{{ include "stowage.gracefulShutdownSeconds" . }}s"
- name: STOWAGE_LEADER_ELECT
  value: "true"
- name: STOWAGE_LEADER_ELECTION_NAMESPACE
  value: {{ .Release.Namespace | quote }}
{{- if eq .Values.cloud "aws" }}
- name: STOWAGE_AWS_REGION
  value: {{ .Values.region | quote }}
# The SDK's own region setting, for anything that reads it directly.
- name: AWS_REGION
  value: {{ .Values.region | quote }}
{{- range $env, $value := dict "STOWAGE_AWS_INTERRUPTION_QUEUE" .Values.aws.interruptionQueue "STOWAGE_AWS_CLUSTER_ENDPOINT" .Values.aws.clusterEndpoint "STOWAGE_AWS_CLUSTER_CA_BUNDLE" .Values.aws.clusterCABundle "STOWAGE_AWS_CLUSTER_CIDR" .Values.aws.clusterCIDR }}
{{- if $value }}
- name: {{ $env }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq .Values.cloud "gcp" }}
{{- range $env, $value := dict "STOWAGE_GCP_REGION" .Values.region "STOWAGE_GCP_PROJECT" .Values.gcp.project "STOWAGE_GCP_CLUSTER" .Values.gcp.cluster "STOWAGE_GCP_LOCATION" .Values.gcp.location "STOWAGE_GCP_APPROVE_KUBELET_CSRS" (ternary "true" "" (.Values.gcp.approveKubeletCSRs | default false)) }}
{{- if $value }}
- name: {{ $env }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq .Values.cloud "azure" }}
{{- range $env, $value := dict "STOWAGE_AZURE_REGION" .Values.region "STOWAGE_AZURE_SUBSCRIPTION_ID" .Values.azure.subscriptionID "STOWAGE_AZURE_RESOURCE_GROUP" .Values.azure.resourceGroup "STOWAGE_AZURE_CLUSTER_ENDPOINT" .Values.azure.clusterEndpoint "STOWAGE_AZURE_CLUSTER_CA_BUNDLE" .Values.azure.clusterCABundle "STOWAGE_AZURE_CLUSTER_DNS" .Values.azure.clusterDNS "STOWAGE_AZURE_KUBELET_IDENTITY" .Values.azure.kubeletIdentity }}
{{- if $value }}
- name: {{ $env }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- with .Values.azure.bootstrapTokenSecret }}
{{- if .name }}
# Nodes join with this token; it stays in a Secret, never in the pod spec.
- name: STOWAGE_AZURE_BOOTSTRAP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .name | quote }}
      key: {{ .key | default "token" | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with include "stowage.goMemLimit" . }}
- name: GOMEMLIMIT
  value: {{ . | quote }}
{{- end }}
{{- end -}}
