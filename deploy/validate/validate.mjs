// Validates rendered Kubernetes manifests (YAML on stdin) against the Kubernetes OpenAPI schemas shipped by
// kubernetes-models (and the KEDA / prometheus-operator CRD schemas). InferencePool has no published model:
// it is checked with ajv against inferencepool.schema.json, written from the v1 API reference.
import fs from "node:fs";
import yaml from "js-yaml";
import Ajv from "ajv";

const models = {
  "apps/v1/Deployment": "kubernetes-models/apps/v1/Deployment",
  "v1/Service": "kubernetes-models/v1/Service",
  "v1/PersistentVolumeClaim": "kubernetes-models/v1/PersistentVolumeClaim",
  "v1/Secret": "kubernetes-models/v1/Secret",
  "policy/v1/PodDisruptionBudget": "kubernetes-models/policy/v1/PodDisruptionBudget",
  "autoscaling/v2/HorizontalPodAutoscaler": "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler",
  "keda.sh/v1alpha1/ScaledObject": "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject",
  "monitoring.coreos.com/v1/ServiceMonitor": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
};
const ajv = new Ajv({ allErrors: true, strict: false });
const inferencePool = ajv.compile(JSON.parse(fs.readFileSync(new URL("./inferencepool.schema.json", import.meta.url))));

const docs = yaml.loadAll(fs.readFileSync(0, "utf8")).filter(Boolean);
let failures = 0;
for (const doc of docs) {
  const key = `${doc.apiVersion}/${doc.kind}`;
  const name = `${doc.kind}/${doc.metadata?.name}`;
  try {
    if (key === "inference.networking.k8s.io/v1/InferencePool") {
      if (!inferencePool(doc)) throw new Error(ajv.errorsText(inferencePool.errors));
    } else if (models[key]) {
      const module = await import(models[key]);
      new module[doc.kind](doc).validate();
    } else {
      throw new Error(`no schema for ${key}`);
    }
    console.log(`ok   ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}
if (docs.length === 0) { console.log("FAIL: no manifests on stdin"); process.exit(1); }
process.exit(failures === 0 ? 0 : 1);
