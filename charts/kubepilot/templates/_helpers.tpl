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

{{/* The gateway's objects: Deployment, Services, ServiceAccount, Roles, settings ConfigMap, Ingress. */}}
{{- define "kubepilot.gateway.fullname" -}}
{{- printf "%s-gateway" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubepilot.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create -}}
{{- default (include "kubepilot.gateway.fullname" .) .Values.gateway.serviceAccount.name -}}
{{- else -}}
{{- required "gateway.serviceAccount.name is required when gateway.serviceAccount.create is false" .Values.gateway.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kubepilot.gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "kubepilot.gateway.labels" -}}
{{ include "kubepilot.labels" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{/* The namespace the profiles work in: gateway.namespace, else the release's. */}}
{{- define "kubepilot.gateway.namespace" -}}
{{- default .Release.Namespace .Values.gateway.namespace -}}
{{- end -}}

{{/* The per-profile Service of one profile. Call with (dict "root" $ "profile" "controlpilot"). */}}
{{- define "kubepilot.gateway.profileServiceName" -}}
{{- printf "%s-gateway-%s" .root.Release.Name .profile | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Where the auth tokens Secret is mounted, and the file the gateway reads them from. */}}
{{- define "kubepilot.gateway.authSecretName" -}}
{{- default (printf "%s-auth" (include "kubepilot.gateway.fullname" .)) .Values.gateway.auth.existingSecret -}}
{{- end -}}

{{- define "kubepilot.gateway.tokensFile" -}}
{{- printf "/etc/kubepilot/gateway-auth/%s" .Values.gateway.auth.secretKey -}}
{{- end -}}

{{/*
The profiles served at their root on their own port, as a JSON list of {name, port, servicePort}
(sorted by name): every enabled profile with a port, unless gateway.native is off. The render
fails when two listeners would share a port, as the gateway itself would refuse to start.
*/}}
{{- define "kubepilot.gateway.nativeProfiles" -}}
{{- $g := .Values.gateway -}}
{{- $native := list -}}
{{- $taken := list (int $g.ports.combined) -}}
{{- if $g.native -}}
{{- range $name, $profile := $g.profiles -}}
{{- if and $profile.enabled (gt (int $profile.port) 0) -}}
{{- $port := int $profile.port -}}
{{- if has $port $taken -}}
{{- fail (printf "gateway.profiles.%s.port %d is already taken by another gateway listener" $name $port) -}}
{{- end -}}
{{- $taken = append $taken $port -}}
{{- $native = append $native (dict "name" $name "port" $port "servicePort" (int (default $port $profile.servicePort))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $native | toJson -}}
{{- end -}}

{{/*
The gateway's settings file (kubepilot_gateway.settings.Settings as YAML, with the `listeners:`
mapping that kubepilot_gateway.app.settings.ListenerSettings reads): gateway.settings and
gateway.listeners from the values, with the keys the chart must own to stay consistent with its
own objects set over them (namespaces, volume paths, host and ports, which profiles are on,
the tokens file). Owned keys are set one by one, so a false or 0 from the values wins too. The
node agents' URL and the operator's schedule ConfigMap (operator.settings.scheduleConfigMap) are
defaults for ControlPilot's `system` section: values given in gateway.settings are kept.
*/}}
{{- define "kubepilot.gateway.settings" -}}
{{- $g := .Values.gateway -}}
{{- $settings := deepCopy ($g.settings | default dict) -}}
{{- $_ := set $settings "namespace" (include "kubepilot.gateway.namespace" .) -}}
{{- $_ = set $settings "operatorNamespace" .Release.Namespace -}}
{{- $volumes := dict -}}
{{- range $name := include "kubepilot.volumes" . | fromJsonArray -}}
{{- $_ = set $volumes $name (printf "/%s" $name) -}}
{{- end -}}
{{- $_ = set $settings "volumes" $volumes -}}
{{- $profileSettings := get $settings "profileSettings" | default dict -}}
{{- $urls := list -}}
{{- if .Values.nodeAgent.enabled -}}
{{- $urls = list (include "kubepilot.nodeAgent.url" .) -}}
{{- end -}}
{{- /* Every profile that shows node figures reads the chart's node agents unless told otherwise. */ -}}
{{- $onetrainer := get $profileSettings "onetrainer" | default dict -}}
{{- $onetrainerSystem := get $onetrainer "system" | default dict -}}
{{- if not (hasKey $onetrainerSystem "nodeAgentUrls") -}}
{{- $_ = set $onetrainerSystem "nodeAgentUrls" $urls -}}
{{- end -}}
{{- $_ = set $onetrainer "system" $onetrainerSystem -}}
{{- $_ = set $profileSettings "onetrainer" $onetrainer -}}
{{- $comfy := get $profileSettings "comfyui-docker" | default dict -}}
{{- if not (hasKey $comfy "nodeAgentUrls") -}}
{{- $_ = set $comfy "nodeAgentUrls" $urls -}}
{{- end -}}
{{- $_ = set $profileSettings "comfyui-docker" $comfy -}}
{{- $controlpilot := get $profileSettings "controlpilot" | default dict -}}
{{- $system := get $controlpilot "system" | default dict -}}
{{- if not (hasKey $system "nodeAgentUrls") -}}
{{- $_ = set $system "nodeAgentUrls" $urls -}}
{{- end -}}
{{- $schedule := get (.Values.operator.settings | default dict) "scheduleConfigMap" -}}
{{- if and $schedule (not (hasKey $system "scheduleConfigMap")) -}}
{{- $_ = set $system "scheduleConfigMap" $schedule -}}
{{- end -}}
{{- $_ = set $controlpilot "system" $system -}}
{{- $_ = set $profileSettings "controlpilot" $controlpilot -}}
{{- $_ = set $settings "profileSettings" $profileSettings -}}
{{- $listeners := deepCopy ($g.listeners | default dict) -}}
{{- $_ = set $listeners "host" "0.0.0.0" -}}
{{- $_ = set $listeners "combinedPort" (int $g.ports.combined) -}}
{{- $_ = set $listeners "native" $g.native -}}
{{- $profiles := get $listeners "profiles" | default dict -}}
{{- range $name, $profile := $g.profiles -}}
{{- $listener := get $profiles $name | default dict -}}
{{- $_ = set $listener "enabled" $profile.enabled -}}
{{- $_ = set $listener "port" (int $profile.port) -}}
{{- $_ = set $profiles $name $listener -}}
{{- end -}}
{{- $_ = set $listeners "profiles" $profiles -}}
{{- $auth := get $listeners "auth" | default dict -}}
{{- $_ = set $auth "enabled" $g.auth.enabled -}}
{{- if $g.auth.enabled -}}
{{- $_ = set $auth "tokensFile" (include "kubepilot.gateway.tokensFile" .) -}}
{{- end -}}
{{- $_ = set $listeners "auth" $auth -}}
{{- $_ = set $settings "listeners" $listeners -}}
{{- $settings | toYaml -}}
{{- end -}}

{{/* The node agent's objects: DaemonSet, headless Service, config ConfigMap. */}}
{{- define "kubepilot.nodeAgent.fullname" -}}
{{- printf "%s-node-agent" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubepilot.nodeAgent.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node-agent
{{- end -}}

{{- define "kubepilot.nodeAgent.labels" -}}
{{ include "kubepilot.labels" . }}
app.kubernetes.io/component: node-agent
{{- end -}}

{{/* The agents' headless Service: its name resolves to every agent pod. */}}
{{- define "kubepilot.nodeAgent.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "kubepilot.nodeAgent.fullname" .) .Release.Namespace (int .Values.nodeAgent.port) -}}
{{- end -}}

{{/*
The node agent's config file (kubepilot_api.workers.config.NodeAgentConfig as JSON): the
container's root, whose overlay filesystem reports the node's container storage, and each host
directory of nodeAgent.hostDisks at /host/<name>, mounted read-only.
*/}}
{{- define "kubepilot.nodeAgent.config" -}}
{{- $paths := list "/" -}}
{{- range .Values.nodeAgent.hostDisks -}}
{{- $paths = append $paths (printf "/host/%s" .name) -}}
{{- end -}}
{{- dict "host" "0.0.0.0" "port" (int .Values.nodeAgent.port) "diskPaths" $paths | toPrettyJson -}}
{{- end -}}
