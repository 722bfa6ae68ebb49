{{- define "mlflow.allowedHosts" -}}
{{- $port := .Values.port -}}
{{- $hosts := list -}}
{{- range $name := list .Release.Name (printf "%s.%s" .Release.Name .Release.Namespace) (printf "%s.%s.svc" .Release.Name .Release.Namespace) (printf "%s.%s.svc.cluster.local" .Release.Name .Release.Namespace) -}}
{{- $hosts = append $hosts $name -}}
{{- $hosts = append $hosts (printf "%s:%v" $name $port) -}}
{{- end -}}
{{- $hosts = concat $hosts (list "localhost" "localhost:*" "127.0.0.1" "127.0.0.1:*" "10.*" "172.*" "192.168.*") -}}
{{- join "," $hosts -}}
{{- end -}}
