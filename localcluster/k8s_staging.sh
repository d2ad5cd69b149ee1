# Sourced by build.sh and build_node.sh (needs K8S_VERSION).
# Every staging module of k8s.io/kubernetes is required at v0.0.0 and replaced by a relative
# path upstream; a consumer must pin each to the matching v0.<minor>.<patch> tag.
STAGING="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt
kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller streaming"
STAGING_VERSION=v0.${K8S_VERSION#v1.}
