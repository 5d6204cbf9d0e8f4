{{- define "caravan-central.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "caravan-central.selectorLabels" -}}
app.kubernetes.io/name: caravan-central
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "caravan-central.labels" -}}
{{ include "caravan-central.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "caravan-central.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "caravan-central.adminTokenSecret" -}}
{{- .Values.adminToken.existingSecret | default .Values.adminToken.secretName | default (printf "%s-admin-token" (include "caravan-central.fullname" .)) }}
{{- end }}

{{- define "caravan-central.scheme" -}}
{{- if .Values.tls.secretName }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{- define "caravan-central.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "caravan-central.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* The storage settings that the schema checks too, checked again for values given
without the schema (--skip-schema-validation). */}}
{{- define "caravan-central.checkStorage" -}}
{{- if and (eq .Values.storage.type "sqlite") (ne (int .Values.replicas) 1) }}
{{- fail (printf "replicas: SQLite allows one replica, got %d; use storage.type=postgres for more" (int .Values.replicas)) }}
{{- end }}
{{- if and (eq .Values.storage.type "postgres") (not .Values.storage.postgres.urlSecret.name) }}
{{- fail "storage.postgres.urlSecret.name: the Secret with the PostgreSQL URL is required with storage.type=postgres" }}
{{- end }}
{{- end }}
