{{/*
What the operator may do, as rule lists. Each list is bound where its resources live (rbac.yaml):

- ispcert.rbac.cluster:   cluster-scoped resources, always in a ClusterRole;
- ispcert.rbac.watched:   the resources in the namespaces the operator watches: in the ClusterRole
                          when it watches all namespaces, else in a Role in each watched namespace;
- ispcert.rbac.operator:  the operator's own namespace (the release namespace), always a Role;
- ispcert.rbac.clusterEvents: where events about cluster-scoped objects go ("default"); a Role
                          there when the operator watches a list of namespaces.

To grant something new, add a rule to the list of the place where it lives; nothing else changes.
Every verb here is one the operator calls; the README says which call needs it.
*/}}

{{- define "ispcert.rbac.cluster" -}}
- apiGroups: ["ispcert.dev"]
  resources: ["clusterispissuers"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["ispcert.dev"]
  resources: ["clusterispissuers/status"]
  verbs: ["patch"]
# Which order each certificate claims, in every namespace whatever the watch scope: an order
# another namespace holds is never adopted or deleted (read-only).
- apiGroups: ["ispcert.dev"]
  resources: ["ispcertificates"]
  verbs: ["list", "watch"]
# Namespace labels, for a ClusterIspIssuer's namespaceSelector (metadata only).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{- define "ispcert.rbac.watched" -}}
- apiGroups: ["ispcert.dev"]
  resources: ["ispcertificates"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["ispcert.dev"]
  resources: ["ispcertificates/status"]
  verbs: ["get", "patch"]
- apiGroups: ["ispcert.dev"]
  resources: ["ispcertificates/finalizers"]
  verbs: ["update"]
- apiGroups: ["ispcert.dev"]
  resources: ["ispissuers"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["ispcert.dev"]
  resources: ["ispissuers/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{- define "ispcert.rbac.operator" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}

{{- define "ispcert.rbac.clusterEvents" -}}
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* A Role and its RoleBinding to the operator's ServiceAccount. Takes (list $ namespace name rules). */}}
{{- define "ispcert.rbac.role" -}}
{{- $root := index . 0 }}
{{- $namespace := index . 1 }}
{{- $name := index . 2 }}
{{- $rules := index . 3 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $name }}
  namespace: {{ $namespace }}
  labels:
    {{- include "ispcert.labels" $root | nindent 4 }}
rules:
  {{- $rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $name }}
  namespace: {{ $namespace }}
  labels:
    {{- include "ispcert.labels" $root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "ispcert.serviceAccountName" $root }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
