{{/*
Names and labels shared by the templates. Templates spell out every value as a
full .Values.a.b path (no `with` blocks), so a test can check each one against
values.schema.json.
*/}}

{{/* The application's name: the chart's, unless nameOverride says otherwise. */}}
{{- define "preview-app.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base name of every object. The release name alone is unique: each preview
has a namespace of its own. At most 49 characters, so that "<name>-db" still
fits a StatefulSet name (52: its pods' controller-revision-hash label adds 11).
*/}}
{{- define "preview-app.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 49 | trimSuffix "-" }}
{{- end }}

{{/* The PostgreSQL StatefulSet, its Service and its Secret. */}}
{{- define "preview-app.postgresqlName" -}}
{{- printf "%s-db" (include "preview-app.fullname" .) }}
{{- end }}

{{/* The version label: the image tag (the PR head commit), cut to a label value. */}}
{{- define "preview-app.version" -}}
{{- .Values.image.tag | trunc 63 | trimSuffix "-" | trimSuffix "." | trimSuffix "_" }}
{{- end }}

{{- define "preview-app.selectorLabels" -}}
app.kubernetes.io/name: {{ include "preview-app.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "preview-app.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "preview-app.selectorLabels" . }}
app.kubernetes.io/version: {{ include "preview-app.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
