{{/* The operator's name: the app.kubernetes.io/name label, as in manifests/. */}}
{{- define "prism-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: the release name when it already says prism-operator, else <release>-prism-operator. */}}
{{- define "prism-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selects this release's operator pods. */}}
{{- define "prism-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prism-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* helm's standard labels, beside the selector labels. */}}
{{- define "prism-operator.helmLabels" -}}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* On every object: the labels of manifests/ (part-of from its kustomization) plus helm's. */}}
{{- define "prism-operator.labels" -}}
{{ include "prism-operator.selectorLabels" . }}
app.kubernetes.io/part-of: prism
{{ include "prism-operator.helmLabels" . }}
{{- end }}

{{- define "prism-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "prism-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when a digest is given, else repository:tag (tag defaults to appVersion). */}}
{{- define "prism-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}
