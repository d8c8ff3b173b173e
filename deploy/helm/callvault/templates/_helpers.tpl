{{/* Names, labels and the checks every template relies on. */}}

{{- define "callvault.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "callvault.fullname" -}}
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

{{- define "callvault.headlessName" -}}
{{- printf "%s-headless" (include "callvault.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "callvault.selectorLabels" -}}
app.kubernetes.io/name: {{ include "callvault.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "callvault.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "callvault.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "callvault.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- include "callvault.fullname" . }}
{{- end }}
{{- end }}

{{/* Variables that carry keys, tokens or passwords: only ever in the Secret, never in the ConfigMap. */}}
{{- define "callvault.secretVariables" -}}
MASTER_KEY PREVIOUS_MASTER_KEYS DATABASE_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN TWILIO_ACCOUNTS SIGNALWIRE_PROJECTS API_KEYS ELEVENLABS_WEBHOOK_SECRETS LIVEKIT_API_KEY LIVEKIT_API_SECRET
{{- end }}

{{/* The port the gateway listens on (config.PORT, as src/config reads PORT), as an integer. */}}
{{- define "callvault.port" -}}
{{- $port := toString (default "8080" .Values.config.PORT) }}
{{- if not (regexMatch "^[0-9]+$" $port) }}
{{- fail (printf "config.PORT must be a port number, got %q" $port) }}
{{- end }}
{{- if eq $port "0" }}
{{- fail "config.PORT must not be 0 in a pod: probes and Services need a fixed port" }}
{{- end }}
{{- $port }}
{{- end }}

{{/* SHUTDOWN_DEADLINE_SECONDS (config), a whole number of seconds here so the grace period can be derived from it. */}}
{{- define "callvault.shutdownDeadline" -}}
{{- $deadline := toString (default "30" .Values.config.SHUTDOWN_DEADLINE_SECONDS) }}
{{- if not (regexMatch "^[1-9][0-9]*$" $deadline) }}
{{- fail (printf "config.SHUTDOWN_DEADLINE_SECONDS must be a whole number of seconds above 0 in this chart, got %q" $deadline) }}
{{- end }}
{{- $deadline }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the preStop pause, then SHUTDOWN_DEADLINE_SECONDS for calls in progress to end by
themselves, then the 5 s the gateway gives the calls it closes at the deadline to finalise (FINALISE_GRACE_MS in
src/gateway/gateway.ts), then lifecycle.releaseSeconds to close workers, S3 and PostgreSQL (and an embedded
PostgreSQL). Past it the kubelet sends SIGKILL; what was still in the spool is recovered by the next start.
*/}}
{{- define "callvault.terminationGracePeriodSeconds" -}}
{{- add (int .Values.lifecycle.preStopSleepSeconds) (int (include "callvault.shutdownDeadline" .)) 5 (int .Values.lifecycle.releaseSeconds) }}
{{- end }}

{{/* Refuses values that would deploy something broken, with a message naming the value. */}}
{{- define "callvault.validate" -}}
{{- $secretVars := splitList " " (include "callvault.secretVariables" .) }}
{{- range $name, $_ := .Values.config }}
{{- if has $name $secretVars }}
{{- fail (printf "config.%s is a secret: set it under secrets.values (or in secrets.existingSecret), not in config" $name) }}
{{- end }}
{{- if eq $name "DATA_DIR" }}
{{- fail "config.DATA_DIR is set by the chart (dataDir, the mount of the pod's volume)" }}
{{- end }}
{{- end }}
{{- range $name, $_ := .Values.secrets.values }}
{{- if not (has $name $secretVars) }}
{{- fail (printf "secrets.values.%s is not one of the variables the chart keeps in the Secret (%s)" $name (join ", " $secretVars)) }}
{{- end }}
{{- end }}
{{- if and .Values.secrets.existingSecret .Values.secrets.create }}
{{- fail "set either secrets.existingSecret or secrets.create, not both" }}
{{- end }}
{{- $external := or .Values.secrets.existingSecret (.Values.secrets.values.DATABASE_URL) }}
{{- if and (gt (int .Values.replicaCount) 1) (not $external) }}
{{- fail "replicaCount above 1 needs DATABASE_URL (secrets.values or secrets.existingSecret): without it each pod runs its own embedded PostgreSQL and S3 on its own volume, for development only" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.config.S3_ENDPOINT) }}
{{- fail "replicaCount above 1 needs config.S3_ENDPOINT: without it each pod keeps its recordings in an embedded S3 on its own volume" }}
{{- end }}
{{- end }}
