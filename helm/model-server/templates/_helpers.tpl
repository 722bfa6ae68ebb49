{{/* The chart name, or nameOverride. */}}
{{- define "model-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name. Suffixes (-canary, -blue, -green, -preview) are added to it, so it is
cut to 52 characters to leave room within the 63-character name limit.
*/}}
{{- define "model-server.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "model-server.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "model-server.labels" -}}
helm.sh/chart: {{ include "model-server.chart" . }}
{{ include "model-server.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: shipshape
{{- end }}

{{/*
Selector labels: name and instance only. Selectors are immutable, so nothing that changes
between upgrades (versions, tags) may ever appear here. The live Service selects these (plus
the active slot in blue/green), so it reaches stable and canary pods alike.
*/}}
{{- define "model-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "model-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "model-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "model-server.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Deployments this release runs, as a list of dicts: each has name, track, slot (blue/green
only), tag, replicas and faults. Every template that needs "which Deployments exist" uses this.
*/}}
{{- define "model-server.workloads" -}}
{{- $v := .Values }}
{{- $full := include "model-server.fullname" . }}
{{- $default := $v.image.tag | default .Chart.AppVersion }}
{{- if and $v.canary.enabled $v.blueGreen.enabled }}
{{- fail "canary.enabled and blueGreen.enabled cannot both be true: a release runs one progressive strategy at a time" }}
{{- end }}
{{- $list := list }}
{{- if $v.blueGreen.enabled }}
{{- range $slot := list "blue" "green" }}
{{- $s := index $v.blueGreen $slot }}
{{- $live := eq $v.blueGreen.activeSlot $slot }}
{{- $replicas := ternary $v.replicaCount 0 $live }}
{{- if not (kindIs "invalid" $s.replicaCount) }}{{ $replicas = $s.replicaCount }}{{ end }}
{{- $list = append $list (dict "name" (printf "%s-%s" $full $slot) "track" "stable" "slot" $slot "tag" ($s.tag | default $default) "replicas" $replicas "faults" $s.faults) }}
{{- end }}
{{- else }}
{{- $list = append $list (dict "name" $full "track" "stable" "slot" "" "tag" $default "replicas" $v.replicaCount "faults" $v.faults) }}
{{- if $v.canary.enabled }}
{{- $list = append $list (dict "name" (printf "%s-canary" $full) "track" "canary" "slot" "" "tag" $v.canary.image.tag "replicas" $v.canary.replicaCount "faults" $v.canary.faults) }}
{{- end }}
{{- end }}
{{- toJson $list }}
{{- end }}

{{/*
The image reference for a tag: pinned to its recorded digest. Where the environment requires
signatures, a tag without one is refused: what runs there is what was verified, by digest.
*/}}
{{- define "model-server.image" -}}
{{- $digest := index (.Values.imageDigests | default dict) .tag }}
{{- if and .Values.supplyChain.requireSignature (not $digest) }}
{{- fail (printf "image tag %s has no digest in imageDigests, and this environment requires signed images: it runs only by the digest that was verified (shipshape's flows record it; `cargo xtask render --digest` for a review)" .tag) }}
{{- end }}
{{- if $digest }}
{{- printf "%s:%s@%s" .Values.image.repository .tag $digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository .tag }}
{{- end }}
{{- end }}
