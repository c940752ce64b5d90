{{/*
Names. Pod names of the masters are their Raft node ids and DNS labels, so the
StatefulSet name is kept short enough for "<name>-<ordinal>" and the
controller-revision-hash label (52 characters).
*/}}
{{- define "agentflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentflow.fullname" -}}
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

{{- define "agentflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentflow.master.fullname" -}}
{{- printf "%s-master" (include "agentflow.fullname" .) | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "agentflow.master.headless" -}}
{{- printf "%s-headless" (include "agentflow.master.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Service clients and workers use. */}}
{{- define "agentflow.master.service" -}}
{{- include "agentflow.fullname" . }}
{{- end }}

{{/* Deployment name of one worker pool; call with (dict "root" $ "pool" $pool). */}}
{{- define "agentflow.worker.fullname" -}}
{{- printf "%s-worker-%s" (include "agentflow.fullname" .root) .pool.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agentflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "agentflow.configName" -}}
{{- printf "%s-config" (include "agentflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agentflow.authSecretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else }}
{{- printf "%s-auth" (include "agentflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "agentflow.tlsSecretName" -}}
{{- if .Values.tls.existingSecret }}
{{- .Values.tls.existingSecret }}
{{- else }}
{{- printf "%s-master-tls" (include "agentflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "agentflow.clientTlsSecretName" -}}
{{- if .Values.tls.clientExistingSecret }}
{{- .Values.tls.clientExistingSecret }}
{{- else }}
{{- printf "%s-client-tls" (include "agentflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Label pods carry to be let through the NetworkPolicy (allowExternal: false). */}}
{{- define "agentflow.clientLabel" -}}
{{- printf "%s-client" (include "agentflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels.
*/}}
{{- define "agentflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agentflow.labels" -}}
helm.sh/chart: {{ include "agentflow.chart" . }}
{{ include "agentflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentflow
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "agentflow.master.selectorLabels" -}}
{{ include "agentflow.selectorLabels" . }}
app.kubernetes.io/component: master
{{- end }}

{{/* call with (dict "root" $ "pool" $pool) */}}
{{- define "agentflow.worker.selectorLabels" -}}
{{ include "agentflow.selectorLabels" .root }}
app.kubernetes.io/component: worker
agentflow.io/pool: {{ .pool.name }}
{{- end }}

{{- define "agentflow.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Image and pull secrets.
*/}}
{{- define "agentflow.image" -}}
{{- $registry := .Values.global.imageRegistry | default .Values.image.registry -}}
{{- $ref := .Values.image.repository -}}
{{- if $registry }}{{ $ref = printf "%s/%s" $registry $ref }}{{ end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $ref .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- end }}

{{- define "agentflow.imagePullSecrets" -}}
{{- $secrets := concat .Values.global.imagePullSecrets .Values.imagePullSecrets | uniq -}}
{{- if $secrets }}
imagePullSecrets:
{{- range $secrets }}
  - name: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Addresses. Every master's stable name is
<pod>.<headless service>.<namespace>.svc.<cluster domain>.
*/}}
{{- define "agentflow.master.domain" -}}
{{- printf "%s.%s.svc.%s" (include "agentflow.master.headless" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* --peers: "<pod>=<pod>.<domain>:<grpc port>,..." for every ordinal. */}}
{{- define "agentflow.master.peers" -}}
{{- $master := include "agentflow.master.fullname" . -}}
{{- $domain := include "agentflow.master.domain" . -}}
{{- $port := int .Values.master.ports.grpc -}}
{{- $peers := list -}}
{{- range $i := until (int .Values.master.replicas) -}}
{{- $peers = append $peers (printf "%s-%d=%s-%d.%s:%d" $master $i $master $i $domain $port) -}}
{{- end -}}
{{- join "," $peers -}}
{{- end }}

{{/* Every master's gRPC address, for workers and clients inside the cluster. */}}
{{- define "agentflow.master.urls" -}}
{{- $master := include "agentflow.master.fullname" . -}}
{{- $domain := include "agentflow.master.domain" . -}}
{{- $port := int .Values.master.ports.grpc -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.master.replicas) -}}
{{- $urls = append $urls (printf "%s-%d.%s:%d" $master $i $domain $port) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end }}

{{/* Every master's HTTP URL, for the workers' HTTP shim (--http-url). */}}
{{- define "agentflow.master.httpUrls" -}}
{{- $master := include "agentflow.master.fullname" . -}}
{{- $domain := include "agentflow.master.domain" . -}}
{{- $port := int .Values.master.ports.http -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.master.replicas) -}}
{{- $urls = append $urls (printf "http://%s-%d.%s:%d" $master $i $domain $port) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end }}

{{/* Raft majority of the configured voters. */}}
{{- define "agentflow.master.quorum" -}}
{{- add1 (div (int .Values.master.replicas) 2) }}
{{- end }}

{{/* Without TLS and tokens the master must be told it may listen unprotected. */}}
{{- define "agentflow.insecure" -}}
{{- if not (or .Values.tls.enabled .Values.auth.enabled) }}true{{ end }}
{{- end }}

{{/*
Pod anti-affinity preset; call with (dict "type" "soft|hard" "topologyKey" K
"labels" (selector labels as a YAML string)).
*/}}
{{- define "agentflow.podAntiAffinity" -}}
{{- $labels := fromYaml .labels -}}
{{- if eq .type "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: {{ .topologyKey }}
      labelSelector:
        matchLabels:
          {{- toYaml $labels | nindent 10 }}
{{- else if eq .type "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: {{ .topologyKey }}
        labelSelector:
          matchLabels:
            {{- toYaml $labels | nindent 12 }}
{{- end }}
{{- end }}

{{/*
Probes: the enabled/timing values of one probe merged with a fixed handler.
call with (dict "probe" .Values.master.xxxProbe "handler" (dict ...))
*/}}
{{- define "agentflow.probe" -}}
{{- $probe := omit .probe "enabled" -}}
{{- toYaml (merge $probe .handler) }}
{{- end }}

{{/*
Every worker pool laid over workers.defaults, as YAML {pools: [...]}. A key the pool
sets wins, false and 0 included (sprig's merge would drop those); a map the pool sets
is merged one level deep, so `resources: {limits: ...}` keeps the default requests.
*/}}
{{- define "agentflow.worker.pools" -}}
{{- $pools := list -}}
{{- range $p := .Values.workers.pools -}}
{{- $merged := deepCopy $.Values.workers.defaults -}}
{{- range $k, $v := $p -}}
{{- $d := index $merged $k -}}
{{- if and (kindIs "map" $v) (kindIs "map" $d) -}}
{{- $m := deepCopy $d -}}
{{- range $k2, $v2 := $v }}{{ $_ := set $m $k2 $v2 }}{{ end -}}
{{- $_ := set $merged $k $m -}}
{{- else -}}
{{- $_ := set $merged $k $v -}}
{{- end -}}
{{- end -}}
{{- $pools = append $pools $merged -}}
{{- end -}}
{{- toYaml (dict "pools" $pools) -}}
{{- end }}

{{/*
Checks across values that the schema cannot express.
*/}}
{{- define "agentflow.validate" -}}
{{- $names := list -}}
{{- range $p := .Values.workers.pools -}}
{{- if has $p.name $names -}}
{{- fail (printf "workers.pools: the pool name %q appears twice; every pool needs its own name" $p.name) -}}
{{- end -}}
{{- $names = append $names $p.name -}}
{{- end -}}
{{- range $pool := (include "agentflow.worker.pools" . | fromYaml).pools -}}
{{- if and $pool.autoscaling.enabled $pool.autoscaling.targetCPUUtilizationPercentage (not (and $pool.resources $pool.resources.requests $pool.resources.requests.cpu)) -}}
{{- fail (printf "workers.pools[%s].autoscaling: CPU utilisation needs resources.requests.cpu" $pool.name) -}}
{{- end -}}
{{- if and $pool.autoscaling.enabled $pool.autoscaling.targetMemoryUtilizationPercentage (not (and $pool.resources $pool.resources.requests $pool.resources.requests.memory)) -}}
{{- fail (printf "workers.pools[%s].autoscaling: memory utilisation needs resources.requests.memory" $pool.name) -}}
{{- end -}}
{{- if and $pool.autoscaling.enabled (not (or $pool.autoscaling.targetCPUUtilizationPercentage $pool.autoscaling.targetMemoryUtilizationPercentage)) -}}
{{- fail (printf "workers.pools[%s].autoscaling: set targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" $pool.name) -}}
{{- end -}}
{{- if and $pool.autoscaling.enabled (gt (int $pool.autoscaling.minReplicas) (int $pool.autoscaling.maxReplicas)) -}}
{{- fail (printf "workers.pools[%s].autoscaling: minReplicas is above maxReplicas" $pool.name) -}}
{{- end -}}
{{- end -}}
{{- if eq (int .Values.master.ports.grpc) (int .Values.master.ports.http) -}}
{{- fail "master.ports: grpc and http must be different ports (a master refuses to start with --http-port equal to --port)" -}}
{{- end -}}
{{- if and .Values.tls.enabled (ne (empty .Values.tls.existingSecret) (empty .Values.tls.clientExistingSecret)) -}}
{{- fail "tls: set both existingSecret and clientExistingSecret (certificates from one CA), or neither (the chart generates both)" -}}
{{- end -}}
{{- /* An upgrade must not change the Raft membership behind the masters' backs. */ -}}
{{- $sts := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "agentflow.master.fullname" .) -}}
{{- if and $sts $sts.spec (ne (int $sts.spec.replicas) (int .Values.master.replicas)) -}}
{{- fail (printf "master.replicas: the running cluster has %d masters and the Raft membership is fixed at install; changing it to %d by an upgrade is not supported (docs/kubernetes.md, \"Changing the number of masters\")" (int $sts.spec.replicas) (int .Values.master.replicas)) -}}
{{- end -}}
{{- end }}
