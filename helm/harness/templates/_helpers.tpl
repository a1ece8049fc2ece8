{{/* Chart name, truncated to the 63 characters DNS labels allow. */}}
{{- define "harness.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release name, unless it already contains the chart name. */}}
{{- define "harness.fullname" -}}
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

{{- define "harness.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "harness.selectorLabels" -}}
app.kubernetes.io/name: {{ include "harness.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "harness.labels" -}}
helm.sh/chart: {{ include "harness.chart" . }}
{{ include "harness.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: control-plane
app.kubernetes.io/part-of: harness
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "harness.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "harness.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "harness.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Several nodes (replicaCount > 1): a StatefulSet, one data volume per pod. */}}
{{- define "harness.nodes" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{- define "harness.pvcName" -}}
{{- default (printf "%s-data" (include "harness.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/* The Secret holding harnessd's certificate (tls.enabled). */}}
{{- define "harness.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "harness.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/* The name in harnessd's certificate the gateway checks (the Service's). */}}
{{- define "harness.serviceDNS" -}}
{{- printf "%s.%s.svc" (include "harness.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Port kubelet's gRPC probes use: the health-only listener with TLS. */}}
{{- define "harness.probePort" -}}
{{- if .Values.tls.enabled }}{{ int .Values.tls.healthPort }}{{ else }}{{ int .Values.server.port }}{{ end }}
{{- end }}

{{/*
Port of auth.userService.url: explicit ":port", else 443 for https and 80
for http.
*/}}
{{- define "harness.userServicePort" -}}
{{- $u := urlParse .Values.auth.userService.url }}
{{- $hostport := splitList ":" $u.host }}
{{- if gt (len $hostport) 1 }}
{{- last $hostport }}
{{- else if eq $u.scheme "http" }}
{{- 80 }}
{{- else }}
{{- 443 }}
{{- end }}
{{- end }}

{{/* Cross-field checks the schema cannot express; fail early with a clear message. */}}
{{- define "harness.validate" -}}
{{- $a := .Values.auth }}
{{- if eq $a.backend "upstream" }}
{{- if not $a.userService.url }}
{{- fail "auth.backend=upstream needs auth.userService.url (the user service's base URL)" }}
{{- end }}
{{- if not (or $a.jwt.secret.existingSecret $a.jwt.publicKey.existingSecret $a.jwt.publicKey.existingConfigMap $a.jwt.jwksUrl) }}
{{- fail "auth.backend=upstream needs auth.jwt.secret.existingSecret (HS256 key), auth.jwt.publicKey.existingSecret/existingConfigMap (RS256/ES256) or auth.jwt.jwksUrl to verify the user service's tokens" }}
{{- end }}
{{- end }}
{{- if and $a.jwt.jwksUrl (or (ne $a.backend "upstream") $a.jwt.secret.existingSecret $a.jwt.publicKey.existingSecret $a.jwt.publicKey.existingConfigMap) }}
{{- fail "auth.jwt.jwksUrl: upstream backend only, and instead of auth.jwt.secret / auth.jwt.publicKey" }}
{{- end }}
{{- $t := .Values.tls }}
{{- if $t.enabled }}
{{- if and (eq $t.source "secret") (not $t.secretName) }}
{{- fail "tls.source=secret needs tls.secretName (a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt)" }}
{{- end }}
{{- if and (eq $t.source "certManager") (not $t.certManager.issuerRef.name) }}
{{- fail "tls.source=certManager needs tls.certManager.issuerRef.name" }}
{{- end }}
{{- if eq (int $t.healthPort) (int .Values.server.port) }}
{{- fail "tls.healthPort must differ from server.port" }}
{{- end }}
{{- end }}
{{- if and (or (ne $t.clientAuth "none") $t.clientIdentities) (not $t.enabled) }}
{{- fail "tls.clientAuth and tls.clientIdentities need tls.enabled=true" }}
{{- end }}
{{- if and $t.clientIdentities (eq $t.clientAuth "none") }}
{{- fail "tls.clientIdentities needs tls.clientAuth request or require" }}
{{- end }}
{{- if and $a.jwt.publicKey.existingSecret $a.jwt.publicKey.existingConfigMap }}
{{- fail "auth.jwt.publicKey: set existingSecret or existingConfigMap, not both" }}
{{- end }}
{{- if and (not .Values.sandbox.allowSameUid) (eq (int .Values.sandbox.uid) (int .Values.securityContext.runAsUser)) }}
{{- fail "sandbox.uid must differ from harnessd's uid (securityContext.runAsUser): a sandbox would own harnessd's files (sandbox.allowSameUid=true for development)" }}
{{- end }}
{{- $ports := list (int .Values.server.port) (int .Values.metrics.port) (int .Values.metrics.gatewayPort) (int .Values.gateway.port) }}
{{- if $t.enabled }}{{- $ports = append $ports (int $t.healthPort) }}{{- end }}
{{- if ne (len $ports) (len (uniq $ports)) }}
{{- fail "server.port, gateway.port, metrics.port, metrics.gatewayPort (and tls.healthPort) must all differ" }}
{{- end }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- if not .Values.store.postgres.existingSecret }}
{{- fail "replicaCount > 1 needs store.postgres.existingSecret: several harnessd nodes share one PostgreSQL store (SQLite has one writer)" }}
{{- end }}
{{- if not .Values.server.checkpointRemote }}
{{- fail "replicaCount > 1 needs server.checkpointRemote: a task recovered on another node gets its workspace back from there" }}
{{- end }}
{{- if .Values.persistence.existingClaim }}
{{- fail "replicaCount > 1: persistence.existingClaim cannot be shared by several nodes (each pod gets its own claim)" }}
{{- end }}
{{- end }}
{{- if and (eq .Values.sandbox.driver "firecracker") (not .Values.sandbox.firecracker.enabled) }}
{{- fail "sandbox.driver=firecracker needs sandbox.firecracker.enabled=true (it mounts /dev/kvm and grants the jailer its privileges)" }}
{{- end }}
{{- end }}

{{/*
harnessd's container security context. With sandbox.firecracker.enabled:
root (the jailer chroots, makes device nodes and drops to the sandbox
account) and either a privileged container or the listed capabilities (with
/dev/kvm granted by a device plugin). With sandbox.allowSameUid:
.Values.securityContext (sandboxes run as harnessd's own uid; development
only). Otherwise: uid 0 with every capability dropped but what switching to
the sandbox account (sandbox.uid/gid) takes, no privilege escalation.
*/}}
{{- define "harness.serverSecurityContext" -}}
{{- if .Values.sandbox.firecracker.enabled }}
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
readOnlyRootFilesystem: {{ .Values.securityContext.readOnlyRootFilesystem | default false }}
{{- if .Values.sandbox.firecracker.privileged }}
privileged: true
allowPrivilegeEscalation: true
{{- else }}
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
  add:
    {{- toYaml .Values.sandbox.firecracker.capabilities | nindent 4 }}
{{- with .Values.securityContext.seccompProfile }}
seccompProfile:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- else if .Values.sandbox.allowSameUid }}
{{- toYaml .Values.securityContext }}
{{- else }}
{{- /* Sandboxes run as their own account: harnessd needs to switch to it. */}}
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
readOnlyRootFilesystem: {{ .Values.securityContext.readOnlyRootFilesystem | default false }}
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
  add:
    - SETUID
    - SETGID
    - SYS_ADMIN
    - CHOWN
    - FOWNER
    - DAC_OVERRIDE
    - KILL
{{- with .Values.securityContext.seccompProfile }}
seccompProfile:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}
