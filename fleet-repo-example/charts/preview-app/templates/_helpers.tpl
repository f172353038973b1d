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

{{/*
The application's environment, for the app container and its migration:
libpq's variables for the preview's database, then .Values.env.
*/}}
{{- define "preview-app.env" -}}
{{- if .Values.postgresql.enabled }}
# libpq's variables: most PostgreSQL clients read them as they are.
- name: PGHOST
  value: {{ include "preview-app.postgresqlName" . }}
- name: PGPORT
  value: "5432"
- name: PGDATABASE
  value: {{ .Values.postgresql.database | quote }}
- name: PGUSER
  value: {{ .Values.postgresql.username | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "preview-app.postgresqlName" . }}
      key: password
{{- end }}
{{- if .Values.env }}
{{ toYaml .Values.env }}
{{- end }}
{{- end }}

{{/* Where the seed scripts find the data directory, the seed and the marker. */}}
{{- define "preview-app.seedEnv" -}}
- name: PGDATA
  value: /var/lib/postgresql/data/pgdata
- name: PRGEN_SEED_FILE
  value: /seed/data
- name: PRGEN_SEED_MARKER
  value: /var/lib/postgresql/data/prgen-seed-pending
{{- end }}

{{- define "preview-app.seedResources" -}}
requests:
  cpu: 10m
  memory: 16Mi
limits:
  memory: 128Mi
{{- end }}

{{- define "preview-app.seedSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}
