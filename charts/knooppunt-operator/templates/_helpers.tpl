{{/* Full name: the release name, suffixed with the chart name unless it contains it. */}}
{{- define "knooppunt-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Selector labels. app.kubernetes.io/name is fixed to "knooppunt-operator": every node's
NetworkPolicy (made by the operator) and the platform's policies admit the operator's pods
by exactly this label.
*/}}
{{- define "knooppunt-operator.selectorLabels" -}}
app.kubernetes.io/name: knooppunt-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "knooppunt-operator.labels" -}}
{{ include "knooppunt-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: knooppunt
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "knooppunt-operator.serviceAccountName" -}}
{{- default (include "knooppunt-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "knooppunt-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if hasPrefix "sha256:" $tag -}}
{{- printf "%s@%s" .Values.image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "knooppunt-operator.webhookService" -}}
{{- printf "%s-webhook" (include "knooppunt-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "knooppunt-operator.webhookSecret" -}}
{{- default (printf "%s-webhook-tls" (include "knooppunt-operator.fullname" .)) .Values.webhook.certificate.existingSecret -}}
{{- end -}}

{{/* The rules generated from knooppunt_operator.rbac (see charts/sync_chart.py). */}}
{{- define "knooppunt-operator.rbacRules" -}}
{{- .Files.Get "files/rbac-rules.yaml" -}}
{{- end -}}
