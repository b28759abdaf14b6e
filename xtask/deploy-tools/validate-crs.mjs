// Validates Prometheus Operator resources against the operator's CRD schemas, as compiled by
// @kubernetes-models/prometheus-operator (types, enums, patterns, required fields).
// Input on stdin: JSON [{"file": PATH, "doc": RESOURCE}, ...] (xtask converts the YAML).
// Prints one line per resource; exits 1 if any resource is invalid or of an unknown kind.
import { readFileSync } from "node:fs";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const models = { ServiceMonitor, PodMonitor, PrometheusRule };
let failed = 0;
for (const { file, doc } of JSON.parse(readFileSync(0, "utf8"))) {
  const name = `${file}: ${doc.kind}/${doc.metadata?.name}`;
  const Model = doc.apiVersion === "monitoring.coreos.com/v1" ? models[doc.kind] : undefined;
  if (!Model) {
    console.log(`ERROR ${name}: no schema for ${doc.apiVersion} ${doc.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`ok    ${name}`);
  } catch (e) {
    console.log(`ERROR ${name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
