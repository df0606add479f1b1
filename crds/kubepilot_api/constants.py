"""Names shared by every component: the API group, version, label and annotation keys."""

GROUP = "kubepilot.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "kubepilot"

# Label and annotation keys live under the group so they never collide with a user's.
LABEL_PREFIX = f"{GROUP}/"
ACTION_ANNOTATION_PREFIX = f"{GROUP}/action-"
"""An imperative action is requested by setting ``kubepilot.io/action-<name>: <nonce>``."""

LABEL_KIND = f"{GROUP}/kind"
LABEL_NAME = f"{GROUP}/name"
LABEL_COMPONENT = f"{GROUP}/component"
LABEL_PROFILE = f"{GROUP}/profile"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
"""Copied from our CR to the Jobs the operator creates, so Kueue can admit them."""
