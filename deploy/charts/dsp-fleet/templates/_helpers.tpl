{{- define "dsp-fleet.labels" -}}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ .Chart.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Label shared by every DSP pod of the release (fleet-wide spreading). */}}
{{- define "dsp-fleet.fleetLabels" -}}
app.kubernetes.io/component: dsp
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dsp-fleet.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "dsp-fleet.tokenSecret" -}}
{{- if .Values.onboardToken.existingSecret -}}
{{- .Values.onboardToken.existingSecret -}}
{{- else if .Values.onboardToken.value -}}
{{- printf "%s-dsp-onboard" (include "dsp-fleet.prefix" .) -}}
{{- end -}}
{{- end -}}

{{/*
Prefix of every object name: the release name (or fullnameOverride), so that two fleets in one
namespace never collide. A DSP's objects are "<prefix>-<dsp name>".
*/}}
{{- define "dsp-fleet.prefix" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}
