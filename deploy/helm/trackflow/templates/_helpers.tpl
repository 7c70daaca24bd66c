{{/* Names and labels shared by every object of the chart. */}}
{{- define "trackflow.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "trackflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "trackflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trackflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "trackflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "trackflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "trackflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "trackflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "trackflow.partitions" -}}
{{- int (default 8 .Values.config.kafka.partitions) -}}
{{- end -}}

{{/* Refuse values that would deploy a broken pipeline. */}}
{{- define "trackflow.validate" -}}
{{- $partitions := int (include "trackflow.partitions" .) -}}
{{- if gt (int .Values.replicaCount) $partitions -}}
{{- fail (printf "replicaCount %d is above config.kafka.partitions %d: the extra workers would get no partition" (int .Values.replicaCount) $partitions) -}}
{{- end -}}
{{- if .Values.keda.enabled -}}
{{- if gt (int .Values.keda.maxReplicaCount) $partitions -}}
{{- fail (printf "keda.maxReplicaCount %d is above config.kafka.partitions %d: the extra workers would get no partition" (int .Values.keda.maxReplicaCount) $partitions) -}}
{{- end -}}
{{- if gt (int .Values.keda.minReplicaCount) (int .Values.keda.maxReplicaCount) -}}
{{- fail "keda.minReplicaCount is above keda.maxReplicaCount" -}}
{{- end -}}
{{- end -}}
{{- range $key, $_ := .Values.config -}}
{{- if has (lower $key) (list "credentials" "secrets") -}}
{{- fail (printf "config.%s: credentials go in a Secret (credentials.existingSecret), never in the ConfigMap" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The worker's TOML file from a values map. Not Helm's toToml: values arrive as float64, and toToml
writes partitions = 8.0, which a strict reader refuses; whole numbers are written as integers.
*/}}
{{- define "trackflow.tomlValue" -}}
{{- $kind := kindOf . -}}
{{- if eq $kind "string" -}}{{ toJson . }}
{{- else if eq $kind "bool" -}}{{ . }}
{{- else if or (eq $kind "float64") (eq $kind "float32") -}}
{{- if eq (floor .) (float64 .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if hasPrefix "int" $kind -}}{{ . }}
{{- else if eq $kind "slice" -}}
[{{ range $i, $item := . }}{{ if $i }}, {{ end }}{{ include "trackflow.tomlValue" $item }}{{ end }}]
{{- else -}}{{ fail (printf "config: a %s cannot be written as TOML" $kind) }}
{{- end -}}
{{- end -}}

{{- define "trackflow.tomlTable" -}}
{{- $path := index . 0 -}}
{{- $table := index . 1 -}}
{{- range $key, $value := $table }}
{{- if and (ne (kindOf $value) "map") (ne (kindOf $value) "invalid") }}
{{ $key }} = {{ include "trackflow.tomlValue" $value }}
{{- end }}
{{- end }}
{{- range $key, $value := $table }}
{{- if eq (kindOf $value) "map" }}
{{- $name := ternary $key (printf "%s.%s" $path $key) (eq $path "") }}

[{{ $name }}]
{{- include "trackflow.tomlTable" (list $name $value) }}
{{- end }}
{{- end }}
{{- end -}}
