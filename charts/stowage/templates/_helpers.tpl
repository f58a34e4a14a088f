{{/* Name of the chart, overridable for vendoring. */}}
{{- define "stowage.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects: "stowage" unless the release has another name. */}}
{{- define "stowage.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "stowage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stowage.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "stowage.labels" -}}
{{ include "stowage.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "stowage.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "stowage.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "stowage.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The service account's cloud identity annotations: IRSA on EKS, Workload
Identity on GKE and AKS. EKS Pod Identity needs none.
*/}}
{{- define "stowage.identityAnnotations" -}}
{{- if and (eq .Values.cloud "aws") .Values.aws.roleARN }}
eks.amazonaws.com/role-arn: {{ .Values.aws.roleARN | quote }}
{{- end }}
{{- if and (eq .Values.cloud "gcp") .Values.gcp.serviceAccount }}
iam.gke.io/gcp-service-account: {{ .Values.gcp.serviceAccount | quote }}
{{- end }}
{{- if and (eq .Values.cloud "azure") .Values.azure.clientID }}
azure.workload.identity/client-id: {{ .Values.azure.clientID | quote }}
{{- end }}
{{- end -}}

{{/* The fake cloud keeps its instances as ConfigMaps in this namespace (providers/fake). */}}
{{- define "stowage.fakeCloudNamespace" -}}stowage-fake-cloud{{- end -}}

{{/*
Values added after the chart's first release. `helm upgrade --reuse-values`
renders with the values of the release being upgraded, which lack them, so
every template reads them through these helpers (or `default`), never bare.
*/}}
{{/* metrics.secure: "true" unless set to false (a boolean cannot use `default true`). */}}
{{- define "stowage.metricsSecure" -}}
{{- if hasKey .Values.metrics "secure" -}}{{ ternary "true" "false" (.Values.metrics.secure | toString | eq "true") }}{{- else -}}true{{- end -}}
{{- end -}}

{{/* gracefulShutdownSeconds, 30 when absent. */}}
{{- define "stowage.gracefulShutdownSeconds" -}}
{{- .Values.gracefulShutdownSeconds | default 30 | int -}}
{{- end -}}

{{/*
GOMEMLIMIT in bytes: 90% of the container's memory limit, none without one.
At the whole limit the runtime has no room for what the heap limit does not
count (stacks, the binary's pages, memory not yet returned to the kernel),
and the container is OOM-killed before the collector reacts.
*/}}
{{- define "stowage.goMemLimit" -}}
{{- $limit := dig "limits" "memory" "" (.Values.resources | default dict) -}}
{{- if $limit -}}
{{- $bytes := 0.0 -}}
{{- if kindIs "string" $limit -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" $limit) -}}
{{- fail (printf "resources.limits.memory %q: write it as a number with an optional Ki, Mi, Gi, Ti or k, M, G, T suffix, so the chart can set GOMEMLIMIT below it" $limit) -}}
{{- end -}}
{{- $unit := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- $bytes = mulf (regexReplaceAll "[^0-9.]+$" $limit "" | float64) (get $unit (regexReplaceAll "^[0-9.]+" $limit "")) -}}
{{- else -}}
{{- $bytes = float64 $limit -}}
{{- end -}}
{{- /* 9/10 rather than 0.9: bytes*9 is exact, so floor never falls one short. */ -}}
{{- printf "%d" (divf (mulf $bytes 9) 10 | floor | int64) -}}
{{- end -}}
{{- end -}}
