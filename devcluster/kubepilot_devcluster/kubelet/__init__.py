"""The devcluster's process kubelet: runs the pods of one node as local processes.

Start with :mod:`.kubelet` (scheduling, pod lifecycle, deletion); the rules a pod author needs are in
:mod:`.config` (node.yaml, image mapping), :mod:`.runtime` (processes, env, exit codes), :mod:`.volumes`
(mountPath rewriting), :mod:`.network` (pod and Service addresses), :mod:`.gpus` and :mod:`.paths`
(file layout under the data directory, shared with the API server's ``pods/log``).
"""
