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
{{- printf "%s-dsp-onboard" .Release.Name -}}
{{- end -}}
{{- end -}}
