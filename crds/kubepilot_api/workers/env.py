"""Environment variables and file locations the operator gives every worker pod."""

CONFIG_ENV = "KUBEPILOT_CONFIG"
"""Path of the worker's JSON config file (one of the models in ``config.py``)."""
DEFAULT_CONFIG_PATH = "/etc/kubepilot/config.json"

REPORT_URL_ENV = "KUBEPILOT_REPORT_URL"
"""Full URL this workload's reports are POSTed to (intake base + ``report_path``)."""

TOKEN_FILE_ENV = "KUBEPILOT_TOKEN_FILE"
"""Path of the file holding this workload's intake token (from a Secret owned by the CR)."""
DEFAULT_TOKEN_FILE = "/var/run/kubepilot/token"

TERMINATION_MESSAGE_ENV = "KUBEPILOT_TERMINATION_MESSAGE_PATH"
"""Where to write the final result; defaults to the Kubernetes termination-message path."""
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"

POD_IP_ENV = "POD_IP"
"""The pod's IP (downward API); servers bind to it."""

CREDENTIALS_FILE_ENV = "KUBEPILOT_CREDENTIALS_FILE"
"""The user's credentials file (Hugging Face token, Civitai key) mounted from their Secret; when set
it wins over the config's ``tokenFile``. Paths in the environment follow the pod's mounts wherever
a kubelet places them, which paths inside a config file cannot."""
