{{/* Name of every object: "rtb-exchange" unless fullnameOverride is set. */}}
{{- define "rtb-exchange.fullname" -}}
{{- default .Chart.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rtb-exchange.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rtb-exchange.labels" -}}
{{ include "rtb-exchange.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "rtb-exchange.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* Whole CPUs only: workers are pinned one per core. */}}
{{- define "rtb-exchange.cpu" -}}
{{- $cpu := toString .Values.resources.cpu -}}
{{- if not (regexMatch "^[1-9][0-9]*$" $cpu) -}}
{{- fail (printf "resources.cpu must be a whole number of CPUs (got %q): workers are pinned one per core" $cpu) -}}
{{- end -}}
{{- $cpu -}}
{{- end -}}

{{- define "rtb-exchange.tokenSecret" -}}
{{- if .Values.onboardToken.existingSecret -}}
{{- .Values.onboardToken.existingSecret -}}
{{- else if .Values.onboardToken.value -}}
{{- printf "%s-onboard" (include "rtb-exchange.fullname" .) -}}
{{- end -}}
{{- end -}}
