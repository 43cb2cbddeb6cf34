{{- define "pkg-operator.name" -}}{{ .Values.fullnameOverride | default "pkg-operator" }}{{- end -}}

{{- define "pkg-operator.labels" -}}
app.kubernetes.io/name: pkg-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "pkg-operator.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}


{{- define "pkg-operator.webhookService" -}}{{ include "pkg-operator.name" . }}-webhook{{- end -}}
{{- define "pkg-operator.webhookSecret" -}}{{ include "pkg-operator.name" . }}-webhook-tls{{- end -}}

{{- /* The names the webhook's serving certificate is for (PKG_WEBHOOK_DNS_NAMES). */ -}}
{{- define "pkg-operator.webhookDnsNames" -}}
{{- $svc := include "pkg-operator.webhookService" . -}}
{{- $names := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) -}}
{{- if .Values.webhook.url -}}
{{- $names = append $names (urlParse .Values.webhook.url).hostname -}}
{{- end -}}
{{- join "," (concat $names .Values.webhook.extraDnsNames) -}}
{{- end -}}

{{- define "pkg-operator.selectorLabels" -}}
app.kubernetes.io/name: pkg-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* clientConfig of one webhook: the Service, or webhook.url for an operator outside. */ -}}
{{- define "pkg-operator.webhookClient" -}}
{{- $ := index . 0 -}}
{{- $mode := index . 1 -}}
clientConfig:
{{- if $.Values.webhook.url }}
  url: {{ printf "%s/inject/%s" (trimSuffix "/" $.Values.webhook.url) $mode | quote }}
{{- else }}
  service:
    name: {{ include "pkg-operator.webhookService" $ }}
    namespace: {{ $.Release.Namespace }}
    path: /inject/{{ $mode }}
    port: 443
{{- end }}
{{- end -}}
