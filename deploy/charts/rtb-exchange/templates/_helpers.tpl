{{/*
Name of every object, from the release name so that two releases in one namespace never
collide: the release name when it already contains "rtb-exchange" (release "rtb-exchange" gives
"rtb-exchange"), else "<release>-rtb-exchange"; fullnameOverride replaces it.
*/}}
{{- define "rtb-exchange.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The internal (ClusterIP) Service for onboarding and metrics: "<fullname>-control". */}}
{{- define "rtb-exchange.controlName" -}}
{{- printf "%s-control" (include "rtb-exchange.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{- define "rtb-exchange.podsName" -}}
{{- printf "%s-pods" (include "rtb-exchange.fullname" . | trunc 58 | trimSuffix "-") -}}
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


{{/*
The exchange listens on every pod address, where it refuses open onboarding (no token) unless
told RTB_EXCHANGE_OPEN_ONBOARDING: require a token, or an explicit exchange.openOnboarding.
*/}}
{{- define "rtb-exchange.checkOnboarding" -}}
{{- $secret := include "rtb-exchange.tokenSecret" . -}}
{{- if and $secret .Values.exchange.openOnboarding -}}
{{- fail "exchange.openOnboarding=true and an onboarding token are both set: drop one of them" -}}
{{- else if and (not $secret) (not .Values.exchange.openOnboarding) -}}
{{- fail "an onboarding token is required: set onboardToken.existingSecret (a Secret holding it) or onboardToken.value (lab only). Without one, anyone who reaches port 3000 can register, list and remove DSPs; for a closed lab only, set exchange.openOnboarding=true instead" -}}
{{- end -}}
{{- end -}}

{{/* The roster's ConfigMap: the user's, or "<fullname>-roster" rendered from roster.dsps. */}}
{{- define "rtb-exchange.rosterConfigMap" -}}
{{- if .Values.roster.existingConfigMap -}}
{{- .Values.roster.existingConfigMap -}}
{{- else -}}
{{- printf "%s-roster" (include "rtb-exchange.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}
{{- end -}}

{{/*
A roster is set up in one way only, and only when enabled (a forgotten roster.enabled would
silently leave the pods without the DSPs listed). Names are unique, as the exchange requires:
a pod refuses to start on a roster that does not load.
*/}}
{{- define "rtb-exchange.checkRoster" -}}
{{- $roster := .Values.roster -}}
{{- if and $roster.existingConfigMap $roster.dsps -}}
{{- fail "roster.dsps and roster.existingConfigMap are both set: drop one of them" -}}
{{- else if and (not $roster.enabled) (or $roster.existingConfigMap $roster.dsps) -}}
{{- fail "roster.dsps or roster.existingConfigMap is set but roster.enabled is false: set roster.enabled=true" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $roster.dsps -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "roster.dsps names DSP %q twice" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- end -}}
{{- end -}}
