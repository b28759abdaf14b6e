#!/bin/sh
# Prints the alert rules (deploy/prometheus/netanom-rules.yml, the one source of truth) as a
# PrometheusRule for the Prometheus Operator:
#   deploy/kubernetes/prometheusrule.sh | kubectl apply -f -
# Add the labels your Prometheus's ruleSelector expects (kube-prometheus-stack: release=NAME)
# with: kubectl -n netanom label prometheusrule netanom release=NAME
set -eu
rules="$(dirname "$0")/../prometheus/netanom-rules.yml"
printf 'apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: netanom\n  namespace: netanom\n  labels:\n    app.kubernetes.io/name: netanom\nspec:\n'
sed -e '/^#/d' -e 's/^/  /' "$rules"
