{{/*
Names, labels and the operator's settings document, shared by the templates.
*/}}

{{/* The operator's objects: Deployment, Service, ServiceAccount, ClusterRole(Binding). */}}
{{- define "kubepilot.operator.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubepilot.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "kubepilot.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubepilot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubepilot
{{- end -}}

{{- define "kubepilot.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kubepilot.operator.labels" -}}
{{ include "kubepilot.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The three storage volumes, in the order the settings and the pod list them. */}}
{{- define "kubepilot.volumes" -}}
{{- list "models" "datasets" "outputs" | toJson -}}
{{- end -}}

{{/* The claim of one volume: the existing claim when given, else <release>-<volume>. Call with
(dict "root" $ "volume" "models"). */}}
{{- define "kubepilot.claimName" -}}
{{- $volume := index .root.Values.storage .volume -}}
{{- default (printf "%s-%s" .root.Release.Name .volume | trunc 63 | trimSuffix "-") $volume.existingClaim -}}
{{- end -}}

{{/* The chart creates the claim unless told not to or given an existing one. */}}
{{- define "kubepilot.createClaim" -}}
{{- $volume := index .root.Values.storage .volume -}}
{{- if and $volume.create (not $volume.existingClaim) -}}true{{- end -}}
{{- end -}}

{{/*
The operator's settings file (kubepilot_operator.settings.Settings as YAML): operator.settings
from the values, with the keys the chart must own to stay consistent with its own objects laid
over them (storage claims and paths, the intake's bind address, port and URL, the health port and
the operator's namespace).
*/}}
{{- define "kubepilot.operator.settings" -}}
{{- $storage := dict -}}
{{- range $name := include "kubepilot.volumes" . | fromJsonArray -}}
{{- $path := printf "/%s" $name -}}
{{- $_ := set $storage $name (dict "claimName" (include "kubepilot.claimName" (dict "root" $ "volume" $name)) "mountPath" $path "operatorPath" $path) -}}
{{- end -}}
{{- $intake := dict
  "host" "0.0.0.0"
  "port" (int .Values.operator.ports.intake)
  "advertiseUrl" (printf "http://%s.%s.svc:%d" (include "kubepilot.operator.fullname" .) .Release.Namespace (int .Values.operator.ports.intake))
-}}
{{- $owned := dict
  "operatorNamespace" .Release.Namespace
  "storage" $storage
  "intake" $intake
  "healthPort" (int .Values.operator.ports.health)
-}}
{{- mustMergeOverwrite (deepCopy (.Values.operator.settings | default dict)) $owned | toYaml -}}
{{- end -}}
