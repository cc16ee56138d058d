// Validates custom resources against their projects' published schemas, as packaged by
// kubernetes-models (generated from KEDA's and the Prometheus Operator's Go API types,
// which their CRDs are generated from too): types, enums, formats and required fields.
// These schemas accept unknown fields (the API server prunes or, with kubectl's default
// strict validation, refuses them), so checks/ also parses each object into its strict
// serde type.
//
// Reads a JSON array of objects on stdin; writes a JSON array of the same length on
// stdout: null for a valid object, else a message naming what is wrong.
import { readFileSync } from "node:fs";
import { ScaledJob } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledJob";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";
import { ClusterTriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/ClusterTriggerAuthentication";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const MODELS = {
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
  "keda.sh/v1alpha1/ScaledJob": ScaledJob,
  "keda.sh/v1alpha1/TriggerAuthentication": TriggerAuthentication,
  "keda.sh/v1alpha1/ClusterTriggerAuthentication": ClusterTriggerAuthentication,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
  "monitoring.coreos.com/v1/PodMonitor": PodMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
};

const objects = JSON.parse(readFileSync(0, "utf8"));
const results = objects.map((o) => {
  const key = `${o.apiVersion}/${o.kind}`;
  const Model = MODELS[key];
  if (!Model) {
    return `no published schema for ${key} (known: ${Object.keys(MODELS).join(", ")})`;
  }
  try {
    new Model(o).validate();
    return null;
  } catch (e) {
    return e.message;
  }
});
process.stdout.write(JSON.stringify(results));
