#!/bin/bash
# post_deploy_verify.sh: the TenSafe runbook's "Automated Verification Script", the baseline that
# `cargo xtask verify` is measured against (`cargo xtask bench`, xtask/src/bench.rs). Adapted only where it must:
#   - NAMESPACE, DEPLOYMENT and the label come from the arguments (model-server's, not TenSafe's);
#   - model-server's image has no shell or curl, so `kubectl exec $POD -- curl -s
#     http://localhost:8000/<path>` becomes `kubectl get --raw` through the API server's pod
#     proxy (the same route shipshape takes), with `|| true` so a 503 body is still read.
#   - `kubectl logs` names the container (the pod has one; the chart calls it `api`).
# Everything else, including checking only the first pod, is the runbook's.

NAMESPACE="${1:?namespace}"
DEPLOYMENT="${2:-model-server}"
LABEL="app.kubernetes.io/name=model-server,shipshape.dev/track"
KUBECTL="${KUBECTL:-kubectl}"

echo "=== Post-Deployment Verification ==="

# 1. Check deployment status
echo "[1/7] Checking deployment status..."
READY=$($KUBECTL get deployment $DEPLOYMENT -n $NAMESPACE -o jsonpath='{.status.readyReplicas}')
DESIRED=$($KUBECTL get deployment $DEPLOYMENT -n $NAMESPACE -o jsonpath='{.spec.replicas}')
if [ "$READY" != "$DESIRED" ]; then
    echo "FAIL: Only $READY/$DESIRED replicas ready"
    exit 1
fi
echo "PASS: $READY/$DESIRED replicas ready"

# 2. Check all pods running
echo "[2/7] Checking pod status..."
FAILED_PODS=$($KUBECTL get pods -n $NAMESPACE -l $LABEL --no-headers | grep -v Running | wc -l)
if [ "$FAILED_PODS" -gt 0 ]; then
    echo "FAIL: $FAILED_PODS pods not in Running state"
    $KUBECTL get pods -n $NAMESPACE -l $LABEL
    exit 1
fi
echo "PASS: All pods running"

# 3. Health endpoint check
echo "[3/7] Checking health endpoint..."
POD=$($KUBECTL get pods -n $NAMESPACE -l $LABEL -o jsonpath='{.items[0].metadata.name}')
PROXY="/api/v1/namespaces/$NAMESPACE/pods/$POD:8000/proxy"
HEALTH=$($KUBECTL get --raw "$PROXY/health" 2>&1 || true)
if [[ $HEALTH != *"healthy"* ]]; then
    echo "FAIL: Health check failed: $HEALTH"
    exit 1
fi
echo "PASS: Health check passed"

# 4. Ready endpoint check
echo "[4/7] Checking ready endpoint..."
READY_CHECK=$($KUBECTL get --raw "$PROXY/ready" 2>&1 || true)
if [[ $READY_CHECK != *"ready"* ]]; then
    echo "FAIL: Readiness check failed: $READY_CHECK"
    exit 1
fi
echo "PASS: Readiness check passed"

# 5. Database connectivity
echo "[5/7] Checking database connectivity..."
DB_CHECK=$($KUBECTL get --raw "$PROXY/health/db" 2>&1 || true)
if [[ $DB_CHECK != *"connected"* ]]; then
    echo "FAIL: Database connectivity check failed"
    exit 1
fi
echo "PASS: Database connected"

# 6. Check for error logs
echo "[6/7] Checking for error logs..."
ERROR_COUNT=$($KUBECTL logs $POD -n $NAMESPACE -c api --since=5m | grep -i "error\|exception\|fatal" | wc -l)
if [ "$ERROR_COUNT" -gt 10 ]; then
    echo "WARN: $ERROR_COUNT errors in last 5 minutes"
fi
echo "INFO: $ERROR_COUNT errors in logs"

# 7. Verify version
echo "[7/7] Verifying deployed version..."
DEPLOYED_VERSION=$($KUBECTL get deployment $DEPLOYMENT -n $NAMESPACE -o jsonpath='{.spec.template.spec.containers[0].image}')
echo "Deployed version: $DEPLOYED_VERSION"

echo ""
echo "=== Verification Complete ==="
