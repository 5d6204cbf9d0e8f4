{{/*
Object names are fixed, not derived from the release name: the config repo's copy
of the agent (manifests/kubernetes/base/agent.yaml) manages the same objects once the
agent runs, and a cluster has one agent.
*/}}
{{- define "caravan-agent.name" -}}
caravan-agent
{{- end }}

{{- define "caravan-agent.selectorLabels" -}}
app.kubernetes.io/name: caravan-agent
{{- end }}

{{- define "caravan-agent.labels" -}}
{{ include "caravan-agent.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "caravan-agent.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The AWS region: aws.region, else the one in the cluster id aws:ACCOUNT:REGION:NAME. */}}
{{- define "caravan-agent.region" -}}
{{- .Values.aws.region | default (index (splitList ":" .Values.clusterID) 2) }}
{{- end }}

{{/* registry.url as the agent's --registry-url: a list joined with commas. */}}
{{- define "caravan-agent.registryURL" -}}
{{- if kindIs "slice" .Values.registry.url }}{{ join "," .Values.registry.url }}{{ else }}{{ .Values.registry.url }}{{ end }}
{{- end }}

{{/* The settings the agent reads through envFrom, in the ConfigMap. */}}
{{- define "caravan-agent.settings" -}}
CARAVAN_REGISTRY_URL: {{ include "caravan-agent.registryURL" . | quote }}
AWS_REGION: {{ include "caravan-agent.region" . | quote }}
{{- with .Values.git.credentialsSecret }}
CARAVAN_GIT_SECRET: {{ . | quote }}
{{- end }}
{{- end }}
