{{/* Names and labels. */}}
{{- define "portcullis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "agent") */}}
{{- define "portcullis.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "portcullis.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Distributed mode: a Kafka bootstrap is given. */}}
{{- define "portcullis.distributed" -}}
{{- if .Values.kafka.bootstrap }}true{{ end -}}
{{- end -}}

{{/* A TOML string. */}}
{{- define "portcullis.str" -}}
{{ . | toJson }}
{{- end -}}

{{/* The [scan] rules line, the [kafka] sections and extraConfig, shared by
     every role's configuration. */}}
{{- define "portcullis.kafkaToml" -}}
{{- if .Values.kafka.bootstrap }}
[kafka]
bootstrap = {{ include "portcullis.str" .Values.kafka.bootstrap }}
topic_prefix = {{ include "portcullis.str" .Values.kafka.topicPrefix }}
replication_factor = {{ .Values.kafka.replicationFactor | int }}
{{- $tls := .Values.kafka.tls }}
{{- $sasl := .Values.kafka.sasl }}
[kafka.librdkafka]
{{- if and $tls.enabled $sasl.enabled }}
"security.protocol" = "sasl_ssl"
{{- else if $tls.enabled }}
"security.protocol" = "ssl"
{{- else if $sasl.enabled }}
"security.protocol" = "sasl_plaintext"
{{- end }}
{{- if $tls.enabled }}
"ssl.ca.location" = {{ include "portcullis.str" (printf "/etc/portcullis/kafka-tls/%s" $tls.caKey) }}
{{- if $tls.certKey }}
"ssl.certificate.location" = {{ include "portcullis.str" (printf "/etc/portcullis/kafka-tls/%s" $tls.certKey) }}
"ssl.key.location" = {{ include "portcullis.str" (printf "/etc/portcullis/kafka-tls/%s" $tls.keyKey) }}
{{- end }}
{{- end }}
{{- if $sasl.enabled }}
"sasl.mechanisms" = {{ include "portcullis.str" $sasl.mechanism }}
{{- end }}
{{- range $k, $v := .Values.kafka.librdkafka }}
{{ include "portcullis.str" $k }} = {{ include "portcullis.str" (toString $v) }}
{{- end }}
{{- if $sasl.enabled }}
[kafka.librdkafka_env]
"sasl.username" = "KAFKA_SASL_USERNAME"
"sasl.password" = "KAFKA_SASL_PASSWORD"
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes of the Kafka TLS Secret. */}}
{{- define "portcullis.kafkaVolumes" -}}
{{- if and .Values.kafka.bootstrap .Values.kafka.tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ required "kafka.tls.secretName is required with kafka.tls.enabled" .Values.kafka.tls.secretName }}
{{- end }}
{{- end -}}

{{- define "portcullis.kafkaMounts" -}}
{{- if and .Values.kafka.bootstrap .Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: /etc/portcullis/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* The SASL credentials from their Secret. */}}
{{- define "portcullis.kafkaEnv" -}}
{{- if and .Values.kafka.bootstrap .Values.kafka.sasl.enabled }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.secretName is required with kafka.sasl.enabled" .Values.kafka.sasl.secretName }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.secretName }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- end -}}

{{/* One policy as a [[policy]] table: scalars and lists as they are,
     maps (pod_labels) as inline tables. */}}
{{- define "portcullis.policy" -}}
[[policy]]
{{- range $k, $v := . }}
{{- if kindIs "map" $v }}
{{ $k }} = { {{- $first := true }}{{ range $lk, $lv := $v }}{{ if not $first }},{{ end }} {{ include "portcullis.str" $lk }} = {{ include "portcullis.str" (toString $lv) }}{{ $first = false }}{{ end }} }
{{- else }}
{{ $k }} = {{ $v | toJson }}
{{- end }}
{{- end }}
{{- end -}}
