"""Where a manifest field is really set: kustomize overlays (pure: file texts in, no git, no I/O).

A planner edits the base manifest it sees (``apps/x/base/svc.yaml`` says ``maxReplicas: 6``), but
when the deployed overlay patches that field (``overlays/prod`` sets 4) the value in the cluster
is the overlay's, and a PR must change the overlay. :func:`locate` follows what Argo CD / Flux
deploy (an Argo CD ``Application``'s ``spec.source(s).path``, a Flux ``Kustomization``'s
``spec.path``, or the top-level kustomizations when neither is in the repo) through
``resources`` / ``bases`` / ``components`` down to the file, replays the patches of every level
in kustomize's order and returns the edit moved to the last place that sets the field:

* a strategic-merge patch file (``patchesStrategicMerge:`` or ``patches: - path:``): an ordinary
  :class:`FieldEdit` on that file's document, which ``tools.yamledit.apply_edits`` can apply;
* an inline patch (``patches: - patch: |-``, inline ``patchesStrategicMerge`` /
  ``patchesJson6902`` entries, Flux ``spec.patches``, Argo CD ``spec.source.kustomize.patches``)
  or a JSON6902 op (``op: replace``/``add`` whose ``path`` is the field or a parent of it): a
  FieldEdit whose ``path`` goes *into* the block-scalar string, e.g.
  ``("patches", 0, "patch", 0, "value")``; a JSON6902 patch file has no kind or name, so its
  edit has ``doc_kind == doc_name == ""`` ("the file's only document");
* a ``replicas:`` entry of a kustomization for ``spec.replicas`` of a Deployment/StatefulSet/
  ReplicaSet/ReplicationController: ``("replicas", i, "count")``.

:func:`apply_edits` here is a superset of ``tools.yamledit.apply_edits`` (plain edits are handed
to it unchanged) that also applies those extended edits with a one-line diff, re-reads the file
and checks that only that value changed. FieldEdit stays the one currency: plans, PR bodies and
inverse (revert) edits keep working.

Conservative by design: when routes to the cluster disagree (the field is set in several
deployed overlays, or one overlay patches it and another deploys the base value), or a construct
on the way is not followed (``$patch`` directives, a list merged on the path, a JSON6902 remove /
move / copy / list insert, label selectors other than ``k=v``, ``replacements``, custom
``transformers``, ``images`` on an image field, a missing patch file, a quoted or folded inline
patch ...), the result is ``ok=False`` with a reason, so the caller notifies instead of editing the
wrong file.

``render`` gives the rendered view: each object's namespace, name and labels as deployed (overlay
``namespace``, ``namePrefix`` / ``nameSuffix``, labels, the Application's destination namespace), the
files that are patches rather than resources, and what kustomize would refuse (missing, remote or
cyclic bases, unknown fields). Kustomization field names match as kustomize matches them (exactly,
else case-insensitively: ``patchesJSON6902``).

Modules: ``tree`` (file texts parsed on demand, shared path/name helpers), ``deployers``
(what Argo CD / Flux deploy), ``patches`` (replaying one level of kustomize options on a field),
``resolve`` (routes, ``locate`` / ``effective_value`` / ``relocate``), ``write`` (``apply_edits``).
"""

from __future__ import annotations

from tools.kustomize.deployers import Deployer, deployers
from tools.kustomize.render import Identity, ObjectRef, View, render
from tools.kustomize.resolve import Location, Relocated, effective_value, locate, relocate
from tools.kustomize.tree import Tree
from tools.kustomize.write import apply_edits

__all__ = ["Deployer", "Identity", "Location", "ObjectRef", "Relocated", "Tree", "View", "apply_edits", "deployers",
           "effective_value", "locate", "relocate", "render"]
