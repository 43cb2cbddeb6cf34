{{- /*
Production connections (README: "Production connections and least privilege"):
Redis Sentinel and the TLS files, as env vars and a mounted Secret. Each renders
nothing with the default values.
*/ -}}
{{- define "pkg-operator.connectionEnv" -}}
{{- with .Values.connections.redisSentinels }}
- name: PKG_REDIS_SENTINELS
  value: {{ join "," . | quote }}
- name: PKG_REDIS_SENTINEL_MASTER
  value: {{ $.Values.connections.redisSentinelMaster | quote }}
{{- end }}
{{- if .Values.connections.tlsSecret }}
- name: PKG_REDIS_TLS_CA_FILE
  value: /etc/pkg/tls/ca.crt
{{- if .Values.connections.tlsClientCert }}
- name: PKG_REDIS_TLS_CERT_FILE
  value: /etc/pkg/tls/tls.crt
- name: PKG_REDIS_TLS_KEY_FILE
  value: /etc/pkg/tls/tls.key
{{- end }}
{{- end }}
{{- end -}}

{{- define "pkg-operator.tlsMount" -}}
{{- if .Values.connections.tlsSecret }}
volumeMounts:
  - {name: pkg-tls, mountPath: /etc/pkg/tls, readOnly: true}
{{- end }}
{{- end -}}

{{- define "pkg-operator.tlsVolume" -}}
{{- if .Values.connections.tlsSecret }}
volumes:
  - name: pkg-tls
    secret: {secretName: {{ .Values.connections.tlsSecret }}, defaultMode: 0400}
{{- end }}
{{- end -}}
